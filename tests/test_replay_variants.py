"""Changed recordings: each change is a divergence at the event where it was made.

Variants of the first 40,000 events of the VHE recording (TLB invalidations
visible), built with the project's reader and writer (tests/trace_variants.py):
an erased put_page, get_page or TLB invalidation, a changed return value, a
missing unmap; the unchanged prefix replays with no divergence at all.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CORPUS, require_shared
from trace_variants import events_in_op, locate, write_variant

from ptreplay.stage2.replay import Replay, ReplayConfig, ReplayStep
from ptreplay.stage2.source import Stage2Trace
from ptreplay.trace import open_trace

SRC = CORPUS / "arm64" / "vhe-rich-v7" / "trace.dat"
N = 40_000


@pytest.fixture(scope="module")
def events() -> list[tuple[int, str, int, dict]]:
    require_shared()
    return locate(SRC, N)


def _replay(path: Path, config: ReplayConfig | None = None
            ) -> tuple[list[ReplayStep], dict[int, int]]:
    """The replayed steps, and the event index of every ordinal they mention."""
    with open_trace(path) as t:
        st = Stage2Trace(t)
        steps = [s for s in Replay(st, config).steps() if isinstance(s, ReplayStep)]
        ordinals = {s.index for s in steps}
        for s in steps:
            ordinals.update(d.index for d in s.differences())
        return steps, st.event_indexes(ordinals)


def _only_divergence(steps: list[ReplayStep]) -> ReplayStep:
    div = [s for s in steps if s.diverges]
    assert len(div) == 1, [(s.op.kind, s.index) for s in div]
    assert not div[0].uncertain
    return div[0]


def test_unchanged_prefix_replays_without_divergence(tmp_path: Path) -> None:
    steps, _ = _replay(write_variant(SRC, tmp_path / "base.dat", 0, N))
    assert len(steps) > 7000
    assert not [s for s in steps if s.diverges or s.uncertain]
    kinds = {r[0] for s in steps for r in s.oseen}
    assert {"get", "put", "page_count", "tlbi", "cmo", "alloc"} <= kinds


@pytest.mark.parametrize("op_name,effect,record", [
    ("kvm_pgtable_stage2_unmap", "kvm_s2_put_page", "put"),
    ("kvm_pgtable_stage2_map", "kvm_host_get_page", "get"),
    ("kvm_pgtable_stage2_unmap", "__kvm_tlb_flush_vmid_ipa", "tlbi"),
])
def test_erased_effect_is_missing_where_it_was(tmp_path: Path, events: list, op_name: str,
                                               effect: str, record: str) -> None:
    where = events_in_op(events, op_name, effect)[0]
    steps, index = _replay(write_variant(SRC, tmp_path / "v.dat", 0, N, drop={where}))
    step = _only_divergence(steps)
    assert step.op.func == op_name and not step.ret_diverges
    (diff,) = step.differences()
    assert diff.tag == "missing" and [r[0] for r in diff.predicted] == [record]
    # after the erasure the next event takes its index: the effect is missing right there
    assert index[diff.index] + diff.after == where


def test_changed_return_value(tmp_path: Path, events: list) -> None:
    where = next(i for i, name, _cpu, f in events
                 if name == "kvm_pgtable_stage2_map__return" and f["ret"] == 0 and i > 3000)
    steps, index = _replay(write_variant(SRC, tmp_path / "v.dat", 0, N,
                                         patch={where: {"ret": -11}}))
    step = _only_divergence(steps)
    assert step.op.ret == -11 and step.predicted_ret == 0 and not step.effects_diverge
    assert step.op.index_return is not None
    assert st_index(index, step) < where


def st_index(index: dict[int, int], step: ReplayStep) -> int:
    return index[step.index]


def test_missing_unmap_diverges_at_the_next_operation_on_that_range(tmp_path: Path,
                                                                    events: list) -> None:
    put = events_in_op(events, "kvm_pgtable_stage2_unmap", "kvm_s2_put_page")[0]
    entry = max(i for i, name, _c, _f in events[:put] if name == "kvm_pgtable_stage2_unmap")
    ret = min(i for i, name, _c, _f in events[put:] if name == "kvm_pgtable_stage2_unmap__return")
    addr = events[entry][3]["addr"]
    nxt = next(i for i, name, _c, f in events[ret + 1:]
               if name.startswith("kvm_pgtable_stage2_") and not name.endswith("__return")
               and f.get("addr") == addr)
    steps, index = _replay(write_variant(SRC, tmp_path / "v.dat", 0, N,
                                         drop=set(range(entry, ret + 1))))
    step = _only_divergence(steps)
    removed = ret + 1 - entry
    assert index[step.index] == nxt - removed
    assert step.op.args["addr"] == addr
    assert {r[0] for d in step.differences() for r in d.predicted} >= {"put", "tlbi"}


def test_wrong_platform_shows_as_divergences(tmp_path: Path) -> None:
    path = write_variant(SRC, tmp_path / "base.dat", 0, N)
    steps, _ = _replay(path, ReplayConfig(fwb=False))
    div = [s for s in steps if s.diverges]
    assert div and all(s.op.kind == "unmap" for s in div)
    assert all(d.tag == "missing" and d.predicted[0][0] == "cmo"
               for s in div for d in s.differences())
    steps, _ = _replay(path, ReplayConfig(vhe=False))
    div = [s for s in steps if s.diverges]
    assert div and all(d.tag == "unexpected" and d.observed[0][0] == "tlbi"
                       for s in div for d in s.differences())
