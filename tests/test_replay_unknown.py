"""State the trace did not show is unknown, never empty; lost events make it unknown again.

A trace that starts after the stage-2 existed (a window of a real recording
without its init) and one that lost events: divergences there depend on
state nobody saw and are uncertain, never facts. The IPA bookkeeping
(:class:`~ptreplay.stage2.rootmodel.Regions`) is checked against a set of
points.
"""

from __future__ import annotations

from pathlib import Path

from conftest import CORPUS, require_shared
from hypothesis import given
from hypothesis import strategies as st
from trace_variants import locate, write_variant

from ptreplay.model.memory import Platform
from ptreplay.model.profiles import LINUX_6_1
from ptreplay.stage2.operations import Gap
from ptreplay.stage2.replay import Replay, ReplayStep
from ptreplay.stage2.rootmodel import Regions, RootModel
from ptreplay.stage2.source import Stage2Trace
from ptreplay.trace import open_trace

SRC = CORPUS / "arm64" / "vhe-rich-v7" / "trace.dat"


def _steps(path: Path) -> list[ReplayStep | Gap]:
    with open_trace(path) as t:
        return list(Replay(Stage2Trace(t)).steps())


def test_trace_starting_after_init_gives_only_uncertain_divergences(tmp_path: Path) -> None:
    require_shared()
    steps = [s for s in _steps(write_variant(SRC, tmp_path / "late.dat", 100_000, 140_000))
             if isinstance(s, ReplayStep)]
    assert steps and all(s.op.kind != "init" for s in steps)
    div = [s for s in steps if s.diverges]
    assert div, "a late start must show divergences the unknown state explains"
    assert all(s.uncertain for s in div)
    assert {s.why for s in div} == {
        "it touches IPA space whose earlier state the trace does not show"}


def test_lost_events_make_later_divergences_uncertain(tmp_path: Path) -> None:
    require_shared()
    events = locate(SRC, 40_000)
    entry = next(i for i, name, _c, f in events
                 if name == "kvm_pgtable_stage2_unmap" and i > 2700)
    ret = next(i for i, name, _c, _f in events[entry:]
               if name == "kvm_pgtable_stage2_unmap__return")
    drop = set(range(entry, ret + 1))
    certain = _steps(write_variant(SRC, tmp_path / "a.dat", 0, 40_000, drop=drop))
    assert [s for s in certain if isinstance(s, ReplayStep) and s.diverges and not s.uncertain]
    lost = _steps(write_variant(SRC, tmp_path / "b.dat", 0, 40_000, drop=drop,
                                lost_before={ret + 1}))
    assert any(isinstance(s, Gap) for s in lost)
    div = [s for s in lost if isinstance(s, ReplayStep) and s.diverges]
    assert div and all(s.uncertain for s in div)
    assert "lost events" in str(div[0].why)


ranges = st.lists(st.tuples(st.booleans(), st.integers(0, 64), st.integers(1, 16)),
                  max_size=20)


@given(ranges)
def test_regions_match_a_set_of_points(ops: list[tuple[bool, int, int]]) -> None:
    regions = Regions()
    points: set[int] = set()
    for add, lo, length in ops:
        if add:
            regions.add(lo, lo + length)
            points.update(range(lo, lo + length))
        else:
            regions.remove(lo, lo + length)
            points.difference_update(range(lo, lo + length))
        covered = {p for a, b in regions.ranges for p in range(a, b)}
        assert covered == points
        assert all(a < b for a, b in regions.ranges)
        pairs = zip(regions.ranges, regions.ranges[1:], strict=False)
        assert all(b < a2 for (_a, b), (a2, _b) in pairs)
        for lo2 in range(0, 80, 7):
            assert regions.overlaps(lo2, lo2 + 3) == bool(points & set(range(lo2, lo2 + 3)))


def test_an_unmap_of_whole_pgd_entries_makes_them_known() -> None:
    model = RootModel(0, LINUX_6_1, Platform(), 0, lambda n: 0, known=False)
    model.adopt(0x4000_0000, 40, 1)  # level-1 pgd: each entry spans 1 GiB
    gib = 1 << 30
    model.learn_unmapped(gib + 4096, 3 * gib)  # covers only [2 GiB, 3 GiB) whole
    assert model.touches_unknown(gib, gib + 4096)
    assert not model.touches_unknown(2 * gib, 3 * gib)
    assert model.touches_unknown(3 * gib - 4096, 3 * gib + 1)
