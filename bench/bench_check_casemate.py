"""Benchmark: ``ptreplay check`` on a 2,000,000-record casemate log, against casemate-check.

Generates (bench/gen_casemate_log.py) a casemate log of a realistic, correct
stage-2 workload -- tables built and loaded, then map/unmap cycles with
break-before-make, 2 MiB blocks, level-3 tables allocated and freed -- and
times ``ptreplay check LOG`` on it in a child process: wall time, events per
second, peak RSS. It checks that the verdict is clean, and runs a log half as
long to show that memory does not grow with the log.

With ``--casemate PATH`` it also runs that casemate-check binary (built by you,
outside this repository, from rems-project/casemate) on the same log, with
``-q`` (no echo of every record), and prints the ratios. The yardstick from
the issue: casemate-check checks such a log at about 220,000 events/s with
about 700 MB RSS.

Usage::

    python bench/bench_check_casemate.py [--events 2000000] [--casemate PATH] [--keep]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from gen_casemate_log import generate  # noqa: E402


class Measure:
    """Wall time, CPU time (user + system) and peak RSS of one child process."""

    def __init__(self, cmd: list[str]):
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=out, stderr=err)
            _pid, status, usage = os.wait4(proc.pid, 0)
            self.wall = time.perf_counter() - start
            self.cpu = usage.ru_utime + usage.ru_stime
            self.rss_mb = usage.ru_maxrss / 1024
            self.code = os.waitstatus_to_exitcode(status)
            err.seek(0)
            self.stderr = err.read().decode(errors="replace")

    def line(self, name: str, events: int) -> str:
        return (f"{name:20}: wall {self.wall:6.2f} s ({events / self.wall:9,.0f} events/s), "
                f"cpu {self.cpu:6.2f} s ({events / self.cpu:9,.0f} events/s), "
                f"peak RSS {self.rss_mb:7.1f} MB, exit {self.code}")


def ptreplay_cmd(log: Path) -> list[str]:
    return [sys.executable, "-m", "ptreplay", "check", str(log), "--quiet", "--format", "json",
            "-o", os.devnull]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--casemate", metavar="PATH", help="a casemate-check binary")
    parser.add_argument("--keep", action="store_true", help="keep the generated logs")
    parser.add_argument("--dir", default=str(HERE / "out"), help="where to put the logs")
    args = parser.parse_args(argv)

    workdir = Path(args.dir)
    workdir.mkdir(parents=True, exist_ok=True)
    logs = {}
    for n in (args.events, args.events // 2):
        path = workdir / f"casemate-{n}.log"
        start = time.perf_counter()
        with open(path, "w", buffering=1 << 20) as f:
            generate(f, n)
        print(f"generated {path} ({n} records, {path.stat().st_size / 1e6:.0f} MB) in "
              f"{time.perf_counter() - start:.1f} s")
        logs[n] = path

    try:
        big, half = logs[args.events], logs[args.events // 2]
        print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs "
              f"(other work slows the wall-clock figures; CPU time does not depend on it)")
        full = Measure(ptreplay_cmd(big))
        print(full.line("ptreplay check", args.events))
        if full.code != 0:
            print(f"ptreplay check should be clean on this workload:\n{full.stderr}",
                  file=sys.stderr)
            return 1
        part = Measure(ptreplay_cmd(half))
        print(part.line("ptreplay check, 1/2", args.events // 2))
        print(f"memory: peak RSS of the full log / the half log = {full.rss_mb / part.rss_mb:.2f}")
        yardstick = 220_000
        print(f"vs the issue's yardstick (casemate-check ~{yardstick:,} events/s, ~700 MB): "
              f"{args.events / full.wall / yardstick:.2f}x (wall), "
              f"{args.events / full.cpu / yardstick:.2f}x (cpu) the speed, "
              f"{full.rss_mb / 700:.2f}x the memory")
        if args.casemate:
            ref = Measure([args.casemate, "-q", str(big)])
            verdict = (ref.stderr.strip().splitlines() or ["?"])[-1]
            print(ref.line("casemate-check -q", args.events) + f" ({verdict})")
            print(f"ratio ptreplay / casemate-check: {ref.wall / full.wall:.2f}x (wall), "
                  f"{ref.cpu / full.cpu:.2f}x (cpu) the speed, "
                  f"{full.rss_mb / ref.rss_mb:.2f}x the memory")
    finally:
        if not args.keep:
            for path in logs.values():
                path.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
