"""``ptreplay check`` / ``replay`` on traces: the real recordings are clean, changed ones are not.

Ground truth from outside the project: the recordings' event counts and boot
logs (see tests/test_replay_corpus.py for the replay itself); the changed
recordings are made with the project's reader and writer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CORPUS, require_shared
from trace_variants import events_in_op, locate, write_variant

from ptreplay.stage2.checking import check_trace
from ptreplay.stage2.replay import ReplayConfig

ARM64 = CORPUS / "arm64"
VHE = ARM64 / "vhe-rich-v7" / "trace.dat"
N = 40_000


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ptreplay", *args], capture_output=True,
                          text=True)


@pytest.fixture(scope="module")
def events() -> list:
    require_shared()
    return locate(VHE, N)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_shared()
    return write_variant(VHE, tmp_path_factory.mktemp("v") / "base.dat", 0, N)


def _kinds(path: Path) -> list[tuple[str, int | None, bool]]:
    run = check_trace(str(path), ReplayConfig(jobs=1))
    return [(f.kind, f.index, f.uncertain) for f in run.findings]


def test_clean_prefix_has_no_findings(base: Path) -> None:
    assert _kinds(base) == []


@pytest.mark.parametrize("op_name,effect,finding", [
    ("kvm_pgtable_stage2_unmap", "kvm_s2_put_page", "refcount-leak"),
    ("kvm_pgtable_stage2_map", "kvm_host_get_page", "refcount-underflow"),
    ("kvm_pgtable_stage2_unmap", "__kvm_tlb_flush_vmid_ipa", "bbm-missing-tlbi"),
])
def test_erased_effect_gives_a_divergence_there_and_a_checker_finding(
        tmp_path: Path, events: list, op_name: str, effect: str, finding: str) -> None:
    where = events_in_op(events, op_name, effect)[0]
    entry = max(i for i, name, _c, _f in events[:where] if name == op_name)
    found = _kinds(write_variant(VHE, tmp_path / "v.dat", 0, N, drop={where}))
    assert ("divergence-effect", where, False) in found
    assert (finding, entry, False) in found  # the checker, at the operation


def test_double_put_is_a_refcount_finding(tmp_path: Path, events: list) -> None:
    """A put_page the kernel did twice: the trace shows it twice (a copy of the event)."""
    where = events_in_op(events, "kvm_pgtable_stage2_unmap", "kvm_s2_put_page")[0]
    path = write_variant(VHE, tmp_path / "v.dat", 0, N, duplicate={where})
    found = _kinds(path)
    assert ("divergence-effect", where + 1, False) in found
    assert any(k == "refcount-underflow" for k, _i, _u in found)


def test_changed_return_value(tmp_path: Path, events: list) -> None:
    where = next(i for i, name, _c, f in events
                 if name == "kvm_pgtable_stage2_map__return" and f["ret"] == 0 and i > 3000)
    found = _kinds(write_variant(VHE, tmp_path / "v.dat", 0, N, patch={where: {"ret": -11}}))
    assert found == [("divergence-return", where, False)]


def test_late_start_findings_are_uncertain(tmp_path: Path) -> None:
    require_shared()
    run = check_trace(str(write_variant(VHE, tmp_path / "late.dat", 100_000, 130_000)),
                      ReplayConfig(jobs=1))
    assert run.findings and all(f.uncertain for f in run.findings)
    assert run.divergences == 0 and run.uncertain_divergences > 0


def test_cli_exit_codes_and_platform_report(tmp_path: Path, base: Path, events: list) -> None:
    clean = _cli("check", str(base), "--quiet")
    assert clean.returncode == 0, clean.stderr
    assert "profile: linux-6.1 (from the trace)" in clean.stdout
    assert "platform fwb: yes" in clean.stdout and "platform vhe: yes" in clean.stdout
    where = events_in_op(events, "kvm_pgtable_stage2_unmap", "kvm_s2_put_page")[0]
    bad = write_variant(VHE, tmp_path / "bad.dat", 0, N, drop={where})
    out = _cli("check", str(bad), "--quiet", "--format", "json")
    assert out.returncode == 1
    assert f'"index": {where}' in out.stdout
    forced = _cli("check", str(base), "--quiet", "--no-fwb")
    assert forced.returncode == 1 and "divergence-effect" in forced.stdout
    assert "given as an option" in forced.stdout


def test_kernel_without_a_profile_is_refused_in_one_line() -> None:
    require_shared()
    trace = CORPUS / "arm64-6.12" / "vhe-rich2-v7" / "trace.dat"
    out = _cli("check", str(trace), "--quiet")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1
    assert "linux-6.12" in out.stderr and "not supported yet" in out.stderr


def test_bad_trace_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "cut.dat"
    bad.write_bytes(VHE.read_bytes()[:300_000])
    out = _cli("check", str(bad), "--quiet")
    assert out.returncode == 2 and out.stderr.startswith("ptreplay: error: ")
    assert out.stderr.count("\n") == 1


def test_replay_maps_at_a_point_and_at_the_end(base: Path, events: list) -> None:
    end = _cli("replay", str(base), "--quiet", "--layout", "owners")
    assert end.returncode == 0, end.stderr
    assert end.stdout.count("destroyed: as it was before its destroy") == 2
    assert "live at the end of the trace" in end.stdout
    ts = next(f for i, name, _c, f in events if name == "kvm_pgtable_stage2_map")
    del ts
    early = _cli("replay", str(base), "--quiet", "--at", "1", "--layout", "ptdump")
    assert early.returncode == 0
    assert "no stage-2 root after ts 1" in early.stdout


def test_help_has_examples() -> None:
    for cmd in ("check", "replay"):
        out = _cli(cmd, "--help")
        assert out.returncode == 0 and "Examples" in out.stdout


def test_one_process_or_two_same_report(tmp_path: Path, events: list) -> None:
    """The reader process changes nothing: byte-identical reports, run after run."""
    where = events_in_op(events, "kvm_pgtable_stage2_map", "kvm_host_get_page")[0]
    bad = write_variant(VHE, tmp_path / "bad.dat", 0, N, drop={where})
    outs = [_cli("check", str(bad), "--quiet", "--format", "json", "--jobs", j).stdout
            for j in ("1", "2", "2")]
    assert outs[0] == outs[1] == outs[2] and '"divergence-effect"' in outs[0]
