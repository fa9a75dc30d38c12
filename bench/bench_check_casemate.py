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


def run_measured(cmd: list[str]) -> tuple[float, int, int, bytes, bytes]:
    """Run ``cmd``; return (seconds, peak RSS in KiB, exit code, stdout, stderr)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        _pid, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        code = os.waitstatus_to_exitcode(status)
        return elapsed, usage.ru_maxrss, code, out.read(), err.read()


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
        secs, rss, code, _out, err = run_measured(ptreplay_cmd(big))
        if code != 0:
            print(f"ptreplay check: exit {code} (expected 0: the workload is correct)\n"
                  f"{err.decode()}", file=sys.stderr)
            return 1
        rate = args.events / secs
        print(f"ptreplay check      : {secs:6.2f} s  {rate:10,.0f} events/s  "
              f"peak RSS {rss / 1024:7.1f} MB   (clean)")
        hsecs, hrss, hcode, _o, _e = run_measured(ptreplay_cmd(half))
        print(f"ptreplay check, 1/2 : {hsecs:6.2f} s  {args.events // 2 / hsecs:10,.0f} "
              f"events/s  peak RSS {hrss / 1024:7.1f} MB   (exit {hcode})")
        print(f"memory: full log / half log RSS = {rss / hrss:.2f}")
        yardstick = 220_000
        print(f"vs the issue's yardstick (casemate-check ~{yardstick:,} events/s, ~700 MB): "
              f"{rate / yardstick:.2f}x the speed, {rss / 1024 / 700:.2f}x the memory")
        if args.casemate:
            csecs, crss, ccode, _o, cerr = run_measured([args.casemate, "-q", str(big)])
            verdict = cerr.decode().strip().splitlines()[-1:] or ["?"]
            crate = args.events / csecs
            print(f"casemate-check -q   : {csecs:6.2f} s  {crate:10,.0f} events/s  "
                  f"peak RSS {crss / 1024:7.1f} MB   (exit {ccode}: {verdict[0]})")
            print(f"ratio ptreplay / casemate-check: {rate / crate:.2f}x the speed, "
                  f"{rss / crss:.2f}x the memory")
    finally:
        if not args.keep:
            for path in logs.values():
                path.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
