"""Helpers of the synth tests: generate a trace and read it back through the operations layer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ptreplay.stage2.operations import Operation, TraceEvent, operations
from ptreplay.synth import GenConfig, GenOp, GenResult, generate
from ptreplay.trace import open_trace


def trace_events(path: Path) -> list[TraceEvent]:
    """The trace's events, numbered as ``ptreplay events`` prints them."""
    with open_trace(path) as t:
        return [TraceEvent(i, e.cpu, e.ts, e.pid, e.name, dict(e.fields))
                for i, e in enumerate(t.events(lost=False))]


def read_back(path: Path) -> list[Operation]:
    """The operations layer's operations of a trace."""
    with open_trace(path) as t:
        page_size = t.info.page_size
    out = operations(trace_events(path), page_size)
    return [o for o in out if isinstance(o, Operation)]


def as_generated(o: Operation) -> tuple[Any, ...]:
    """An operation read back, in the shape of a :class:`GenOp`."""
    return (o.kind, o.func, o.pgt, {k: v for k, v in o.entry_fields.items()
                                     if k != "__probe_ip"},
            o.ret, [(e.effect, e.addr, e.mmu) for e in o.effects], o.index, o.index_return,
            o.cpu, o.pid)


def as_truth(g: GenOp) -> tuple[Any, ...]:
    """What the model did for one call, in the same shape."""
    return (g.kind, g.func, g.pgt, g.entry_fields, g.ret, g.effects, g.index, g.index_return,
            g.cpu, g.pid)


def round_trip(config: GenConfig, path: Path) -> tuple[GenResult, list[GenOp], list[Operation]]:
    """Generate, read back, and check the operations layer sees exactly what the model did."""
    made: list[GenOp] = []
    result = generate(config, path, on_op=made.append)
    ops = read_back(path)
    made.sort(key=lambda g: g.index_return)
    assert len(ops) == len(made) == result.operations
    for o, g in zip(ops, made, strict=True):
        assert as_generated(o) == as_truth(g), (o.index, o.kind)
        # nothing is missing or lost in a generated trace; calls on one root never overlap
        assert not o.uncertain and "concurrent" not in o.flags, (o.index, o.flags)
    return result, made, ops
