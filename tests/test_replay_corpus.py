"""The real arm64 recordings replay through linux-6.1 from an empty table with no divergence,
and ``ptreplay check`` finds nothing in them.

Ground truth from outside the project: the recordings' own event counts
(``*.event-counts.txt``: every probe hit is in the file) and boot logs (the
CPU features of each machine). Every operation is replayed, its return value
equals the model's, and every observed effect (allocations, frees,
get/put_page, page_count with the page's count, cache maintenance, TLB
invalidations where they fire) equals the model's prediction; the checkers,
run on what the trace observed, report nothing.
"""

from __future__ import annotations

import gzip
from collections import Counter
from functools import cache

import pytest
from conftest import CORPUS, require_shared

from ptreplay.checks.findings import Finding
from ptreplay.stage2.checking import check_trace
from ptreplay.stage2.operations import OP_KINDS
from ptreplay.stage2.platform import features_from_dmesg
from ptreplay.stage2.replay import Replay, ReplayConfig, ReplayStep

ARM64 = CORPUS / "arm64"
RECORDINGS = {
    "vhe-rich-v7": ("trace.dat", "trace.event-counts.txt"),
    "a72-rich-v7": ("trace.dat", "trace.event-counts.txt"),
    "a72-rich-raw": ("raw", "raw.event-counts.txt"),
}

# Probe -> comparable record it becomes.
_PROBES = {
    "kvm_host_get_page": "get", "kvm_s2_put_page": "put",
    "kvm_host_page_count__return": "page_count", "kvm_s2_free_pages_exact": "free",
    "clean_dcache_guest_page": "cmo", "invalidate_icache_guest_page": "cmo",
    "stage2_memcache_zalloc_page__return": "alloc", "kvm_s2_zalloc_pages_exact__return": "alloc",
}


class Result:
    def __init__(self, replay: Replay, steps: list[ReplayStep], findings: list[Finding]) -> None:
        self.replay = replay
        self.steps = steps
        self.findings = findings


@cache
def _run(name: str, hw_af: bool | None = None) -> Result:
    """``ptreplay check`` of a recording (two processes), keeping each replayed step."""
    require_shared()
    steps: list[ReplayStep] = []

    def keep(step: ReplayStep) -> None:
        step.predicted = []  # keep only what the tests read
        step.merged = None
        steps.append(step)

    run = check_trace(str(ARM64 / name / RECORDINGS[name][0]),
                      ReplayConfig(hw_af=hw_af, jobs=2), on_step=keep)
    return Result(run.replay, steps, run.findings)


def _counts(name: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for line in (ARM64 / name / RECORDINGS[name][1]).read_text().splitlines():
        count, event = line.split()
        if event != "TOTAL":
            out[event] = int(count)
    return out


@pytest.mark.parametrize("name", list(RECORDINGS))
def test_every_operation_and_effect_equals_the_model(name: str) -> None:
    result = _run(name)
    replay, steps = result.replay, result.steps
    assert replay.profile.name == "linux-6.1"
    assert [s for s in steps if s.diverges] == []
    assert [s for s in steps if s.uncertain] == []
    counts = _counts(name)
    assert Counter(s.op.kind for s in steps) == Counter(
        {OP_KINDS[f]: n for f, n in counts.items() if f in OP_KINDS})
    compared = Counter(r[0] for s in steps for r in s.oseen)
    want: Counter[str] = Counter()
    for probe, record in _PROBES.items():
        want[record] += counts.get(probe, 0)
    # Every probe hit was compared, but for the few that fire outside stage-2 calls
    # (kvm_flush_remote_tlbs' __kvm_tlb_flush_vmid; nVHE's hyp stage-1 mappings,
    # which share kvm_host_get_page): those the operations layer counts.
    outside = replay.stats.get("ops.effect_outside_operation", 0)
    assert all(compared[r] <= n for r, n in want.items())
    missed = sum(want.values()) - sum(compared[r] for r in want)
    assert missed < 0.001 * sum(want.values())
    if counts.get("__kvm_tlb_flush_vmid_ipa"):
        tlbi = Counter(r[1] for s in steps for r in s.oseen if r[0] == "tlbi")
        assert tlbi["vmid_ipa"] == counts["__kvm_tlb_flush_vmid_ipa"]
        assert 0 < tlbi["vmid"] <= counts["__kvm_tlb_flush_vmid"]
        missed += counts["__kvm_tlb_flush_vmid"] - tlbi["vmid"]
    else:
        assert "tlbi" not in compared and "tlbi" not in replay.kinds
    assert missed == outside


@pytest.mark.parametrize("name", list(RECORDINGS))
def test_check_finds_nothing(name: str) -> None:
    assert _run(name).findings == []


@pytest.mark.parametrize("name", list(RECORDINGS))
def test_platform_as_the_boot_log_says(name: str) -> None:
    replay = _run(name).replay
    with gzip.open(ARM64 / name / "l1-info" / "dmesg-boot.txt.gz", "rt") as f:
        truth = features_from_dmesg(f.read())
    assert replay.platform is not None
    assert replay.platform.fwb.value == truth["fwb"]
    assert replay.platform.fwb.source == "trace"
    assert replay.platform.vhe.value == truth["vhe"]
    adopted = replay.adopted
    if truth["hw_af"]:
        assert adopted and replay.first_mkyoung is None
    else:
        assert not adopted and replay.first_mkyoung is not None


def test_without_hardware_af_only_mkold_af_bits_diverge() -> None:
    """Telling the replay the VHE machine has no hardware AF management must show: the
    mkold returns where the hardware had set AF again, and nothing else."""
    adopted = {a[0] for a in _run("vhe-rich-v7").replay.adopted}
    result = _run("vhe-rich-v7", hw_af=False)
    div = [s for s in result.steps if s.diverges]
    assert {s.index for s in div} == adopted
    for s in div:
        assert s.op.kind == "mkold" and not s.effects_diverge
        assert s.op.ret ^ s.predicted_ret == 1 << 10 and s.op.ret & 1 << 10
    assert {f.kind for f in result.findings} == {"divergence-return"}
    assert len(result.findings) == len(adopted)
    assert all("bits 0x400 differ" in f.explanation for f in result.findings)
