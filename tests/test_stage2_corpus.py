"""The operations layer on the real arm64 recordings (a prefix of each, to stay fast;
bench/stage2_corpus.py checks the whole files).

Ground truth from outside the project: the recordings' text reports (what
trace-cmd printed), the capture kit's own map-context.py script (run here on
the same lines), and the facts their SOURCE.txt states.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
from conftest import CORPUS, require_shared
from report_raw import parse_line, report_lines

from ptreplay.effects import Put
from ptreplay.stage2.operations import (
    CONCURRENT,
    NO_ENTRY,
    NO_RETURN,
    OP_KINDS,
    ROOT_FIRST_SEEN,
    Operation,
    OperationBuilder,
    PageCount,
    TraceEvent,
)

VHE = CORPUS / "arm64" / "vhe-rich-v7" / "trace.report-raw.txt.gz"
A72 = CORPUS / "arm64" / "a72-rich-v7" / "trace.report-raw.txt.gz"
VHE612 = CORPUS / "arm64-6.12" / "vhe-rich2-v7" / "trace.report-raw.txt.gz"
PREFIX = 110_000


@cache
def _load(path: Path, limit: int = PREFIX) -> tuple[list[str], list[TraceEvent]]:
    require_shared()
    lines = report_lines(path, limit)
    events = [ev for i, ln in enumerate(lines) if (ev := parse_line(i, ln)) is not None]
    assert len(events) == len(lines)
    return lines, events


@cache
def _run(path: Path) -> OperationBuilder:
    builder = OperationBuilder()
    for ev in _load(path)[1]:
        builder.feed(ev)
    builder.finish()
    return builder


def _ops(path: Path) -> list[Operation]:
    return [o for o in _run(path).ready if isinstance(o, Operation)]


@pytest.mark.parametrize("path", [VHE, A72, VHE612], ids=["vhe", "a72", "vhe612"])
def test_one_operation_per_call_all_paired(path: Path) -> None:
    """As many operations of each kind as entry probes in the report; all paired but the
    calls still running where the prefix ends."""
    events = _load(path)[1]
    entries = Counter(OP_KINDS[e.name] for e in events if e.name in OP_KINDS)
    ops = _ops(path)
    assert Counter(o.kind for o in ops if o.kind != "free_unlinked") == entries
    cut = [o for o in ops if o.uncertain]
    assert all(o.flags & {NO_RETURN} and o.index is not None for o in cut)
    assert len(cut) <= 2  # at most one open call per vCPU thread at the cut
    for o in ops:
        if not o.uncertain and o.kind != "free_unlinked":
            assert events[o.index_return].name == o.func + "__return"
            assert events[o.index].name == o.func


@pytest.mark.parametrize("path", [VHE, A72, VHE612], ids=["vhe", "a72", "vhe612"])
def test_map_contexts_agree_with_the_capture_kits_script(path: Path, tmp_path: Path) -> None:
    """capture/map-context.py (the corpus's own tool) on the same lines gives the same counts."""
    lines = _load(path)[0]
    report = tmp_path / "prefix.txt"
    report.write_text("".join(lines))
    script = CORPUS / "arm64" / "capture" / "map-context.py"
    out = subprocess.run([sys.executable, str(script), str(report)], check=True,
                         capture_output=True, text=True).stdout
    theirs = Counter()
    for line in out.splitlines():
        count, *key = line.split()
        theirs[tuple(key)] = int(count)
    ours = Counter()
    for o in _ops(path):
        if o.kind == "map" and o.ret is not None:
            a = o.args
            ours[(str(o.context), f"ret={o.ret}", hex(a["prot"]), "mc=0" if a["mc"] == 0 else "mc",
                  hex(a["size"]))] += 1
    assert ours == theirs and sum(theirs.values()) > 1000


@pytest.mark.parametrize("path", [VHE, A72], ids=["vhe", "a72"])
def test_enomem_maps_come_from_change_pte_without_memcache(path: Path) -> None:
    """SOURCE.txt: every -ENOMEM map is kvm_set_spte_gfn's, with mc=0 and prot=R."""
    enomem = [o for o in _ops(path) if o.kind == "map" and o.ret == -12]
    assert enomem
    assert {(o.context, o.args["mc"], o.args["prot"]) for o in enomem} == {
        ("kvm_set_spte_gfn", 0, 0x4)}


def test_three_roots_per_qemu_process_with_their_vms() -> None:
    """SOURCE.txt: each qemu process creates 2 scratch VMs (init, destroy, no map) and the VM."""
    builder = _run(VHE)
    events = _load(VHE)[1]
    inits = [e for e in events if e.name == "kvm_init_stage2_mmu"]
    ops = _ops(VHE)
    roots = builder.roots
    assert len(roots) == 3 and all(r.init_seen for r in roots.values())
    assert [r.vm for r in roots.values()] == [e.fields["kvm"] for e in inits]
    assert [r.mmu for r in roots.values()] == [e.fields["mmu"] for e in inits]
    scratch = [r for r in roots.values() if r.destroy_seen]
    assert len(scratch) == 2
    for r in scratch:
        kinds = [o.kind for o in ops if o.root == r.id]
        assert kinds == ["init", "destroy"]
    [vm] = [r for r in roots.values() if not r.retired]
    assert all(o.root == vm.id and o.vm == vm.vm for o in ops if o.kind in ("map", "unmap"))


@pytest.mark.parametrize("path", [VHE, A72, VHE612], ids=["vhe", "a72", "vhe612"])
def test_effect_probes_land_inside_operations(path: Path) -> None:
    """Every table-page effect probe of the report is attributed to exactly one operation;
    only the TLB flushes generic KVM requests outside stage-2 calls are left over (and the
    hyp stage-1 get_page calls of nVHE)."""
    events = _load(path)[1]
    ops = _ops(path)
    attributed = Counter(events[e.index].name for o in ops for e in o.effects
                         if events[e.index].name != "kvm_pgtable_stage2_free_unlinked")
    in_report = Counter(e.name for e in events)
    for name in ("kvm_s2_put_page", "kvm_host_page_count__return", "clean_dcache_guest_page",
                 "stage2_memcache_zalloc_page__return", "__kvm_tlb_flush_vmid_ipa",
                 "kvm_s2_free_pages_exact", "kvm_s2_zalloc_pages_exact__return",
                 "invalidate_icache_guest_page"):
        assert attributed[name] == in_report[name], name
    left = _run(path).stats.get("effect_outside_operation", 0)
    outside_kinds = {"__kvm_tlb_flush_vmid", "kvm_tlb_flush_vmid_range",
                     "__kvm_tlb_flush_vmid_range", "kvm_host_get_page"}
    assert left == sum(in_report[n] - attributed[n] for n in outside_kinds)


def test_612_parallel_faults_and_rcu_frees() -> None:
    ops = _ops(VHE612)
    by_root: dict[int | None, list[Operation]] = {}
    for o in ops:
        by_root.setdefault(o.root, []).append(o)
    concurrent = [o for o in ops if CONCURRENT in o.flags]
    assert len(concurrent) > 100
    for o in concurrent:
        assert any(p.pid != o.pid and p.index is not None and p.index_return is not None
                   and p.index < o.index_return and o.index < p.index_return
                   for p in by_root[o.root]), o
    frees = [o for o in ops if o.kind == "free_unlinked"]
    events = _load(VHE612)[1]
    assert len(frees) == sum(1 for e in events if e.name == "stage2_free_unlinked_table_rcu_cb")
    for f in frees:
        assert not f.uncertain and f.root is not None
        table = f.args["pgtable"]
        assert f.effects[-1].effect == Put(table, -1)
        assert [e.effect for e in f.effects if type(e.effect) is PageCount] == [
            PageCount(table, 1)]
    # Two roots on one pgt address (the scratch VMs) are two roots.
    pgts = Counter(r.pgt for r in _run(VHE612).roots.values())
    assert sorted(pgts.values()) == [1, 2]


def test_a_trace_that_starts_mid_run() -> None:
    """Cut the recording at an arbitrary event: the stage-2 already exists, calls are running.
    The root is first seen without its init, the returns of the running calls come alone,
    and everything after is paired as before."""
    events = _load(VHE)[1][50_001:]
    ops = [o for o in _build(events) if isinstance(o, Operation)]
    first = next(o for o in ops if o.index is not None)
    assert ROOT_FIRST_SEEN in first.flags
    assert all(ROOT_FIRST_SEEN not in o.flags for o in ops if o is not first)
    lone = [o for o in ops if o.index is None]
    assert all(o.flags == {NO_ENTRY} and o.index_return < first.index for o in lone)
    later = [o for o in ops if o.index is not None and o.index_return is not None]
    assert len(later) > 5_000 and not any(o.uncertain for o in later)
    assert {o.root for o in later} == {first.root}


def _build(events: list[TraceEvent]) -> list[Operation | object]:
    builder = OperationBuilder()
    for ev in events:
        builder.feed(ev)
    builder.finish()
    return builder.ready
