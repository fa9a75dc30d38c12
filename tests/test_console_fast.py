"""The console script's fast lane for ``events``/``info`` behaves exactly like the typer app.

Every command line below is run through :func:`ptreplay.console.main` (which
takes the fast lane when it can) and through :func:`ptreplay.cli.main` (typer
only); stdout, stderr and the exit status must be byte-identical. The list
covers both lanes: lines the fast lane runs (checked with ``parse_fast``) and
lines it must leave to typer (help, usage errors, values that need click's
conversions).
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from conftest import CORPUS, REPO, require_shared

from ptreplay import cli, console

T = str(REPO / "traces" / "sched_syscalls_v7.dat")
TWO = str(CORPUS / "tracedat" / "rec_v7_two_buffers" / "trace.dat")
LOST = str(CORPUS / "tracedat" / "rec_v7_lost_events" / "trace.dat")

FAST = [
    ["events", T],
    ["events", T, "--format", "raw"],
    ["events", "--format=raw", T],
    ["events", T, "-f", "json", "-e", "sched_switch", "-c", "1"],
    ["events", T, "--event", "sched_switch", "--event", "sys_enter_openat", "--cpu", "0",
     "--cpu", "1"],
    ["events", "-esched_switch", T, "-c0", "-fraw"],
    ["events", T, "--usec"],
    ["events", T, "-u", "-u", "--buffer", ""],
    ["events", T, "--cpu", "007"],
    ["events", T, "--format", "json", "--format", "raw", "--event=sched_wakeup"],
    ["events", T, "--buffer", "nope"],
    ["events", T, "--event", "no_such_event"],
    ["events", str(REPO / "no" / "such.dat")],
    ["events", str(REPO / "README.md")],
    ["info", T],
    ["info", T, "--format", "json"],
    ["info", "-f", "json", T, "--no-count"],
    ["info", T, "--no-count", "--count"],
    ["info", str(REPO / "no" / "such.dat")],
]

SHARED = [
    ["events", TWO],
    ["events", TWO, "-B", "second", "-c", "2"],
    ["events", TWO, "--buffer=", "--usec"],
    ["events", LOST],
    ["events", LOST, "--cpu", "1", "--format", "json"],
    ["info", TWO, "--format", "json"],
]

TYPER = [
    [],
    ["--help"],
    ["events"],
    ["events", "--help"],
    ["events", T, "-h"],
    ["events", T, T],
    ["events", T, "--format", "xml"],
    ["events", T, "--cpu", "x"],
    ["events", T, "--cpu", "-1"],
    ["events", T, "--cpu", "+1"],
    ["events", T, "--bogus"],
    ["events", T, "--event"],
    ["events", T, "-ue", "sched_switch"],
    ["events", T, "--usec=1"],
    ["events", "--", T],
    ["events", "-"],
    ["info", T, "--format", "yaml"],
    ["info", T, "--count=1"],
    ["info"],
    ["nosuchcommand", T],
    ["model", "--help"],
]


def _run(main, argv: list[str], capsys) -> tuple[str, str, int]:
    code = 0
    try:
        main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return out, err, code


@pytest.mark.parametrize("argv", FAST, ids=lambda a: " ".join(a[:1] + a[2:]) or "-")
def test_fast_lane_matches_typer(argv: list[str], capsys) -> None:
    assert console.parse_fast(argv) is not None
    fast = _run(console.main, argv, capsys)
    slow = _run(cli.main, argv, capsys)
    assert fast == slow


@pytest.mark.parametrize("argv", SHARED, ids=lambda a: " ".join(a[:1] + a[2:]))
def test_fast_lane_matches_typer_on_corpus(argv: list[str], capsys) -> None:
    require_shared()
    assert console.parse_fast(argv) is not None
    fast = _run(console.main, argv, capsys)
    slow = _run(cli.main, argv, capsys)
    assert fast[0] and fast == slow


@pytest.mark.parametrize("argv", TYPER, ids=lambda a: " ".join(a) or "-")
def test_other_lines_go_to_typer(argv: list[str], capsys) -> None:
    assert console.parse_fast(argv) is None
    assert _run(console.main, argv, capsys) == _run(cli.main, argv, capsys)


def test_parsed_values_are_what_click_gives() -> None:
    assert console.parse_fast(["events", "t.dat", "-c", "007", "--cpu=3", "-e", "a",
                               "--event=b:c", "-B", "", "-u"]) == (
        "events", {"trace": "t.dat", "cpu": [7, 3], "event": ["a", "b:c"], "buffer": "",
                   "fmt": "raw", "usec": True})
    assert console.parse_fast(["info", "t.dat"]) == (
        "info", {"trace": "t.dat", "fmt": "text", "count": True})


def test_fast_lane_imports_no_typer_construct_or_dataclasses() -> None:
    # (modules the interpreter's site already loaded do not count: a sandbox's
    # .pth files may load typing or pathlib before ptreplay runs; ``typing`` is
    # not on the list because python-zstandard imports it itself, and the
    # shipped trace is zstd-compressed)
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "from ptreplay.console import main\n"
        f"main(['events', {T!r}])\n"
        f"main(['info', {T!r}])\n"
        "heavy = {'typer', 'click', 'construct', 'dataclasses', 'inspect', 'pathlib'}\n"
        "sys.stderr.write(repr(sorted(heavy & (set(sys.modules) - before))))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "[]"


def test_interrupt_ends_both_lanes_alike() -> None:
    """Ctrl-C in the middle of the output: exit status 130, nothing on stderr (typer's way)."""
    require_shared()
    big = str(CORPUS / "arm64" / "vhe-rich-v7" / "trace.dat")
    results = []
    for main in ("ptreplay.console", "ptreplay.cli"):
        p = subprocess.Popen([sys.executable, "-c", f"from {main} import main; main()",
                              "events", big], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             cwd=REPO)
        assert p.stdout is not None
        assert p.stdout.readline() == b"cpus=2\n"  # it is running
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        results.append((p.returncode, err))
    assert results[0] == results[1] == (130, b"")


def test_console_script_ends_quickly_with_all_output(capsys) -> None:
    """``run`` skips the interpreter's teardown after a fast-lane command: nothing is lost."""
    for argv in (["events", T, "-f", "json"], ["info", T]):
        r = subprocess.run([sys.executable, "-m", "ptreplay", *argv], capture_output=True,
                           cwd=REPO)
        assert (r.stdout.decode(), r.stderr.decode(), r.returncode) == _run(console.main, argv,
                                                                            capsys)
