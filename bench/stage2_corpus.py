#!/usr/bin/env python3
"""Events -> stage-2 operations on the whole arm64 recordings: facts and speed.

For each recording of ../shared/corpus/arm64 and arm64-6.12 this reads the
text report trace-cmd made of it (``trace.report-raw.txt.gz``), turns it into
operations with ptreplay.stage2.operations, and checks what the recording's own
files say: one operation per entry probe (trace.event-counts.txt), every call
paired, map contexts (map-context.txt), 6.12's overlapping calls
(concurrency.txt), and the platform features against the boot log. It times
the operations layer (events already parsed) against ``trace-cmd report -R``
of the same trace.dat in the same run and prints the ratio.

usage: bench/stage2_corpus.py [RECORDING ...]   (default: all four with a report)
"""

from __future__ import annotations

import gc
import gzip
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from report_raw import read_report_raw  # noqa: E402

from ptreplay.stage2.operations import OP_KINDS, Operation, operations  # noqa: E402
from ptreplay.stage2.platform import PlatformEvidence, features_from_dmesg  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpus"
RECORDINGS = {
    "vhe-rich-v7": ("arm64", "6.1", 4096),
    "a72-rich-v7": ("arm64", "6.1", 4096),
    "vhe-rich2-v7": ("arm64-6.12", "6.12", 4096),
    "nvhe16k-rich-v7": ("arm64-6.12", "6.12", 16384),
}


def _counts(path: Path) -> Counter[str]:
    out: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] != "TOTAL":
            out[parts[1]] = int(parts[0])
    return out


def _map_context(path: Path) -> Counter[tuple[str, ...]]:
    out: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text().splitlines():
        count, *key = line.split()
        out[tuple(key)] = int(count)
    return out


def _overlapping(path: Path) -> dict[str, int]:
    out = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(("kvm_", "__kvm")):
            out[parts[0]] = int(parts[2])
    return out


def check(name: str) -> tuple[float, int, list[str]]:
    base, series, page_size = RECORDINGS[name]
    folder = CORPUS / base / name
    problems: list[str] = []
    events = list(read_report_raw(folder / "trace.report-raw.txt.gz"))
    gc.collect()
    gc.freeze()
    # Timed as a consumer uses it: operations stream through and are dropped.
    start = time.perf_counter()
    records = 0
    for _ in operations(events, page_size):
        records += 1
    elapsed = time.perf_counter() - start
    gc.unfreeze()
    ops = [o for o in operations(events, page_size) if isinstance(o, Operation)]

    counts = _counts(folder / "trace.event-counts.txt")
    want = Counter({OP_KINDS[f]: n for f, n in counts.items() if f in OP_KINDS})
    got = Counter(o.kind for o in ops if o.kind != "free_unlinked")
    if got != want:
        problems.append(f"operations per kind {dict(got)} != entry probes {dict(want)}")
    frees = sum(1 for o in ops if o.kind == "free_unlinked")
    if frees != counts.get("stage2_free_unlinked_table_rcu_cb", 0):
        problems.append(f"{frees} RCU table frees != rcu_cb probes")
    uncertain = [o for o in ops if o.uncertain]
    if uncertain:
        problems.append(f"{len(uncertain)} uncertain operations, first {uncertain[0]}")

    ours: Counter[tuple[str, ...]] = Counter()
    for o in ops:
        if o.kind == "map":
            a = o.args
            ours[(str(o.context), f"ret={o.ret}", hex(a["prot"]),
                  "mc=0" if a["mc"] == 0 else "mc", hex(a["size"]))] += 1
    if ours != _map_context(folder / "map-context.txt"):
        problems.append("map contexts differ from map-context.txt")

    overlap_file = folder / "concurrency.txt"
    if overlap_file.exists():
        started_during: Counter[str] = Counter()
        by_root: dict[int | None, list[Operation]] = {}
        for o in sorted(ops, key=lambda o: o.first_index):
            if o.kind == "free_unlinked":
                continue
            running = by_root.setdefault(o.root, [])
            running[:] = [p for p in running if (p.index_return or 0) > o.first_index]
            if any(p.pid != o.pid for p in running):
                started_during[o.func] += 1
            running.append(o)
        want_overlap = {k: v for k, v in _overlapping(overlap_file).items() if v}
        if dict(started_during) != want_overlap:
            problems.append(f"overlapping calls {dict(started_during)} != {want_overlap}")

    evidence = PlatformEvidence()
    for o in ops:
        evidence.observe(o)
    features = evidence.infer(series)
    with gzip.open(folder / "l1-info" / "dmesg-boot.txt.gz", "rt") as f:
        truth = features_from_dmesg(f.read())
    for feat, value in features.values().items():
        if value is not None and feat in truth and truth[feat] != value:
            problems.append(f"{feat}={value} but the boot log says {truth[feat]}")
    print(f"{name}: {len(events)} events -> {len(ops)} operations in {elapsed:.2f} s "
          f"({len(events) / elapsed / 1e6:.2f} M events/s)")
    for line in features.describe():
        print(f"    {line}")
    return elapsed, len(events), problems


def yardstick(name: str) -> float | None:
    trace_cmd = shutil.which("trace-cmd")
    if trace_cmd is None:
        return None
    base = RECORDINGS[name][0]
    start = time.perf_counter()
    subprocess.run([trace_cmd, "report", "-R", "-i", str(CORPUS / base / name / "trace.dat")],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    names = sys.argv[1:] or list(RECORDINGS)
    failed = False
    for name in names:
        elapsed, _n, problems = check(name)
        ref = yardstick(name)
        if ref:
            print(f"    trace-cmd report -R: {ref:.2f} s; operations layer / trace-cmd = "
                  f"{elapsed / ref:.2f}")
        for p in problems:
            print(f"    FAIL: {p}")
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
