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
        t1, rc1, rss1 = run(check_cmd(short, jobs))
        t2, rc2, rss2 = run(check_cmd(long, jobs))
        print(f"memory: {short.name}: peak RSS {rss1 / 1024:.0f} MiB ({t1:.1f} s, exit {rc1}); "
              f"{long.name}: {rss2 / 1024:.0f} MiB ({t2:.1f} s, exit {rc2}); "
              f"ratio {rss2 / rss1:.2f} (bar: 1.5)")


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
    status = timing(args.trace, args.repeat, args.jobs)
    if not args.no_memory:
        memory(args.trace if args.long else None, args.long, args.gen_events, args.jobs)
    return status


if __name__ == "__main__":
    sys.exit(main())
