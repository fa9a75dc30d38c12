#!/usr/bin/env python3
"""Memory flatness of ``ptreplay gen`` (and of ``ptreplay check`` on what it writes).

Generates two random-workload traces, one ``--factor`` times longer than the
other (default 100,000 and 1,000,000 stage-2 operations, same seed and
workload shape), each in its own process, and prints for each: events, file
size, time, operations per second and peak RSS; then the RSS ratio of the
long run to the short one (the yardstick is the short run, measured in the
same invocation). Issue 6's bar: a 10x longer trace needs < 1.5x the RSS.

When ``ptreplay check`` exists it is run on both files the same way and its
ratio is printed too (the benchmark the issue asks of ``check``).

usage: bench/bench_gen_memory.py [--ops N] [--factor K] [--keep] [--no-check]
Files go to bench/out/ (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"

_MEASURE = """
import resource, subprocess, sys, time
t = time.perf_counter()
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
dt = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(r.returncode, dt, rss, r.stderr.decode()[-300:].replace(chr(10), ' '))
"""


def measure(argv: list[str]) -> tuple[int, float, int, str]:
    """Run ``argv`` in a fresh process; its exit status, seconds and peak RSS (KiB)."""
    out = subprocess.run([sys.executable, "-c", _MEASURE, *argv], capture_output=True,
                         text=True, check=True).stdout.split(maxsplit=3)
    return int(out[0]), float(out[1]), int(out[2]), out[3] if len(out) > 3 else ""


def ptreplay(*args: str) -> list[str]:
    """The ptreplay command line of this checkout."""
    return [sys.executable, "-c", "from ptreplay.cli import main; main()", *args]


def has_check() -> bool:
    """Whether this checkout has ``ptreplay check``."""
    r = subprocess.run(ptreplay("check", "--help"), capture_output=True, text=True)
    return r.returncode == 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ops", type=int, default=100_000, help="operations of the short trace")
    ap.add_argument("--factor", type=int, default=10, help="how much longer the long one is")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the generated traces")
    ap.add_argument("--no-check", action="store_true", help="do not run ptreplay check")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    env_note = f"python {sys.version.split()[0]}, {os.cpu_count()} cpus"
    print(f"ptreplay gen memory benchmark ({env_note})")
    rows = []
    for n in (args.ops, args.ops * args.factor):
        path = OUT / f"gen-{n}.dat"
        code, secs, rss, err = measure(ptreplay("gen", "-q", "-o", str(path), "--random", str(n),
                                                "--seed", str(args.seed)))
        if code != 0:
            print(f"gen {n} failed: {err}")
            return 1
        info = subprocess.run(ptreplay("info", str(path), "--format", "json"),
                              capture_output=True, text=True, check=True).stdout
        events = json.loads(info)["events"]["total"]
        size = path.stat().st_size
        rows.append((n, path, secs, rss))
        print(f"gen {n:>9} ops: {events} events, {size / 1e6:.1f} MB, {secs:.1f} s "
              f"({n / secs:.0f} ops/s), peak RSS {rss / 1024:.1f} MiB")
    (n1, _, _, r1), (n2, _, _, r2) = rows
    ratio = r2 / r1
    verdict = "ok" if ratio < 1.5 else "NOT FLAT"
    print(f"gen: {n2 // n1}x the operations -> {ratio:.2f}x the peak RSS (bar < 1.5x): "
          f"{verdict}")
    status = 0 if ratio < 1.5 else 1
    if not args.no_check:
        if not has_check():
            print("check: ptreplay check does not exist in this checkout yet; skipped")
        else:
            rss = []
            for n, path, _, _ in rows:
                code, secs, peak, err = measure(ptreplay("check", "--quiet", str(path)))
                rss.append(peak)
                print(f"check {n:>9} ops: exit {code}, {secs:.1f} s, peak RSS "
                      f"{peak / 1024:.1f} MiB {err if code not in (0, 1) else ''}")
            cr = rss[1] / rss[0]
            print(f"check: {n2 // n1}x the operations -> {cr:.2f}x the peak RSS (bar < 1.5x): "
                  f"{'ok' if cr < 1.5 else 'NOT FLAT'}")
            status |= 0 if cr < 1.5 else 1
    if not args.keep:
        for _, path, _, _ in rows:
            path.unlink(missing_ok=True)
    return status


if __name__ == "__main__":
    t0 = time.perf_counter()
    rc = main()
    print(f"({time.perf_counter() - t0:.0f} s)")
    sys.exit(rc)
