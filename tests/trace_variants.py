"""Variants of real recordings, built with this project's own reader and writer.

:func:`write_variant` copies a window of a trace's events, byte for byte, into
a new trace.dat (uncompressed v7), leaving some out and patching fields of
others: an erased put_page, a changed return value, a trace that starts
late. :func:`locate` finds events by name and position with the reader.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ptreplay.formats.tracedat.writer import TraceDatWriter
from ptreplay.trace import open_trace

_CODES = {1: "b", 2: "h", 4: "i", 8: "q"}


def write_variant(src: Path, dst: Path, start: int = 0, stop: int | None = None, *,
                  drop: Iterable[int] = (), patch: Mapping[int, Mapping[str, int]] | None = None,
                  lost_before: Iterable[int] = (), duplicate: Iterable[int] = ()) -> Path:
    """Write events ``[start, stop)`` of ``src`` (event indexes of the whole trace) to ``dst``.

    :param drop: event indexes to leave out.
    :param patch: event index -> {field: new value}.
    :param lost_before: event indexes before which the CPU reports lost events.
    :param duplicate: event indexes written twice (the copy right after, same time).
    """
    drop = set(drop)
    patch = dict(patch or {})
    lost = set(lost_before)
    twice = set(duplicate)
    with open_trace(src) as t:
        w = TraceDatWriter(version=7, compression=None, page_size=t.info.page_size)
        w.uname = t.info.uname
        w.cmdlines.update(t.info.cmdlines)
        for ev_id in t.formats.ids():
            fmt = t.formats.get(ev_id)
            w.add_event_format(fmt.system, fmt.text)
        for index, rec in enumerate(t.records(lost=False)):
            if stop is not None and index >= stop:
                break
            if index < start or index in drop:
                continue
            data = bytes(rec.data[rec.offset:rec.offset + rec.size])  # type: ignore[union-attr]
            if index in patch:
                buf = bytearray(data)
                for name, value in patch[index].items():
                    f = rec.format.field(name)  # type: ignore[union-attr]
                    code = _CODES[f.size] if f.signed else _CODES[f.size].upper()
                    struct.pack_into("<" + code, buf, f.offset, value)
                data = bytes(buf)
            if index in lost:
                w.add_missed(rec.cpu, 3)  # type: ignore[union-attr]
            w.add_event(rec.cpu, rec.ts, data)  # type: ignore[union-attr]
            if index in twice:
                w.add_event(rec.cpu, rec.ts, data)  # type: ignore[union-attr]
        w.write(dst)
    return dst


def locate(src: Path, stop: int) -> list[tuple[int, str, int, dict[str, Any]]]:
    """``(index, name, cpu, fields)`` of the events before ``stop``."""
    out = []
    with open_trace(src) as t:
        for ev in t.events(lost=False):
            if ev.index >= stop:  # type: ignore[union-attr]
                break
            out.append((ev.index, ev.name, ev.cpu, dict(ev.fields)))  # type: ignore[union-attr]
    return out


def events_in_op(events: list, op_name: str, effect: str) -> list[int]:
    """Indexes of ``effect`` events inside calls of ``op_name`` (same CPU, between entry
    and return)."""
    open_op: dict[int, str] = {}
    out = []
    for index, name, cpu, _fields in events:
        if name.startswith("kvm_pgtable_stage2_"):
            if name.endswith("__return"):
                open_op.pop(cpu, None)
            else:
                open_op[cpu] = name
        elif name == effect and open_op.get(cpu) == op_name:
            out.append(index)
    return out
