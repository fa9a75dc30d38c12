"""``ptreplay info`` and ``ptreplay events`` on real traces."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import CORPUS, REPO, require_shared


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ptreplay", *args], capture_output=True,
                          text=True, cwd=REPO)


def test_readme_first_command_works_without_shared() -> None:
    r = _run("info", "traces/sched_syscalls_v7.dat")
    assert r.returncode == 0, r.stderr
    assert "trace.dat version 7" in r.stdout and "total_events 17949" in r.stdout


def test_info_json() -> None:
    require_shared()
    r = _run("info", str(CORPUS / "tracedat/rec_v7_two_buffers/trace.dat"), "--format", "json")
    d = json.loads(r.stdout)
    assert d["version"] == 7 and d["compression"].startswith("zstd")
    assert [b["name"] for b in d["buffers"]] == ["", "second"]
    assert d["events"]["per_buffer"] == {"(top)": 1157, "second": 16632}


def test_events_usec_and_filters() -> None:
    require_shared()
    path = CORPUS / "arm64/vhe-rich-v7/trace.dat"
    r = _run("events", str(path), "--usec", "--event", "kvm_init_stage2_mmu")
    lines = r.stdout.splitlines()
    assert lines[0] == "cpus=2"
    assert lines[1] == (" qemu-system-aar-268   [001]    26.074635: kvm_init_stage2_mmu:   "
                        "__probe_ip=ffffa7f9f4a5e450 kvm=0xffff800008045000 "
                        "mmu=0xffff8000080459c8")


def test_events_json_lost_marker() -> None:
    require_shared()
    r = _run("events", str(CORPUS / "tracedat/rec_v7_lost_events/trace.dat"), "-f", "json",
             "--cpu", "1")
    objs = [json.loads(line) for line in r.stdout.splitlines()]
    lost = [o for o in objs if "lost_events" in o]
    assert lost == [{"buffer": "", "cpu": 1, "ts": lost[0]["ts"], "lost_events": 103}]
    assert all(o["cpu"] == 1 for o in objs)
    assert len(objs) - 1 == 13584


def test_help_has_examples() -> None:
    for cmd in ("info", "events"):
        r = _run(cmd, "--help")
        assert r.returncode == 0 and "Examples" in r.stdout


def test_unknown_event_name_is_bad_input() -> None:
    r = _run("events", "traces/sched_syscalls_v7.dat", "--event", "no_such_event")
    assert r.returncode == 2
    assert r.stderr.startswith("ptreplay: error: ") and "no_such_event" in r.stderr
