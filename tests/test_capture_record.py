"""The capture kit: ``capture kprobes`` output, environment checks, probe install/removal and
the exact ``trace-cmd record`` command line, against directories laid out like tracefs.

Nothing here touches the machine's real tracefs: every test passes its own directory.
"""

from __future__ import annotations

import platform
import stat
from pathlib import Path

import pytest

from ptreplay.capture.catalog import load_probe_set, load_tracepoints
from ptreplay.capture.probedefs import ProbeDefinition
from ptreplay.capture.record import (
    CaptureError,
    Environment,
    KprobeEvents,
    check_environment,
    find_tracefs,
    install_probes,
    record,
    trace_cmd_command,
)
from ptreplay.cli import main
from ptreplay.errors import InputError


def _fake_tracefs(root: Path, series: str = "6.1", missing: tuple[str, ...] = ()) -> Path:
    """A directory with what ptreplay reads of tracefs: events/, kprobe_events, error_log."""
    tfs = root / "tracing"
    (tfs / "events" / "kprobes").mkdir(parents=True)
    for name, tp in load_tracepoints(series).items():
        if name not in missing:
            (tfs / "events" / tp.system / name).mkdir(parents=True)
    (tfs / "kprobe_events").write_text("")
    (tfs / "error_log").write_text("")
    return tfs


def _fake_trace_cmd(root: Path, status: int = 0) -> Path:
    """An executable that records its arguments, one per line, and exits with ``status``."""
    script = root / "trace-cmd"
    log = root / "argv.txt"
    script.write_text(f'#!/bin/sh\nfor a in "$@"; do echo "$a"; done > {log}\nexit {status}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def _env(tfs: Path | None, trace_cmd: Path | None, **kw: object) -> Environment:
    base: dict[str, object] = dict(machine="aarch64", release="6.1.0-56-arm64", euid=0,
                                   tracefs=tfs, trace_cmd=str(trace_cmd) if trace_cmd else None)
    base.update(kw)
    return Environment(**base)  # type: ignore[arg-type]


def test_record_installs_runs_and_removes(tmp_path: Path) -> None:
    tfs = _fake_tracefs(tmp_path)
    tc = _fake_trace_cmd(tmp_path)
    warnings: list[str] = []
    out = tmp_path / "trace.dat"
    status = record(_env(tfs, tc), out, ["qemu-system-aarch64", "-m", "256", "--", "x"],
                    warn=warnings.append)
    assert status == 0
    probes = load_probe_set("6.1").entries
    written = (tfs / "kprobe_events").read_text().splitlines()
    added, removed = written[: len(probes)], written[len(probes):]
    assert added == [e.definition.line() for e in probes]
    assert removed == [f"-:kprobes/{e.definition.event}" for e in reversed(probes)]
    argv = (tmp_path / "argv.txt").read_text().splitlines()
    expected = ["record", "-o", str(out), "-b", "20000"]
    for e in probes:
        expected += ["-e", f"kprobes:{e.definition.event}"]
    for name in load_tracepoints("6.1"):
        expected += ["-e", f"kvm:{name}"]
    expected += ["--", "qemu-system-aarch64", "-m", "256", "--", "x"]
    assert argv == expected
    assert warnings == []


class _RejectingKernel(KprobeEvents):
    """Stands for a kernel whose kallsyms lacks some symbols (inlined functions)."""

    def __init__(self, tracefs: Path, absent: set[str]) -> None:
        super().__init__(tracefs)
        self.absent = absent

    def add(self, defn: ProbeDefinition) -> None:
        if defn.symbol in self.absent:
            (self.tracefs / "error_log").write_text(
                "[   15.5] trace_kprobe: error: Invalid probed address or symbol\n"
                f"  Command: {defn.line()}\n")
            raise OSError(2, "No such file or directory")
        super().add(defn)


def test_rejected_probes_are_warnings_and_not_recorded(tmp_path: Path) -> None:
    tfs = _fake_tracefs(tmp_path, missing=("kvm_set_spte_hva",))
    tc = _fake_trace_cmd(tmp_path)
    (tfs / "events" / "kprobes" / "kvm_s2_put_page").mkdir()  # somebody else's probe
    warnings: list[str] = []
    kernel = _RejectingKernel(tfs, {"kvm_host_zalloc_pages_exact", "kvm_mmu_wp_memory_region"})
    record(_env(tfs, tc), tmp_path / "t.dat", ["true"], warn=warnings.append,
           kprobe_events=kernel)
    assert sorted(w.split(" on ")[0] for w in warnings if "rejected" in w) == [
        "kernel rejected kprobe kvm_host_zalloc_pages_exact",
        "kernel rejected kprobe kvm_host_zalloc_pages_exact__return",
        "kernel rejected kprobe kvm_mmu_wp_memory_region",
    ]
    assert all("Invalid probed address or symbol" in w for w in warnings if "rejected" in w)
    assert any("kprobes/kvm_s2_put_page already exists" in w for w in warnings)
    assert any("tracepoint kvm:kvm_set_spte_hva does not exist" in w for w in warnings)
    argv = (tmp_path / "argv.txt").read_text().splitlines()
    assert "kprobes:kvm_host_zalloc_pages_exact" not in argv
    assert "kprobes:kvm_s2_put_page" in argv  # recorded as it is defined
    assert "kvm:kvm_set_spte_hva" not in argv
    written = (tfs / "kprobe_events").read_text()
    assert "-:kprobes/kvm_s2_put_page" not in written  # not ours: not removed
    assert "-:kprobes/kvm_pgtable_stage2_map\n" in written


def test_probes_are_removed_when_trace_cmd_fails(tmp_path: Path) -> None:
    tfs = _fake_tracefs(tmp_path)
    tc = _fake_trace_cmd(tmp_path, status=3)
    with pytest.raises(CaptureError, match="trace-cmd record exited with status 3"):
        record(_env(tfs, tc), tmp_path / "t.dat", ["true"])
    written = (tfs / "kprobe_events").read_text().splitlines()
    assert sum(1 for w in written if w.startswith("-:")) == len(load_probe_set("6.1").entries)


def test_no_probe_accepted_is_an_error(tmp_path: Path) -> None:
    tfs = _fake_tracefs(tmp_path)
    tc = _fake_trace_cmd(tmp_path)
    everything = {e.definition.symbol for e in load_probe_set("6.1").entries}
    with pytest.raises(CaptureError, match="accepted none of the 54 kprobes"):
        record(_env(tfs, tc), tmp_path / "t.dat", ["true"],
               kprobe_events=_RejectingKernel(tfs, everything))
    assert not (tmp_path / "argv.txt").exists()


def test_the_running_kernel_picks_the_set(tmp_path: Path) -> None:
    tfs = _fake_tracefs(tmp_path, series="6.12")
    tc = _fake_trace_cmd(tmp_path)
    record(_env(tfs, tc, release="6.12.117+deb12-arm64-16k"), tmp_path / "t.dat", ["true"],
           buffer_kb=None)
    argv = (tmp_path / "argv.txt").read_text().splitlines()
    assert "kprobes:kvm_pgtable_stage2_test_clear_young" in argv
    assert "-b" not in argv
    with pytest.raises(InputError, match="no kprobe set for Linux 4.19"):
        record(_env(tfs, tc, release="4.19.0-20-arm64"), tmp_path / "t.dat", ["true"])


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(machine="x86_64"), "needs an arm64 KVM host; this machine is x86_64"),
        (dict(tracefs=None), "tracefs is not mounted"),
        (dict(euid=1000), "must run as root"),
        (dict(trace_cmd=None), "trace-cmd not found"),
    ],
)
def test_environment_errors(tmp_path: Path, change: dict[str, object], message: str) -> None:
    tfs = _fake_tracefs(tmp_path)
    env = _env(tfs, _fake_trace_cmd(tmp_path))
    env = Environment(**{**env.__dict__, **change})  # type: ignore[arg-type]
    with pytest.raises(CaptureError, match=message):
        record(env, tmp_path / "t.dat", ["true"])
    assert (tfs / "kprobe_events").read_text() == ""


def test_tracefs_without_kprobes(tmp_path: Path) -> None:
    tfs = _fake_tracefs(tmp_path)
    (tfs / "kprobe_events").unlink()
    with pytest.raises(CaptureError, match="CONFIG_KPROBE_EVENTS"):
        check_environment(_env(tfs, _fake_trace_cmd(tmp_path)))
    (tmp_path / "plain").mkdir()
    with pytest.raises(CaptureError, match="not a tracefs mount"):
        check_environment(_env(tmp_path / "plain", _fake_trace_cmd(tmp_path)))


def test_find_tracefs_prefers_the_first_mount(tmp_path: Path) -> None:
    a, b = tmp_path / "a", _fake_tracefs(tmp_path)
    assert find_tracefs([a, b]) == b
    assert find_tracefs([a]) is None


def test_install_keeps_going_and_reports_the_kernels_reason(tmp_path: Path) -> None:
    tfs = _fake_tracefs(tmp_path)
    defs = [e.definition for e in load_probe_set("6.12").entries][:6]
    res = install_probes(_RejectingKernel(tfs, {defs[2].symbol}), defs)
    assert [d.event for d in res.installed] == [d.event for d in defs if d.symbol != defs[2].symbol]
    assert [(d.event, why) for d, why in res.rejected] == [
        (d.event, "Invalid probed address or symbol") for d in defs if d.symbol == defs[2].symbol]


def test_trace_cmd_command_line() -> None:
    argv = trace_cmd_command("/usr/bin/trace-cmd", Path("out.dat"), ["kprobes:a", "kvm:b"],
                             ["sh", "-c", "x"], 1024)
    assert argv == ["/usr/bin/trace-cmd", "record", "-o", "out.dat", "-b", "1024",
                    "-e", "kprobes:a", "-e", "kvm:b", "--", "sh", "-c", "x"]
    with pytest.raises(CaptureError, match="no command"):
        record(_env(None, None), Path("x"), [])


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


@pytest.mark.parametrize("kernel,series", [("6.1", "6.1"), ("6.1.0-56-arm64", "6.1"),
                                           ("6.12.117+deb12-arm64", "6.12"), ("5.13", "5.13")])
def test_cli_kprobes(kernel: str, series: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(["capture", "kprobes", "--kernel", kernel], capsys)
    assert code == 0 and err == ""
    assert out.splitlines() == load_probe_set(series).lines()


def test_cli_kprobes_with_comments(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(["capture", "kprobes", "--kernel", "6.1", "--comments"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("# ptreplay kprobe set for Linux 6.1")
    assert [ln for ln in lines if not ln.startswith("#")] == load_probe_set("6.1").lines()
    assert "# pgtable.c:909  int kvm_pgtable_stage2_map(struct kvm_pgtable *pgt x0, u64 addr x1, " \
           "u64 size x2, u64 phys x3," in lines


def test_cli_unknown_series(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(["capture", "kprobes", "--kernel", "4.19.0-20-arm64"], capsys)
    assert code == 2 and out == ""
    assert err == ("ptreplay: error: no kprobe set for Linux 4.19 (from '4.19.0-20-arm64'); "
                   "known series: 5.13, 5.15, 6.1, 6.6, 6.12\n")


@pytest.mark.skipif(platform.machine() in ("aarch64", "arm64"), reason="needs a non-arm64 host")
def test_cli_record_refuses_a_non_arm64_machine(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    tfs = _fake_tracefs(tmp_path)
    code, _, err = _cli(["capture", "record", "-o", str(tmp_path / "t.dat"), "--tracefs", str(tfs),
                         "--", "ls", "-l"], capsys)
    assert code == 2
    assert err == f"ptreplay: error: capture needs an arm64 KVM host; this machine is " \
                  f"{platform.machine()}\n"
    assert (tfs / "kprobe_events").read_text() == ""


def test_cli_record_bad_trace_cmd(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(["capture", "record", "-o", "t.dat", "--trace-cmd",
                         str(tmp_path / "nope"), "--", "ls"], capsys)
    assert code == 2 and "trace-cmd executable not found" in err

