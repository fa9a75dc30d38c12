"""Ownership and mapping maps, against the oracle harness's own dumps of the live tables."""

from __future__ import annotations

import io

import pytest
from conftest import require_shared
from test_checks_effects import oracle_files, oracle_lines

from ptreplay.checks.engine import EffectChecker
from ptreplay.checks.maps import (
    format_mappings,
    leaf_entries,
    mappings,
    ownership_map,
    ptdump,
)
from ptreplay.checks.stream import StreamInfo, read_effect_log
from ptreplay.effects import Info, Table
from ptreplay.model.profiles import get_profile


def _owners_from_dump(tables: list[Table], info: Info, profile) -> list[tuple[int, int, int]]:
    """Owner runs computed from the dump lines alone (not from the shadow)."""
    by_pa = {t.pa: t for t in tables}
    pgds = sorted(t.pa for t in tables if t.level == info.start_level)[:info.pgd_pages]
    runs: list[list[int]] = []

    def add(start: int, end: int, owner: int) -> None:
        if runs and runs[-1][2] == owner and runs[-1][1] == start:
            runs[-1][1] = end
        else:
            runs.append([start, end, owner])

    def walk(pa: int, level: int, base: int) -> None:
        entries = dict(by_pa[pa].entries)
        shift = 12 + 9 * (3 - level)
        for idx in range(512):
            start = base + (idx << shift)
            if start >= 1 << info.ia_bits:
                return
            val = entries.get(idx, 0)
            if level < 3 and val & 3 == 3:
                walk(val & 0xFFFFFFFFF000, level + 1, start)
            else:
                owner = 0 if val & 1 else profile.owner_of(val)
                add(start, start + (1 << shift), owner)

    span = 512 << (12 + 9 * (3 - info.start_level))
    for i, pgd in enumerate(pgds):
        walk(pgd, info.start_level, i * span)
    return [tuple(r) for r in runs]


@pytest.mark.parametrize("profile", ["linux-5.13", "linux-6.1"])
def test_ownership_map_equals_the_dumps(profile):
    prof = get_profile(profile)
    compared = owned = 0
    for path in oracle_files(profile):
        lines = oracle_lines(profile, path.name[:-len(".jsonl.gz")])
        checker = EffectChecker(StreamInfo("t", profile))
        info = None
        for step in read_effect_log(io.BytesIO(("\n".join(lines) + "\n").encode()), "t"):
            checker.feed(step)
            info = next((e for e in step.effects if isinstance(e, Info)), info)
            tables = [e for e in step.effects if isinstance(e, Table)]
            if step.op is None or step.op.name != "dump" or not tables:
                continue
            expected = _owners_from_dump(tables, info, prof)
            got = [tuple(r) for r in ownership_map(checker.shadow, checker.current, prof)]
            assert got == expected, (path.name, step.op.index)
            compared += 1
            owned += sum(1 for r in got if r[2])
    assert compared > 100 and owned > 50


def _after(profile: str, name: str, op_count: int) -> EffectChecker:
    lines = oracle_lines(profile, name)
    checker = EffectChecker(StreamInfo("t", profile))
    for n, step in enumerate(read_effect_log(io.BytesIO(("\n".join(lines) + "\n").encode()),
                                             "t")):
        if n == op_count:
            break
        checker.feed(step)
    return checker


def test_ptdump_of_a_split_block():
    """Scenario 08 after its first three operations: one 4 KiB page at 0x201000 mapped
    read-only (XN set, AF set) through L1 -> L2 -> L3 tables of a 40-bit stage-2."""
    require_shared()
    checker = _after("linux-6.1", "08_split_2m_block", 3)
    text = ptdump(checker.shadow, checker.current)
    assert text == (
        "---[ Guest IPA ]---\n"
        "0x0000000000000000-0x0000000000200000           2M 2\n"
        "0x0000000000200000-0x0000000000201000           4K 3\n"
        "0x0000000000201000-0x0000000000202000           4K 3   R   PXNUXN AF    \n"
        "0x0000000000202000-0x0000000000400000        2040K 3\n"
        "0x0000000000400000-0x0000000040000000        1020M 2\n"
        "0x0000000040000000-0x0000010000000000        1023G 1\n")


def test_ptdump_block_and_full_layout():
    require_shared()
    checker = _after("linux-6.1", "05_block_2m_map", 2)
    shadow, root = checker.shadow, checker.current
    lines = ptdump(shadow, root).splitlines()
    blocks = [line for line in lines if "BLK" in line]
    assert blocks, lines
    for line in blocks:
        assert line.split()[1:3] == ["2M", "2"]
    full = format_mappings(shadow, root, get_profile("linux-6.1"))
    assert "normal AF" in full
    runs = mappings(shadow, root)
    assert sum(r.end - r.start for r in runs) == 1 << root.ia_bits
    assert all(a.end == b.start for a, b in zip(runs, runs[1:], strict=False))


def test_leaf_walk_covers_the_ipa_space_once():
    require_shared()
    checker = _after("linux-6.1", "901_random_seed1", 120)
    root = checker.current
    ends = 0
    for ipa, level, _val in leaf_entries(checker.shadow, root):
        assert ipa == ends
        ends = ipa + (1 << (12 + 9 * (3 - level)))
    assert ends == 1 << root.ia_bits
