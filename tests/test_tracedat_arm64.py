"""The arm64 recordings agree with trace-cmd report -R (microseconds), sampled.

The full comparisons (900k events each) run in bench/bench_events.py --verify;
here: the first lines, a window from the middle and the total count.
"""

from __future__ import annotations

import gzip
import itertools

import pytest
from conftest import CORPUS, require_shared

from ptreplay.formats.rawreport import raw_report_lines
from ptreplay.trace import open_trace

RECORDINGS = ["arm64/vhe-rich-v7", "arm64/a72-rich-v7", "arm64-6.12/vhe-rich2-v7",
              "arm64-6.12/nvhe16k-rich-v7"]


@pytest.mark.parametrize("rec", RECORDINGS)
def test_first_lines_equal_trace_cmd_usec(rec: str) -> None:
    require_shared()
    folder = CORPUS / rec
    n = 20000
    with gzip.open(folder / "trace.report-raw.txt.gz", "rt") as f:
        theirs = [line.rstrip("\n") for line in itertools.islice(f, n)]
    with open_trace(folder / "trace.dat") as t:
        mine = list(itertools.islice(raw_report_lines(t, nsec=False), n))
    assert mine == theirs


def test_total_count_and_kinds() -> None:
    require_shared()
    folder = CORPUS / "arm64/vhe-rich-v7"
    with open_trace(folder / "trace.dat") as t:
        res = t.count_events()
        total = sum(res.counts.values())
        assert t.info.compression == "zstd" and t.info.version == 7
    assert total == 906200
    assert res.lost == []


def test_16k_subbuffers() -> None:
    require_shared()
    with open_trace(CORPUS / "arm64-6.12/nvhe16k-rich-v7/trace.dat") as t:
        assert t.info.buffers[0].page_size == 16384
        first = next(iter(t.events()))
    assert first.name
