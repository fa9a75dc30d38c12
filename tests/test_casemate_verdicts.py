"""ptreplay's verdict on every casemate example log agrees with the log's expected verdict.

Ground truth: shared/conformance/casemate/logs (each log ends with its
expected verdict ``! <message>``, or is expected to check clean) and
VERDICTS.md. ptreplay's verdict is the set of finding kinds at its first
finding; it agrees when that finding is on the record just before the ``!``
line and one of its kinds is the counterpart of the expected message (the
``casemate`` field of :data:`ptreplay.checks.findings.KINDS`).
"""

from __future__ import annotations

import io

import pytest
from conftest import CONFORMANCE, require_shared

from ptreplay.checks.casemate_model import CasemateChecker
from ptreplay.checks.findings import KINDS, Finding
from ptreplay.formats.casemate import CasemateReader

LOGS = CONFORMANCE / "casemate" / "logs"


def check_log(data: bytes, name: str = "log") -> tuple[list[Finding], CasemateReader]:
    reader = CasemateReader(io.BytesIO(data), name)
    checker = CasemateChecker(name)
    for batch in reader.batches():
        checker.feed(batch)
    return checker.finish(), reader


def counterparts(message: str) -> set[str]:
    return {k.name for k in KINDS.values() if message in k.casemate}


def _log_names() -> list[str]:
    require_shared()
    return sorted(p.name for p in LOGS.glob("*.log"))


def test_all_23_logs_are_there():
    assert len(_log_names()) == 23


@pytest.mark.parametrize("name", [
    "bad_EL2_ASID.log", "bad_bbm_by_wrong_VMID.log", "bad_bbm_missing_tlbi.log",
    "bad_free_page_without_clean.log", "bad_no_assoc_lock.log", "bad_no_bbm.log",
    "bad_no_bbm_stage1.log", "bad_overlap_ASID.log", "bad_overlap_VMID.log", "bad_race.log",
    "bad_reuse_page.log", "bad_switch_wrong_vmid.log", "bad_unlocked_write.log", "good_bbm.log",
    "good_bbm_by_VMID.log", "good_bbm_stage1.log", "good_free_page.log", "good_free_tree.log",
    "good_release_table.log", "good_switch.log", "good_write.log", "good_write_child.log",
    "simple.log"])
def test_verdict_agrees_with_casemate(name):
    require_shared()
    data = (LOGS / name).read_bytes()
    findings, reader = check_log(data, name)
    if reader.expected is None:
        assert findings == [], [f.explanation for f in findings]
        return
    accepted = counterparts(reader.expected)
    assert accepted, f"no ptreplay kind answers {reader.expected!r}"
    assert findings, f"{name}: expected {reader.expected!r}, ptreplay found nothing"
    first = [f for f in findings if f.index == findings[0].index]
    assert {f.kind for f in first} & accepted, (reader.expected, [f.kind for f in first])
    # on the record just before the '!' line
    assert first[0].line == reader.expected_line - 1
    assert first[0].index == reader.records - 1
    assert first[0].src and ":" in first[0].src


def test_every_casemate_message_of_the_examples_has_a_counterpart():
    for name in _log_names():
        text = (LOGS / name).read_text()
        for line in text.splitlines():
            if line.startswith("!"):
                assert counterparts(line[1:].strip()), line


def test_wrong_vmid_is_diagnosed():
    require_shared()
    findings, _ = check_log((LOGS / "bad_bbm_by_wrong_VMID.log").read_bytes())
    f = findings[0]
    assert f.kind == "tlbi-wrong-vmid"
    assert "VMID 1" in f.explanation and "VMID 0" in f.explanation
    assert f.related == (10, 14, 16)  # the break, then both TLBIs issued under VMID 1


# --- leaf remap without break-before-make (VERDICTS.md, "logs_extra") ---------------------------

def _leaf_remap_log(attrs: int) -> bytes:
    """L0 -> L1 -> L2 -> L3, live and locked; map an L3 page; DSB; remap it to another
    output address with the same attributes, without a break."""
    base = 0x80000000
    l0, l1, l2, l3, lock = (base + i * 0x1000 for i in range(5))
    recs = []

    def rec(text: str) -> None:
        recs.append(f"({text} (src \"remap.c:{len(recs) + 1}\"))")

    for page in (l0, l1, l2, l3):
        rec(f"mem-init (id {len(recs)}) (tid 0) (address {page:#x}) (size 0x1000)")
    rec(f"hint (id {len(recs)}) (tid 0) (kind set_root_lock) (location {l0:#x}) (value {lock:#x})")
    for table, child in ((l0, l1), (l1, l2), (l2, l3)):
        rec(f"mem-write (id {len(recs)}) (tid 0) (mem-order plain) (address {table:#x}) "
            f"(value {child | 3:#x})")
    rec(f"sysreg-write (id {len(recs)}) (tid 0) (sysreg vttbr_el2) (value {l0:#x})")
    rec(f"lock (id {len(recs)}) (tid 0) (address {lock:#x})")
    rec(f"mem-write (id {len(recs)}) (tid 0) (mem-order plain) (address {l3 + 8:#x}) "
        f"(value {0x100000000 | attrs | 3:#x})")
    rec(f"barrier (id {len(recs)}) (tid 0) dsb (kind ish)")
    rec(f"mem-write (id {len(recs)}) (tid 0) (mem-order plain) (address {l3 + 8:#x}) "
        f"(value {0x200000000 | attrs | 3:#x})")
    rec(f"unlock (id {len(recs)}) (tid 0) (address {lock:#x})")
    return ("\n".join(recs) + "\n").encode()


@pytest.mark.parametrize("attrs", [0x4FC, 0x0FC])   # AF=1 (casemate misses it), AF=0
def test_leaf_remap_without_bbm_is_flagged_whatever_the_access_flag(attrs):
    findings, _ = check_log(_leaf_remap_log(attrs))
    assert [(f.kind, f.index, f.level, f.entry) for f in findings] == \
        [("bbm-valid-to-valid", 12, 3, 0x80003008)]
    assert "output address changes" in findings[0].explanation
    assert "D8.14.1" in KINDS["bbm-valid-to-valid"].rule


def test_the_same_remap_with_break_before_make_is_clean():
    log = _leaf_remap_log(0x4FC).decode().splitlines()
    make = log[12]
    brk = make.replace("0x2000004ff", "0x0")
    seq = [brk,
           '(barrier (id 100) (tid 0) dsb (kind ish) (src "remap.c:100"))',
           '(tlbi (id 101) (tid 0) ipas2e1is (value 0x1) (src "remap.c:101"))',
           '(barrier (id 102) (tid 0) dsb (kind ish) (src "remap.c:102"))',
           '(tlbi (id 103) (tid 0) vmalle1is (src "remap.c:103"))',
           '(barrier (id 104) (tid 0) dsb (kind ish) (src "remap.c:104"))']
    log[12:12] = seq
    findings, _ = check_log(("\n".join(log) + "\n").encode())
    assert findings == [], [f.explanation for f in findings]
    # without the stage-1 invalidation the combined entries may survive
    log.pop(12 + 4)
    findings, _ = check_log(("\n".join(log) + "\n").encode())
    assert [f.kind for f in findings] == ["bbm-missing-tlbi"]
    assert "VMALLE1IS" in findings[0].explanation


def test_tlbi_with_the_wrong_level_hint_does_not_complete_the_break():
    log = _leaf_remap_log(0x4FC).decode().splitlines()
    make = log[12]
    ttl = (0b0100 | 2) << 44                          # 4K granule, level 2: the entry is level 3
    log[12:12] = [make.replace("0x2000004ff", "0x0"),
                  '(barrier (id 100) (tid 0) dsb (kind ish) (src "r.c:1"))',
                  f'(tlbi (id 101) (tid 0) ipas2e1is (value {ttl | 0x1:#x}) (src "r.c:2"))',
                  '(barrier (id 102) (tid 0) dsb (kind ish) (src "r.c:3"))',
                  '(tlbi (id 103) (tid 0) vmalle1is (src "r.c:4"))',
                  '(barrier (id 104) (tid 0) dsb (kind ish) (src "r.c:5"))']
    findings, _ = check_log(("\n".join(log) + "\n").encode())
    assert [f.kind for f in findings] == ["tlbi-wrong-level"]
    assert "level hint 2" in findings[0].explanation


def _check_fused(data: bytes) -> list[Finding]:
    checker = CasemateChecker("log")
    for _ in checker.check(CasemateReader(io.BytesIO(data), "log")):
        pass
    return checker.finish()


def test_fused_fast_path_gives_the_same_findings():
    """CasemateChecker.check (regex groups straight into the checks) equals feeding records."""
    require_shared()
    logs = [p.read_bytes() for p in sorted(LOGS.glob("*.log"))]
    logs += [_leaf_remap_log(0x4FC), _leaf_remap_log(0x4FC).replace(b"(id 12) ", b"12 ")]
    for data in logs:
        assert _check_fused(data) == check_log(data)[0]


def test_bench_workload_is_clean_for_both_paths():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from gen_casemate_log import generate

    out = io.StringIO()
    assert generate(out, 30_000, seed=7) == 30_000
    data = out.getvalue().encode()
    assert _check_fused(data) == [] and check_log(data)[0] == []
    # the same workload with one TLBI dropped: the page stays cached after its unmap, and
    # its CPU releases the lock anyway
    lines = data.decode().splitlines()
    drop = next(i for i, line in enumerate(lines) if "ipas2e1is" in line and i > 2000)
    del lines[drop]
    unlock = next(i for i in range(drop, len(lines)) if lines[i].startswith("(unlock"))
    found = _check_fused(("\n".join(lines[:unlock + 1]) + "\n").encode())
    assert [(f.kind, f.uncertain) for f in found] == [("bbm-missing-tlbi", False)]
    assert found[0].related[0] == drop - 2 and "the log ended" in found[0].explanation
    # the log cut right after the break: maybe completed later, so uncertain
    found = _check_fused(("\n".join(lines[:drop - 1]) + "\n").encode())
    assert [(f.kind, f.uncertain) for f in found] == [("bbm-missing-tlbi", True)]
