"""The raw report's windowed merge gives trace-cmd's order: always the record with the
smallest timestamp next, ties to the lower stream, one record at a time."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ptreplay.formats import rawreport
from ptreplay.formats.rawreport import _merged_lines
from ptreplay.trace import _merge


class _Pages:
    """A stream of pre-made pages of (timestamp, label), shaped like a raw report stream."""

    def __init__(self, order: int, pages: list[list[int]]) -> None:
        self.order = order
        self.pages = [[(ts, (order, p, k)) for k, ts in enumerate(page)]
                      for p, page in enumerate(pages) if page]
        self.tss: list[int] = []
        self.lines: list = []
        self.i = 0
        self.sorted = True
        self.markers: list[int] = []

    def fill(self) -> bool:
        self.i = 0
        if not self.pages:
            self.tss, self.lines = [], []
            return False
        page = self.pages.pop(0)
        self.tss = [ts for ts, _ in page]
        self.lines = [label for _, label in page]
        self.sorted = self.tss == sorted(self.tss)
        return True


def _trace_cmd_order(streams: list[list[list[int]]]) -> list:
    """The definition: pick the head with the smallest (timestamp, stream), one at a time."""
    flat = [[(ts, (order, p, k)) for p, page in enumerate(pages) for k, ts in enumerate(page)]
            for order, pages in enumerate(streams)]
    out = []
    while any(flat):
        order = min((s[0][0], o) for o, s in enumerate(flat) if s)[1]
        out.append(flat[order].pop(0)[1])
    return out


pages = st.lists(st.lists(st.integers(0, 40), min_size=0, max_size=8), max_size=5)
sorted_pages = pages.map(lambda ps: [sorted(p) for p in ps])


@given(streams=st.lists(st.one_of(sorted_pages, pages), min_size=1, max_size=4))
def test_windowed_merge_is_trace_cmd_order(streams) -> None:
    want = _trace_cmd_order(streams)
    got = [x for lines, _ in _merged_lines([_Pages(o, s) for o, s in enumerate(streams)])
           for x in lines]
    assert got == want
    runs = [s.lines[k] for s, i, j in _merge([_Pages(o, p) for o, p in enumerate(streams)])
            for k in range(i, j)]
    assert runs == want


@given(streams=st.lists(sorted_pages, min_size=2, max_size=4))
def test_monotonic_pages_never_fall_back(streams) -> None:
    """Sorted pages (even when a later page starts earlier) are merged by windows."""

    def no_fallback(streams):
        raise AssertionError("fell back to the record-by-record merge")
    rawreport._merge, saved = no_fallback, rawreport._merge
    try:
        merged = list(_merged_lines([_Pages(o, s) for o, s in enumerate(streams)]))
    finally:
        rawreport._merge = saved
    assert [x for lines, _ in merged for x in lines] == _trace_cmd_order(streams)
