#!/usr/bin/env python3
"""Time ``ptreplay events --format raw`` against ``trace-cmd report -R -t`` on the same files.

Run from the repository root (needs ../shared and trace-cmd)::

    python bench/bench_events.py                 # a real install of this checkout
    python bench/bench_events.py --repeat 9      # more runs
    python bench/bench_events.py --ptreplay .venv/bin/ptreplay   # time that script instead
    python bench/bench_events.py --verify        # also diff the arm64 recordings

What is timed, and how:

* ptreplay is what a user gets from ``pip install``: by default the script
  builds a wheel of this checkout and installs it, with its dependencies,
  into a fresh virtual environment without system site-packages
  (``--venv``, default ``$TMPDIR/ptreplay-bench-venv``; pip compiles the
  bytecode, and the script compiles anything left), then runs that venv's
  ``ptreplay`` console script. ``--system-site`` makes the venv see the
  system site-packages instead (and their ``.pth`` files: see the caveats
  printed); ``--ptreplay EXE`` times an existing console script.
* Each file: the two commands run alternately ``--repeat`` times (who goes
  first alternates too), output to /dev/null; min and median wall time of
  each, the ratios ptreplay / trace-cmd, peak RSS of each (``wait4``), and
  ``ptreplay info`` (no field decoding) against ``ptreplay events``.
* Memory: peak RSS of ``ptreplay events`` on traces from 18 thousand to
  900 thousand events (it must not grow with the length).
* The replay layer's fast path (``Trace.scan``) over an arm64 recording, in
  this process.

The machine may be shared: the printed load average says how busy it was;
compare minimums, rerun when the medians spread.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus"
TARGETS = ["tracedat/rec_v6_sched_syscalls/trace.dat", "tracedat/ext_langraph_v7_zstd/trace.dat"]
MEMORY = ["tracedat/rec_v6_sched_syscalls/trace.dat", "tracedat/ext_langraph_v7_zstd/trace.dat",
          "arm64/vhe-rich-v7/trace.dat"]
ARM64 = "arm64/vhe-rich-v7/trace.dat"


# ---------------------------------------------------------------------------
# a real install


def _install(venv: Path, system_site: bool) -> Path:
    """Build a wheel of this checkout and install it into ``venv``; its console script."""
    work = Path(tempfile.mkdtemp(prefix="ptreplay-bench-"))
    try:
        src = work / "src"
        shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
            ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"))
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
        subprocess.run(pip + ["wheel", "-q", "--no-deps", "-w", str(work / "wheel"), str(src)],
                       check=True)
        wheel = next((work / "wheel").glob("ptreplay-*.whl"))
        marker = venv / ".ptreplay-bench-system-site"
        if venv.exists() and marker.exists() != system_site:
            shutil.rmtree(venv)
        if not venv.exists():
            args = [sys.executable, "-m", "venv", "--without-pip", str(venv)]
            if system_site:
                args.insert(4, "--system-site-packages")
            subprocess.run(args, check=True)
            if system_site:
                marker.write_text("")
        py = venv / "bin" / "python"
        subprocess.run(pip + ["--python", str(py), "install", "-q", "--force-reinstall",
                              "--no-deps", str(wheel)], check=True)
        if not system_site:  # the dependencies, from the configured package index
            subprocess.run(pip + ["--python", str(py), "install", "-q", str(wheel)], check=True)
        # bytecode as a real install has it (pip compiles; this covers the rest)
        subprocess.run([str(py), "-m", "compileall", "-q", str(venv / "lib")], check=False,
                       stdout=subprocess.DEVNULL)
        return venv / "bin" / "ptreplay"
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------
# timing


def _run(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one run, output to /dev/null."""
    with open(os.devnull, "wb") as null:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=null, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        secs = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    return secs, usage.ru_maxrss


def _alternate(cmds: list[list[str]], repeat: int) -> list[tuple[list[float], int]]:
    """Run the commands alternately (first one alternating too): times and max RSS of each."""
    times: list[list[float]] = [[] for _ in cmds]
    rss = [0] * len(cmds)
    for r in range(repeat):
        order = range(len(cmds)) if r % 2 == 0 else reversed(range(len(cmds)))
        for k in order:
            secs, kb = _run(cmds[k])
            times[k].append(secs)
            rss[k] = max(rss[k], kb)
    return list(zip(times, rss, strict=True))


def _ms(xs: list[float]) -> str:
    return f"{min(xs) * 1e3:7.1f} {statistics.median(xs) * 1e3:7.1f}"


def _lines(path: Path) -> int:
    with subprocess.Popen(["trace-cmd", "report", "-R", "-t", str(path)], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL) as p:
        assert p.stdout is not None
        return sum(1 for _ in p.stdout) - 1


def _environment(pt: list[str], venv_python: Path | None, how: str) -> None:
    import platform

    tc = subprocess.run(["trace-cmd", "--version"], capture_output=True, text=True)
    tc_version = next((w for w in (tc.stdout + tc.stderr).split() if w[:1].isdigit()), "?")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (shared machines are noisy)")
    print(f"trace-cmd {tc_version}; ptreplay: {' '.join(pt)}")
    print(f"  ({how})")
    if venv_python is not None:
        probe = ("import sys, importlib.metadata as m; print(sys.version.split()[0], "
                 "m.version('typer'), m.version('construct'), m.version('zstandard'))")
        out = subprocess.run([str(venv_python), "-c", probe], capture_output=True, text=True)
        py, typer, construct, zstd = (out.stdout.split() + ["?"] * 4)[:4]
        print(f"  Python {py}, typer {typer}, construct {construct}, zstandard {zstd}")
        starts = {"that venv": str(venv_python), "this interpreter": sys.executable}
        for name, exe in starts.items():
            best = min(_run([exe, "-c", "pass"])[0] for _ in range(7))
            print(f"  interpreter start-up (python -c pass), {name}: {best * 1e3:.1f} ms")
    pth = sorted(p.name for d in sys.path if os.path.isdir(d) and d.endswith("site-packages")
                 for p in Path(d).glob("*.pth"))
    print(f"caveats: this interpreter's site-packages run {', '.join(pth) or 'no'} .pth files at "
          "every start;")
    print("  a sandbox's certificate hook there costs 15-30 ms per Python start, which a venv "
          "without system site-packages (the default here) does not pay.")
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        print("  PYTHONDONTWRITEBYTECODE is set: harmless here, the installed bytecode was "
              "compiled at install time (an editable install would recompile every run).")
    print()


# ---------------------------------------------------------------------------
# in-process measurements


def _fast_path(path: Path) -> tuple[float, int]:
    sys.path.insert(0, str(REPO))
    from ptreplay.trace import open_trace

    t0 = time.perf_counter()
    n = 0
    with open_trace(path) as t:
        names = {t.formats.name_of(i)[1] for i in t.formats.ids()}
        fields = {}
        for name in names:
            fmt = t.formats.by_name(name)[0]
            fields[name] = tuple(f.name for f in fmt.fields if f.is_number)[:4]
        for _ in t.scan(fields):
            n += 1
    return time.perf_counter() - t0, n


def _verify(rel: str) -> None:
    sys.path.insert(0, str(REPO))
    from ptreplay.formats.rawreport import raw_report_lines
    from ptreplay.trace import open_trace

    folder = (CORPUS / rel).parent
    t0 = time.perf_counter()
    bad = n = 0
    with gzip.open(folder / "trace.report-raw.txt.gz", "rt") as f, open_trace(CORPUS / rel) as t:
        for mine, theirs in itertools.zip_longest(raw_report_lines(t, nsec=False), f):
            n += 1
            if theirs is None or mine != theirs.rstrip("\n"):
                bad += 1
    print(f"verify {rel}: {n} lines, {bad} different ({time.perf_counter() - t0:.1f} s)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7, help="runs of each command (default 7)")
    ap.add_argument("--ptreplay", help="time this console script instead of a fresh install")
    ap.add_argument("--venv", type=Path,
                    default=Path(tempfile.gettempdir()) / "ptreplay-bench-venv",
                    help="where to install this checkout (reused, reinstalled each run)")
    ap.add_argument("--system-site", action="store_true",
                    help="let that venv see the system site-packages (and their .pth files)")
    ap.add_argument("--no-memory", action="store_true", help="skip the 900k-event RSS runs")
    ap.add_argument("--verify", action="store_true",
                    help="diff every arm64 recording against its trace-cmd report -R")
    args = ap.parse_args()
    if shutil.which("trace-cmd") is None:
        print("trace-cmd is not installed", file=sys.stderr)
        return 2
    if args.ptreplay:
        pt = [args.ptreplay]
        venv_python = Path(args.ptreplay).parent / "python"
        how = "the given console script"
    else:
        venv = args.venv.with_name(args.venv.name + "-system") if args.system_site else args.venv
        exe = _install(venv, args.system_site)
        pt = [str(exe)]
        venv_python = venv / "bin" / "python"
        how = ("wheel of this checkout, installed with its dependencies into a fresh venv "
               + ("that sees the system site-packages" if args.system_site
                  else "without system site-packages") + "; bytecode compiled at install")
    _environment(pt, venv_python if venv_python.exists() else None, how)

    print(f"wall ms over {args.repeat} alternating runs   trace-cmd report -R -t   "
          f"ptreplay events --format raw     ratio pt/tc    ptreplay info")
    print(f"{'file':42} {'events':>7} {'min':>7} {'median':>7}   {'min':>7} {'median':>7}   "
          f"{'min':>5} {'median':>6}   {'min':>7} {'/events':>7}")
    for rel in TARGETS:
        path = CORPUS / rel
        n = _lines(path)
        (tc, tc_rss), (mine, pt_rss), (info, _) = _alternate(
            [["trace-cmd", "report", "-R", "-t", str(path)],
             pt + ["events", "--format", "raw", str(path)],
             pt + ["info", str(path)]], args.repeat)
        print(f"{rel:42} {n:7d} {_ms(tc)}   {_ms(mine)}   "
              f"{min(mine) / min(tc):5.2f} {statistics.median(mine) / statistics.median(tc):6.2f}"
              f"   {min(info) * 1e3:7.1f} {min(info) / min(mine):7.2f}")
        print(f"{'':42} {'':7} peak RSS: trace-cmd {tc_rss / 1024:.1f} MB, "
              f"ptreplay {pt_rss / 1024:.1f} MB")
    if not args.no_memory:
        print()
        print("memory (peak RSS of ptreplay events, one run each; must not grow with the length)")
        for rel in MEMORY:
            path = CORPUS / rel
            secs, kb = _run(pt + ["events", "--format", "raw", str(path)])
            tsecs, tkb = _run(["trace-cmd", "report", "-R", "-t", str(path)])
            print(f"  {rel:42} {_lines(path):7d} events: {kb / 1024:6.1f} MB in {secs:5.2f} s "
                  f"(trace-cmd {tkb / 1024:.1f} MB in {tsecs:.2f} s)")
    print()
    secs, n = _fast_path(CORPUS / ARM64)
    print(f"fast path (Trace.scan, 4 fields per event) over {ARM64}: {n} events in "
          f"{secs:.2f} s ({secs / n * 1e6:.2f} us/event)")
    if args.verify:
        for rel in ["arm64/vhe-rich-v7/trace.dat", "arm64/a72-rich-v7/trace.dat",
                    "arm64-6.12/vhe-rich2-v7/trace.dat", "arm64-6.12/nvhe16k-rich-v7/trace.dat"]:
            _verify(rel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
