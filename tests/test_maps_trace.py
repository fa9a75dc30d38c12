"""``ptreplay maps TRACE --at INDEX`` and ``ptreplay replay TRACE --at TIMESTAMP`` agree.

Both stop after the operations that returned by a point of the trace: an event
index (as ``ptreplay events`` numbers events) or that event's timestamp. For
the same point they must show the same live stage-2 roots with the same maps.
"""

from __future__ import annotations

import re

import pytest
from conftest import REPO

from ptreplay.cli import main
from ptreplay.trace import open_trace

TRACE = REPO / "traces" / "stage2-clean.dat"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    try:
        main(list(argv))
    except SystemExit as e:
        assert not e.code, capsys.readouterr().err
    return capsys.readouterr().out


def _blocks(text: str) -> dict[str, str]:
    """Each ``---[ stage-2 X: owners ]---`` block, by its root."""
    parts = re.split(r"^(---\[ stage-2 \S+: owners \]---)$", text, flags=re.M)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts), 2)}


def _live_blocks(replay_text: str) -> dict[str, str]:
    sections = replay_text.split("\nstage-2 root at pgd ")
    return {k: v for s in sections if ": live after ts" in s.split("\n", 1)[0]
            for k, v in _blocks(s).items()}


def _return_events(name: str) -> list[tuple[int, int]]:
    with open_trace(TRACE) as t:
        return [(i, ev.ts) for i, ev in enumerate(t.events()) if getattr(ev, "name", "") == name]


@pytest.mark.parametrize("which", [0, 5, -1])
def test_maps_at_an_event_index_equals_replay_at_its_timestamp(
        capsys: pytest.CaptureFixture[str], which: int) -> None:
    index, ts = _return_events("kvm_pgtable_stage2_set_owner__return")[which]
    by_index = _blocks(_run(capsys, "maps", str(TRACE), "--at", str(index), "--layout", "owners",
                            "--quiet"))
    by_ts = _live_blocks(_run(capsys, "replay", str(TRACE), "--at", str(ts), "--layout",
                              "owners", "--quiet"))
    assert by_index and by_index == by_ts


def test_an_earlier_index_shows_an_earlier_state(capsys: pytest.CaptureFixture[str]) -> None:
    returns = _return_events("kvm_pgtable_stage2_set_owner__return")
    first, _ = returns[0]
    # right before the first donation returns, the host's stage-2 has no owner-1 range;
    # right after it, it has
    before = _run(capsys, "maps", str(TRACE), "--at", str(first - 1), "--layout", "owners",
                  "--quiet")
    after = _run(capsys, "maps", str(TRACE), "--at", str(first), "--layout", "owners", "--quiet")
    assert "owner 1" not in before
    assert "owner 1" in after


def test_replay_layout_all_is_owners_then_the_full_mapping_map(
        capsys: pytest.CaptureFixture[str]) -> None:
    text = _run(capsys, "replay", str(TRACE), "--layout", "all", "--quiet")
    full = _run(capsys, "replay", str(TRACE), "--layout", "full", "--quiet")
    heads = re.findall(r"^---\[ stage-2 (\S+): (owners|IPA bits .*) \]---$", text, flags=re.M)
    assert heads and [k for _r, k in heads[::2]] == ["owners"] * (len(heads) // 2)
    assert all(k.startswith("IPA bits") for _r, k in heads[1::2])
    # the full blocks are exactly what --layout full prints
    for block in re.split(r"^---\[ stage-2 \S+: owners \]---$", text, flags=re.M)[1:]:
        mapping = block[block.index("---[ stage-2"):].split("\n\nstage-2 root at")[0].strip()
        assert mapping in full
