"""ftrace ring-buffer sub-buffers ("pages"): page header and event headers.

Mirrors kernel/trace/ring_buffer.c (``struct buffer_data_page``,
``struct ring_buffer_event``) and libtraceevent's kbuffer-parse.c, which is
what ``trace-cmd report`` uses to walk a page:

* page header: ``u64 timestamp`` then ``local_t commit`` (a long: 4 or 8
  bytes). The low 27 bits of ``commit`` are the bytes of event data; bit 31
  says events were missed before this page, bit 30 that their count is
  stored as a long right after the data.
* event header: one 32-bit word, ``type_len:5`` and ``time_delta:27``
  (bit order by endianness). ``type_len`` 1..28: data of ``4 * type_len``
  bytes follows; 0: a 32-bit length word (length + 4), then data; 29:
  padding (the next word is its length); 30: time extend
  (``delta | array[0] << 27``); 31: absolute time stamp (the 5 high bits are
  kept from the running time).

The layouts are declared as Construct (:func:`page_header`,
:func:`event_header`); :func:`decode_page` is the hot loop derived from them
(same masks and shifts, read with :mod:`struct`).
"""

from __future__ import annotations

import struct

from ptreplay.errors import TraceFormatError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    import construct as cs

__all__ = [
    "TYPE_LEN_BITS", "TIME_DELTA_BITS", "TYPE_PADDING", "TYPE_TIME_EXTEND", "TYPE_TIME_STAMP",
    "TYPE_DATA_MAX", "MISSING_EVENTS", "MISSING_STORED", "COMMIT_MASK", "LOST_SHOWN",
    "LOST_HIDDEN", "page_header", "event_header", "decode_page", "page_geometry",
]

TYPE_LEN_BITS = 5
TIME_DELTA_BITS = 27
TYPE_PADDING = 29
TYPE_TIME_EXTEND = 30
TYPE_TIME_STAMP = 31
TYPE_DATA_MAX = 28
MISSING_EVENTS = 1 << 31
MISSING_STORED = 1 << 30
COMMIT_MASK = (1 << 27) - 1
TS_MSB = 0xF8 << 56

#: record id of a lost-events marker that ``trace-cmd report`` prints
LOST_SHOWN = -1
#: record id of a lost-events marker trace-cmd does not print (the page's first
#: record is behind a time extend or padding, see ``kbuffer_missed_events``)
LOST_HIDDEN = -2


def page_header(long_size: int, little: bool) -> cs.Struct:
    """Construct of ``struct buffer_data_page``'s header (the data follows)."""
    import construct as cs

    u64 = cs.Int64ul if little else cs.Int64ub
    long_ = (cs.Int64ul if little else cs.Int64ub) if long_size == 8 else (
        cs.Int32ul if little else cs.Int32ub)
    return cs.Struct("timestamp" / u64, "commit" / long_)


def event_header(little: bool) -> cs.Construct:
    """Construct of ``struct ring_buffer_event``'s first word (``type_len``, ``time_delta``)."""
    import construct as cs

    if little:
        return cs.ByteSwapped(cs.BitStruct("time_delta" / cs.BitsInteger(TIME_DELTA_BITS),
                                           "type_len" / cs.BitsInteger(TYPE_LEN_BITS)))
    return cs.BitStruct("type_len" / cs.BitsInteger(TYPE_LEN_BITS),
                        "time_delta" / cs.BitsInteger(TIME_DELTA_BITS))


def page_geometry(long_size: int) -> int:
    """Bytes of the page header: where event data starts (16 or 12)."""
    return 8 + long_size


_U32 = {True: struct.Struct("<I"), False: struct.Struct(">I")}
_U16 = {True: struct.Struct("<H"), False: struct.Struct(">H")}
_HEAD = {True: struct.Struct("<IH"), False: struct.Struct(">IH")}
_HDR = {(8, True): struct.Struct("<QQ"), (8, False): struct.Struct(">QQ"),
        (4, True): struct.Struct("<QI"), (4, False): struct.Struct(">QI")}
_LONG = {(8, True): struct.Struct("<Q"), (8, False): struct.Struct(">Q"),
         (4, True): struct.Struct("<I"), (4, False): struct.Struct(">I")}


def decode_page(buf: Any, base: int, page_size: int, long_size: int, little: bool,
                out: list, wanted: Any = None, source: str | None = None,
                file_offset: int | None = None) -> int:
    """Append the records of the page at ``buf[base:base+page_size]`` to ``out``.

    Each record is a tuple ``(ts, data_offset, length, event_id)``; ``ts`` is
    the page timestamp plus the deltas (raw clock units), ``data_offset`` is
    an index into ``buf``. A page that says events were missed first gets a
    marker ``(ts, base, count, LOST_SHOWN or LOST_HIDDEN)`` (count -1 when the
    kernel did not store it). ``wanted`` (a set of event ids or None) drops
    the other events before a tuple is made. Returns the number of event
    records found on the page (all ids).

    :raises TraceFormatError: commit larger than the page, or an event
        running past the commit.
    """
    hdr = _HDR[(long_size, little)]
    ts, flags = hdr.unpack_from(buf, base)
    start = base + 8 + long_size
    commit = flags & COMMIT_MASK
    where = file_offset if file_offset is not None else base
    if commit > page_size - 8 - long_size:
        raise TraceFormatError(
            f"ring-buffer page commit {commit} exceeds the page size {page_size}",
            source, offset=where)
    end = start + commit
    lost = 0
    if flags & MISSING_EVENTS:
        if flags & MISSING_STORED:
            if end + long_size > base + page_size:
                raise TraceFormatError("missed-events count beyond the page", source,
                                       offset=where)
            lost = _LONG[(long_size, little)].unpack_from(buf, end)[0]
        else:
            lost = -1
    u32 = _U32[little].unpack_from
    u16 = _U16[little].unpack_from
    head = _HEAD[little].unpack_from  # an event's header word and the event id after it
    append = out.append
    pos = start
    count = 0
    first = True
    marker_at = len(out)
    if little:
        while pos < end:
            try:
                word, eid = head(buf, pos)
            except struct.error:  # the last 4 bytes of ``buf``: no data event
                word, eid = u32(buf, pos)[0], -1
            tl = word & 31
            if tl and tl <= 28:
                ts += word >> 5
                length = tl << 2
                data = pos + 4
            elif tl == 0:
                ts += word >> 5
                length = ((u32(buf, pos + 4)[0] - 4) + 3) & ~3
                data = pos + 8
                if length < 2 or data + length > end:
                    raise _overrun(buf, base, pos, end, source, where, length)
                eid = u16(buf, data)[0]
            elif tl == 30:
                ts += (u32(buf, pos + 4)[0] << 27) + (word >> 5)
                pos += 8
                first = False
                continue
            elif tl == 31:
                ts = ((u32(buf, pos + 4)[0] << 27) + (word >> 5)) | (ts & TS_MSB)
                pos += 8
                first = False
                continue
            else:  # padding
                ts += word >> 5
                pos = pos + 4 + u32(buf, pos + 4)[0] if pos + 8 <= end else end
                first = False
                continue
            nxt = data + length
            if nxt > end:
                raise _overrun(buf, base, pos, end, source, where, length)
            count += 1
            if lost and count == 1:
                append((ts, base, lost, LOST_SHOWN if first else LOST_HIDDEN))
            if wanted is None or eid in wanted:
                append((ts, data, length, eid))
            pos = nxt
            first = False
    else:
        while pos < end:
            try:
                word, eid = head(buf, pos)
            except struct.error:  # the last 4 bytes of ``buf``: no data event
                word, eid = u32(buf, pos)[0], -1
            tl = word >> 27
            delta = word & COMMIT_MASK
            if tl and tl <= 28:
                ts += delta
                length = tl << 2
                data = pos + 4
            elif tl == 0:
                ts += delta
                length = ((u32(buf, pos + 4)[0] - 4) + 3) & ~3
                data = pos + 8
                if length < 2 or data + length > end:
                    raise _overrun(buf, base, pos, end, source, where, length)
                eid = u16(buf, data)[0]
            elif tl == 30:
                ts += (u32(buf, pos + 4)[0] << 27) + delta
                pos += 8
                first = False
                continue
            elif tl == 31:
                ts = ((u32(buf, pos + 4)[0] << 27) + delta) | (ts & TS_MSB)
                pos += 8
                first = False
                continue
            else:
                ts += delta
                pos = pos + 4 + u32(buf, pos + 4)[0] if pos + 8 <= end else end
                first = False
                continue
            nxt = data + length
            if nxt > end:
                raise _overrun(buf, base, pos, end, source, where, length)
            count += 1
            if lost and count == 1:
                append((ts, base, lost, LOST_SHOWN if first else LOST_HIDDEN))
            if wanted is None or eid in wanted:
                append((ts, data, length, eid))
            pos = nxt
            first = False
    if lost and count == 0:
        out.insert(marker_at, (ts, base, lost, LOST_HIDDEN))
    return count


def _overrun(buf, base, pos, end, source, where, length) -> TraceFormatError:
    return TraceFormatError(
        f"ring-buffer event of {length} bytes at page offset {pos - base} runs past the "
        f"page commit ({end - base})", source, offset=where + (pos - base))
