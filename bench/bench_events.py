#!/usr/bin/env python3
"""Time ``ptreplay events --format raw`` against ``trace-cmd report -R -t`` on the same files.

Run from the repository root (needs ../shared and trace-cmd)::

    python bench/bench_events.py                # the two target files + info + fast path
    python bench/bench_events.py --verify       # also diff the full arm64 recordings

For each file: wall time of both commands (best of --repeat runs, output to
/dev/null), the ratio ptreplay / trace-cmd, peak RSS of ptreplay, the time of
``ptreplay info`` (no field decoding) and, for the arm64 recording, the time
to iterate every event through ``Trace.scan`` (the replay layer's fast path).
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus"
TARGETS = ["tracedat/ext_langraph_v7_zstd/trace.dat", "tracedat/rec_v6_sched_syscalls/trace.dat"]
ARM64 = "arm64/vhe-rich-v7/trace.dat"


def _ptreplay() -> list[str]:
    exe = shutil.which("ptreplay", path=str(Path(sys.executable).parent)) or shutil.which(
        "ptreplay")
    return [exe] if exe else [sys.executable, "-m", "ptreplay"]


def _time(cmd: list[str], repeat: int) -> tuple[float, int]:
    best = float("inf")
    rss = 0
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        with open(os.devnull, "w") as null:
            subprocess.run(cmd, stdout=null, check=True)
        best = min(best, time.perf_counter() - t0)
        rss = max(rss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before)
    return best, rss


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
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--verify", action="store_true",
                    help="diff every arm64 recording against its trace-cmd report -R")
    args = ap.parse_args()
    if shutil.which("trace-cmd") is None:
        print("trace-cmd is not installed", file=sys.stderr)
        return 2
    pt = _ptreplay()
    print(f"{'file':48} {'trace-cmd':>10} {'ptreplay':>10} {'ratio':>6} {'rss MB':>7} "
          f"{'info':>7}")
    for rel in TARGETS + [ARM64]:
        path = CORPUS / rel
        tc, _ = _time(["trace-cmd", "report", "-R", "-t", str(path)], args.repeat)
        mine, rss = _time(pt + ["events", "--format", "raw", str(path)], args.repeat)
        info, _ = _time(pt + ["info", str(path)], 1)
        print(f"{rel:48} {tc:9.3f}s {mine:9.3f}s {mine / tc:6.2f} {rss / 1024:7.1f} "
              f"{info:6.2f}s")
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
