"""Ring-buffer pages: the packer (built with the Construct schemas) and decode_page agree."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ptreplay.formats.ringbuffer import LOST_SHOWN, decode_page, event_header, page_header
from ptreplay.formats.tracedat.writer import PagePacker


@given(events=st.lists(st.tuples(st.integers(0, 1 << 33), st.binary(min_size=2, max_size=300)),
                       max_size=60),
       little=st.booleans(), long_size=st.sampled_from([4, 8]),
       page=st.sampled_from([4096, 8192, 16384]), absolute=st.booleans(),
       lost=st.one_of(st.none(), st.integers(0, 1000)))
def test_pack_then_decode(events, little, long_size, page, absolute, lost) -> None:
    p = PagePacker(page, long_size, little, absolute)
    if lost is not None:
        p.add_missed(lost)
    ts = 0
    want = []
    for delta, payload in events:
        ts += delta
        p.add(ts, payload)
        want.append((ts, payload))
    data = p.finish()
    got = []
    markers = []
    for base in range(0, len(data), page):
        out: list = []
        decode_page(data, base, page, long_size, little, out)
        for t, off, size, eid in out:
            if eid < 0:
                markers.append((size, eid))
            else:
                got.append((t, data[off:off + size]))
    assert [t for t, _ in got] == [t for t, _ in want]
    for (_, a), (_, b) in zip(got, want, strict=True):
        assert a[:len(b)] == b
    if lost and want:  # a stored count of 0 is no loss, as for trace-cmd
        assert markers[0][0] == lost and markers[0][1] == LOST_SHOWN
    if not lost:
        assert markers == []


def test_construct_declarations() -> None:
    hdr = page_header(8, True).parse(bytes(range(16)))
    assert hdr.timestamp == 0x0706050403020100
    word = event_header(True).build({"type_len": 30, "time_delta": 5})
    assert int.from_bytes(word, "little") == (5 << 5) | 30
    word = event_header(False).build({"type_len": 30, "time_delta": 5})
    assert int.from_bytes(word, "big") == (30 << 27) | 5
