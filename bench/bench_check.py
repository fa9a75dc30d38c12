#!/usr/bin/env python3
"""``ptreplay check`` on a real recording, side by side with ``trace-cmd report -R``.

Times both on the same trace in the same run (each repeated, interleaved, the
best and the median of each kept) and prints the ratio; the issue's bar is
``ptreplay check`` at most 2x ``trace-cmd report -R`` on vhe-rich-v7 (906,200
events). Then the peak memory (max RSS of the check's processes) on a trace
and on one 10x longer: the bar is < 1.5x. The long trace is made with
``ptreplay gen --random`` when that command exists, else given with --long
(any trace of the same kind of workload), else the memory part is skipped.

usage: bench/bench_check.py [TRACE] [--repeat N] [--jobs 1|2] [--long LONG_TRACE]
       [--gen-events N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT = REPO.parent / "shared" / "corpus" / "arm64" / "vhe-rich-v7" / "trace.dat"


def run(cmd: list[str]) -> tuple[float, int, int]:
    """Wall time, exit status and peak RSS (KiB, the process and its waited children)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.stderr is not None:
        err = proc.stderr.read().decode(errors="replace").strip()
        proc.stderr.close()
        if proc.returncode not in (0, 1) and err:
            print(f"    {' '.join(cmd[:4])}...: {err.splitlines()[-1]}", file=sys.stderr)
    return elapsed, proc.returncode, usage.ru_maxrss


def _status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("RssAnon", "VmRSS"):
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def _tree(pid: int) -> list[int]:
    out = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            for child in f.read().split():
                out += _tree(int(child))
    except OSError:
        pass
    return out


def peak_memory(cmd: list[str]) -> tuple[float, int, int, int]:
    """Wall time, exit status, and the peak over time of the summed RSS and anonymous RSS
    (KiB) of the command's processes, sampled every 20 ms. Anonymous memory leaves out
    the pages of the trace file the reader maps."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rss = anon = 0
    while proc.poll() is None:
        st = [_status(p) for p in _tree(proc.pid)]
        rss = max(rss, sum(s.get("VmRSS", 0) for s in st))
        anon = max(anon, sum(s.get("RssAnon", 0) for s in st))
        time.sleep(0.02)
    return time.perf_counter() - start, proc.returncode, rss, anon


def check_cmd(trace: Path, jobs: int) -> list[str]:
    return [sys.executable, "-m", "ptreplay", "check", str(trace), "--quiet",
            "--jobs", str(jobs)]


def timing(trace: Path, repeat: int, jobs: int) -> int:
    trace_cmd = shutil.which("trace-cmd")
    if trace_cmd is None:
        print("trace-cmd not found: no yardstick")
        return 2
    yard: list[float] = []
    ours: list[float] = []
    status = None
    rss = 0
    for _ in range(repeat):
        t, rc, _ = run([trace_cmd, "report", "-R", "-i", str(trace)])
        if rc != 0:
            print(f"trace-cmd report failed ({rc})")
            return 2
        yard.append(t)
        t, status, kib = run(check_cmd(trace, jobs))
        ours.append(t)
        rss = max(rss, kib)
    print(f"{trace}")
    print(f"  trace-cmd report -R : best {min(yard):.2f} s, median {statistics.median(yard):.2f} s")
    print(f"  ptreplay check -j{jobs} : best {min(ours):.2f} s, median "
          f"{statistics.median(ours):.2f} s (exit {status}, peak RSS {rss / 1024:.0f} MiB)")
    print(f"  ratio (best / best) : {min(ours) / min(yard):.2f}  (bar: 2.0)")
    print(f"  ratio (median)      : {statistics.median(ours) / statistics.median(yard):.2f}")
    return 0 if status == 0 else 1


def generate(events: int, out: Path) -> bool:
    """``ptreplay gen --random`` of about ``events`` events, if the command exists."""
    cmd = [sys.executable, "-m", "ptreplay", "gen", "--random", str(events), "--seed", "1", "-q",
           "-o", str(out)]
    probe = subprocess.run([sys.executable, "-m", "ptreplay", "gen", "--help"],
                           capture_output=True)
    if probe.returncode != 0:
        return False
    return subprocess.run(cmd, capture_output=True).returncode == 0


def memory(short: Path | None, long: Path | None, gen_events: int, jobs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if long is None:
            short = Path(tmp) / "short.dat"
            long = Path(tmp) / "long.dat"
            if not (generate(gen_events, short) and generate(10 * gen_events, long)):
                print("memory: no `ptreplay gen` and no --long trace: skipped")
                return
        assert short is not None
        t1, rc1, rss1, anon1 = peak_memory(check_cmd(short, jobs))
        t2, rc2, rss2, anon2 = peak_memory(check_cmd(long, jobs))
        print("memory (sum of the check's processes, peak over time):")
        print(f"  {short}: RSS {rss1 / 1024:.0f} MiB, anonymous {anon1 / 1024:.0f} MiB "
              f"({t1:.1f} s, exit {rc1})")
        print(f"  {long}: RSS {rss2 / 1024:.0f} MiB, anonymous {anon2 / 1024:.0f} MiB "
              f"({t2:.1f} s, exit {rc2})")
        print(f"  ratio RSS {rss2 / rss1:.2f}, anonymous {anon2 / anon1:.2f} (bar: 1.5)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trace", nargs="?", type=Path, default=DEFAULT)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--long", type=Path, help="a trace about 10x longer than TRACE")
    ap.add_argument("--gen-events", type=int, default=20_000,
                    help="operations of the shorter generated trace")
    ap.add_argument("--no-memory", action="store_true")
    args = ap.parse_args()
    # Time the tool as installed: pip compiles its bytecode at install, while a checkout run
    # under PYTHONDONTWRITEBYTECODE would recompile every module on every run (~0.1 s).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "ptreplay")],
                   stdout=subprocess.DEVNULL, check=False)
    status = timing(args.trace, args.repeat, args.jobs)
    if not args.no_memory:
        memory(args.trace if args.long else None, args.long, args.gen_events, args.jobs)
    return status


if __name__ == "__main__":
    sys.exit(main())
