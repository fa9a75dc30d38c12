"""Raw tracefs copies give the kernel's own event sequence."""

from __future__ import annotations

import collections
import gzip
import re

import pytest
from conftest import CORPUS, require_shared

from ptreplay.trace import LostEvents, open_trace

_LINE = re.compile(r"^.*?\[(\d+)\]\s+\S+\s+(\d+\.\d+): (\w+)")


def _kernel_name(name: str) -> str:
    m = re.fullmatch(r"sys_(enter|exit)_(\w+)", name)
    return "sys_" + m.group(2) if m else name


def _usec(ts: int) -> str:
    return "%d.%06d" % divmod((ts + 500) // 1000, 1000000)  # noqa: UP031 (C printf)


def _kernel_lines(path) -> dict[int, list]:
    out: dict[int, list] = collections.defaultdict(list)
    with gzip.open(path, "rt", errors="replace") as f:
        for line in f:
            m = _LINE.match(line)
            if m and not line.startswith("#"):
                out[int(m.group(1))].append((m.group(2), m.group(3)))
    return out


@pytest.mark.parametrize("name", ["rawdump_4k", "rawdump_4k_overrun"])
def test_rawdump_matches_kernel_rendering(name: str) -> None:
    require_shared()
    root = CORPUS / "tracedat" / name
    with open_trace(root) as t:
        assert t.info.kind == "tracefs" and t.info.page_size == 4096
        for cpu in range(t.info.cpus):
            mine = [(_usec(e.ts), _kernel_name(e.name))
                    for e in t.events(cpus=[cpu], lost=False)]
            theirs = _kernel_lines(root / f"kernel_trace_cpu{cpu}.txt.gz")[cpu]
            assert mine == theirs


def test_overrun_is_reported() -> None:
    require_shared()
    with open_trace(CORPUS / "tracedat/rawdump_4k_overrun") as t:
        overrun = {s.cpu: s.overrun for s in t.info.cpu_stats}
        lost = [e for e in t.events() if isinstance(e, LostEvents)]
    assert overrun == {0: 8925, 1: 8884}
    assert sorted((m.cpu, m.count or -1) for m in lost) == [(0, 8925), (1, -1)]


def test_16k_raw_copy_matches_kernel_trace() -> None:
    require_shared()
    root = CORPUS / "arm64-6.12/vhe16k-short-raw"
    theirs = _kernel_lines(root / "raw/trace.txt.gz")
    with open_trace(root) as t:
        assert t.info.page_size == 16384
        mine: dict[int, list] = collections.defaultdict(list)
        for ts, cpu, name, _ in t.scan({n: () for n in ("kprobes", "kvm")}):
            mine[cpu].append((_usec(ts), name))
    assert mine == theirs


def test_gzipped_raw_copy_counts() -> None:
    require_shared()
    root = CORPUS / "arm64/a72-rich-raw"
    want = {}
    for line in (root / "raw.event-counts.txt").read_text().splitlines():
        n, name = line.split()
        want[name] = int(n)
    with open_trace(root) as t:
        res = t.count_events()
        got: dict[str, int] = collections.Counter()
        for (_b, _c, eid), n in res.counts.items():
            got[t.formats.name_of(eid)[1]] += n
    total = want.pop("TOTAL")
    assert dict(got) == want
    assert sum(got.values()) == total
