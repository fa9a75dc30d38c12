"""The public trace API: open a trace, read its metadata, iterate its events lazily.

A *trace* is a trace-cmd ``trace.dat`` file (versions 6 and 7, compressed or
not) or a raw copy of tracefs (a folder with ``per_cpu/cpuN/trace_pipe_raw``
or ``cpuN.trace_pipe_raw[.gz]`` and ``events/**/format``)::

    from ptreplay.trace import open_trace

    with open_trace("trace.dat") as trace:
        print(trace.info.version, trace.info.clock, trace.info.buffers)
        for ev in trace.events(names={"kvm_pgtable_stage2_map"}):
            print(ev.ts, ev.cpu, ev.comm, ev.fields["addr"])

Three ways to iterate, from convenient to fast (all stream: memory does not
grow with the trace, only one page or compressed chunk per CPU is live):

* :meth:`Trace.events` yields :class:`Event` (every field decoded to a Python
  value: int, str, bytes or tuple) and :class:`LostEvents` markers.
* :meth:`Trace.records` yields :class:`RawRecord` (timestamp, CPU, event
  format, the bytes and offset of the payload) without decoding any field;
  events that were not asked for are skipped after reading their 2-byte id.
* :meth:`Trace.scan` yields plain tuples ``(ts, cpu, name, values)`` where
  ``values`` is the tuple of the requested fields, decoded by one
  pre-compiled ``struct`` per event format. This is the replay layer's path.

Cost model (CPython 3.11, one core): walking the ring-buffer pages and
merging CPUs costs about 0.3-0.5 µs per event whether or not the event is
wanted; each wanted event then costs about 0.3 µs in :meth:`scan`
(tuple + one ``struct.unpack_from``), about 0.4 µs in :meth:`records`, and
3-5 µs in :meth:`events` (all fields, a dict and an object). v7 zstd
decompression adds about 0.05 µs per event. :attr:`Trace.info` decodes no
events; :meth:`Trace.count_events` walks the pages but decodes no fields.

Order: events are merged across CPUs and buffers exactly as ``trace-cmd
report`` merges them: always the record with the smallest timestamp next,
ties going to the lower (buffer, CPU) stream (top buffer first, then the
instances in file order; CPUs by number).
"""

from __future__ import annotations

import os
import re
import struct
from collections import namedtuple

from ptreplay.errors import TraceFormatError
from ptreplay.formats.eventformat import EventFormat, parse_format
from ptreplay.formats.ringbuffer import LOST_SHOWN, decode_page
from ptreplay.values import Frozen

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs start-up time
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
    from typing import Any

__all__ = [
    "open_trace", "Trace", "TraceInfo", "BufferInfo", "CpuStats", "Event", "LostEvents",
    "RawRecord", "EventFormats", "EventCounts", "LOST",
]

#: ``name`` of the lost-events markers in :meth:`Trace.scan` results
LOST = "<lost events>"


# ---------------------------------------------------------------------------
# records


class Event(Frozen):
    """One decoded event.

    :param ts: timestamp in nanoseconds (after the file's clock conversions).
    :param fields: the event's own fields (not the ``common_*`` ones), by name,
        decoded per the format text: int (signed or not as the format says),
        str for char arrays and ``__data_loc char[]`` strings, tuple of int for
        other arrays, bytes for arrays of unknown element size.
    :param format: the event's :class:`EventFormat` (not compared, not shown).
    :param index: the event's position in the trace (not compared, not shown).
    """

    __slots__ = ("buffer", "cpu", "ts", "system", "name", "pid", "comm", "fields", "common",
                 "format", "index")
    _fields = __slots__[:9]
    buffer: str
    cpu: int
    ts: int
    system: str
    name: str
    pid: int
    comm: str
    fields: dict[str, Any]
    common: dict[str, Any]
    format: EventFormat
    index: int

    def __init__(self, buffer: str, cpu: int, ts: int, system: str, name: str, pid: int,
                 comm: str, fields: dict[str, Any], common: dict[str, Any],
                 format: EventFormat, index: int = -1) -> None:
        set_ = object.__setattr__
        set_(self, "buffer", buffer)
        set_(self, "cpu", cpu)
        set_(self, "ts", ts)
        set_(self, "system", system)
        set_(self, "name", name)
        set_(self, "pid", pid)
        set_(self, "comm", comm)
        set_(self, "fields", fields)
        set_(self, "common", common)
        set_(self, "format", format)
        set_(self, "index", index)

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]


class LostEvents(Frozen):
    """Events the kernel dropped on one CPU before the next recorded one.

    :param count: how many, or None when the kernel did not store the count.
    :param shown_by_trace_cmd: whether ``trace-cmd report`` prints a marker
        for it (it does not when the page's first record follows a time
        extend); the events were lost all the same.
    """

    __slots__ = _fields = ("buffer", "cpu", "ts", "count", "shown_by_trace_cmd")
    buffer: str
    cpu: int
    ts: int
    count: int | None
    shown_by_trace_cmd: bool

    def __init__(self, buffer: str, cpu: int, ts: int, count: int | None,
                 shown_by_trace_cmd: bool = True) -> None:
        self._assign(buffer, cpu, ts, count, shown_by_trace_cmd)


class RawRecord(namedtuple("RawRecord", "ts cpu format data offset size buffer")):
    """An event not decoded yet: decode its fields with ``format.decoder(names)``.

    ``data`` is the bytes-like object holding the payload, ``offset`` where
    the payload starts in it and ``size`` its length (rounded up to 4 by the
    ring buffer).
    """

    __slots__ = ()
    ts: int
    cpu: int
    format: EventFormat
    data: Any
    offset: int
    size: int
    buffer: str


# ---------------------------------------------------------------------------
# metadata


class CpuStats(Frozen):
    """``per_cpu/cpuN/stats`` of one CPU as stored in the trace (CPUSTAT option)."""

    __slots__ = _fields = ("cpu", "entries", "overrun", "commit_overrun", "bytes",
                           "dropped_events", "read_events", "text")
    cpu: int
    entries: int | None
    overrun: int | None
    commit_overrun: int | None
    bytes: int | None
    dropped_events: int | None
    read_events: int | None
    text: str

    def __init__(self, cpu: int, entries: int | None, overrun: int | None,
                 commit_overrun: int | None, bytes: int | None, dropped_events: int | None,
                 read_events: int | None, text: str) -> None:
        self._assign(cpu, entries, overrun, commit_overrun, bytes, dropped_events, read_events,
                     text)


class BufferInfo(Frozen):
    """One ftrace buffer (``""`` is the top buffer) and its CPUs."""

    __slots__ = _fields = ("name", "clock", "page_size", "cpus", "data_bytes", "stats")
    name: str
    clock: str
    page_size: int
    cpus: tuple[int, ...]
    data_bytes: dict[int, int]
    stats: tuple[CpuStats, ...]

    def __init__(self, name: str, clock: str, page_size: int, cpus: tuple[int, ...],
                 data_bytes: dict[int, int], stats: tuple[CpuStats, ...] = ()) -> None:
        self._assign(name, clock, page_size, cpus, data_bytes, stats)


class TraceInfo(Frozen):
    """Everything about a trace that needs no event decoding."""

    __slots__ = _fields = (
        "path", "kind", "version", "little_endian", "long_size", "page_size", "compression",
        "compression_version", "clock", "cpus", "buffers", "uname", "kernel_release",
        "tracer_version", "header_page", "header_event", "options", "tsc2nsec", "ts_offset",
        "cmdlines", "cpu_stats", "kallsyms_size", "trace_clock_text")
    path: str
    kind: str  # "trace.dat" or "tracefs"
    version: int | None
    little_endian: bool
    long_size: int
    page_size: int
    compression: str | None
    compression_version: str | None
    clock: str
    cpus: int
    buffers: tuple[BufferInfo, ...]
    uname: str | None
    kernel_release: str | None
    tracer_version: str | None
    header_page: str
    header_event: str
    options: tuple[tuple[str, bytes], ...]
    tsc2nsec: tuple[int, int, int] | None
    ts_offset: int
    cmdlines: dict[int, str]
    cpu_stats: tuple[CpuStats, ...]
    kallsyms_size: int
    trace_clock_text: str

    def __init__(self, path: str, kind: str, version: int | None, little_endian: bool,
                 long_size: int, page_size: int, compression: str | None,
                 compression_version: str | None, clock: str, cpus: int,
                 buffers: tuple[BufferInfo, ...], uname: str | None,
                 kernel_release: str | None, tracer_version: str | None, header_page: str,
                 header_event: str, options: tuple[tuple[str, bytes], ...],
                 tsc2nsec: tuple[int, int, int] | None, ts_offset: int,
                 cmdlines: dict[int, str], cpu_stats: tuple[CpuStats, ...],
                 kallsyms_size: int, trace_clock_text: str = "") -> None:
        self._assign(path, kind, version, little_endian, long_size, page_size, compression,
                     compression_version, clock, cpus, buffers, uname, kernel_release,
                     tracer_version, header_page, header_event, options, tsc2nsec, ts_offset,
                     cmdlines, cpu_stats, kallsyms_size, trace_clock_text)

    @property
    def endianness(self) -> str:
        return "little" if self.little_endian else "big"


class EventFormats:
    """The event formats of a trace, parsed on first use, by id and by name."""

    def __init__(self, texts: Iterable[tuple[str, str]], long_size: int, source: str) -> None:
        self._texts: dict[int, tuple[str, str]] = {}
        self._parsed: dict[int, EventFormat] = {}
        self._names: dict[int, tuple[str, str]] = {}
        self.long_size = long_size
        self.source = source
        for system, text in texts:
            m = re.search(r"^name:\s*(\S+)", text, re.M)
            i = re.search(r"^ID:\s*(\d+)", text, re.M)
            if not m or not i:
                raise TraceFormatError(f"event format of system {system} without name or ID",
                                       source)
            ev_id = int(i.group(1))
            if ev_id not in self._texts:
                self._texts[ev_id] = (system, text)
                self._names[ev_id] = (system, m.group(1))

    def __contains__(self, ev_id: int) -> bool:
        return ev_id in self._texts

    def __len__(self) -> int:
        return len(self._texts)

    def ids(self) -> list[int]:
        """All event ids, sorted."""
        return sorted(self._texts)

    def name_of(self, ev_id: int) -> tuple[str, str]:
        """(system, name) of an id, without parsing the format."""
        return self._names[ev_id]

    def get(self, ev_id: int) -> EventFormat:
        """The parsed format of event id ``ev_id``."""
        fmt = self._parsed.get(ev_id)
        if fmt is None:
            system, text = self._texts[ev_id]
            fmt = parse_format(text, system, long_size=self.long_size, source=self.source)
            self._parsed[ev_id] = fmt
        return fmt

    def by_name(self, name: str) -> list[EventFormat]:
        """Formats called ``name`` or ``system:name`` (or ``system:*``)."""
        out = []
        sys_, _, ev = name.rpartition(":")
        for ev_id, (system, n) in self._names.items():
            if sys_:
                if system == sys_ and (ev in ("*", n)):
                    out.append(self.get(ev_id))
            elif n == name or system == name:
                out.append(self.get(ev_id))
        return out

    def ids_for(self, names: Iterable[str]) -> set[int]:
        """The ids matching any of ``names`` (see :meth:`by_name`); unknown names are an error."""
        out: set[int] = set()
        for n in names:
            found = [f.id for f in self.by_name(n)]
            if not found:
                raise TraceFormatError(f"no event called {n!r} in this trace", self.source)
            out.update(found)
        return out


# ---------------------------------------------------------------------------
# per-CPU streams and the merge


class _Stream:
    """The records of one CPU of one buffer, a page at a time.

    After :meth:`fill`, ``recs`` holds the page's records (see
    :func:`~ptreplay.formats.ringbuffer.decode_page`), ``tss`` their
    timestamps (what :func:`_merge` orders by) and ``i`` the next one to hand out.
    """

    __slots__ = ("buffer", "cpu", "order", "pages", "recs", "tss", "i", "buf", "decode", "conv")

    def __init__(self, buffer: str, cpu: int, order: int, pages: Iterator[tuple[Any, int, int]],
                 decode: Callable[[Any, int, int, list], int], conv) -> None:
        self.buffer = buffer
        self.cpu = cpu
        self.order = order
        self.pages = pages
        self.recs: list = []
        self.tss: list[int] = []
        self.i = 0
        self.buf: Any = None
        self.decode = decode
        self.conv = conv

    def fill(self) -> bool:
        """Load the next page that has records; False at the end of the CPU's data."""
        for data, base, where in self.pages:
            recs: list = []
            self.decode(data, base, where, recs)
            if recs:
                if self.conv is not None:
                    c = self.conv
                    recs = [(c(r[0]),) + r[1:] for r in recs]
                self.recs = recs
                self.tss = [r[0] for r in recs]
                self.i = 0
                self.buf = data
                return True
        self.recs = []
        self.tss = []
        self.i = 0
        return False


def _merge(streams: list) -> Iterator[tuple[Any, int, int]]:
    """Yield ``(stream, start, end)`` runs of ``stream.tss`` in trace-cmd's merge order.

    Always the stream whose next timestamp is smallest, ties going to the
    lower ``order``; a run goes on while its timestamps stay before the next
    head of the other streams. Works on any stream with ``tss``, ``i``,
    ``order`` and ``fill()`` (:class:`_Stream`, the raw report's line streams);
    a stream with a page loaded goes on from its ``i``. The stream's ``i`` is
    already past the run when the run is handed out.
    """
    live = [s for s in streams if s.i < len(s.tss) or s.fill()]
    live.sort(key=lambda s: s.order)
    while len(live) > 1:
        # best: smallest (head, order); second: the smallest of the others. ``live`` is in
        # ``order``, so a strict < keeps ties with the earlier stream.
        best = live[0]
        bts = best.tss[best.i]
        second = None
        sts = 0
        for s in live[1:]:
            ts = s.tss[s.i]
            if ts < bts:
                second, sts = best, bts
                best, bts = s, ts
            elif second is None or ts < sts:
                second, sts = s, ts
        assert second is not None
        tss = best.tss
        i = best.i
        n = len(tss)
        j = i + 1  # the head itself goes first: it is not after the others
        if best.order < second.order:
            while j < n and tss[j] <= sts:
                j += 1
        else:
            while j < n and tss[j] < sts:
                j += 1
        best.i = j
        yield best, i, j
        if j >= n and not best.fill():
            live.remove(best)
    if live:
        s = live[0]
        while True:
            i = s.i
            s.i = n = len(s.tss)
            yield s, i, n
            if not s.fill():
                return


# ---------------------------------------------------------------------------
# the trace


class Trace:
    """An open trace (use :func:`open_trace`). Close it, or use it as a context manager."""

    def __init__(self, backend: Any, info: TraceInfo, formats: EventFormats) -> None:
        self._backend = backend
        self.info = info
        self.formats = formats
        self.source = info.path
        self._kallsyms: Any = None
        self._printk: Any = None

    # -- lifetime ---------------------------------------------------------

    def close(self) -> None:
        """Release the file(s)."""
        self._backend.close()

    def __enter__(self) -> Trace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- metadata helpers ---------------------------------------------------

    def comm(self, pid: int) -> str:
        """The command name of ``pid`` from the saved cmdlines, as trace-cmd shows it."""
        if pid == 0:
            return "<idle>"
        return self.info.cmdlines.get(pid, "<...>")

    def kallsyms(self) -> str:
        """The stored /proc/kallsyms text ("" if none)."""
        return self._backend.kallsyms()

    def printk_formats(self) -> str:
        """The stored printk_formats text ("" if none)."""
        return self._backend.printk_formats()

    def find_function(self, addr: int) -> tuple[str, int] | None:
        """(name, start address) of the kallsyms symbol containing ``addr``, like libtraceevent."""
        if self._kallsyms is None:
            self._kallsyms = _Kallsyms(self.kallsyms())
        return self._kallsyms.find(addr)

    def find_printk(self, addr: int) -> str | None:
        """The trace_printk format string stored at ``addr``."""
        if self._printk is None:
            table: dict[int, str] = {}
            for line in self.printk_formats().splitlines():
                a, sep, fmt = line.partition(" : ")
                if not sep:
                    continue
                try:
                    table[int(a, 16)] = fmt.strip().strip('"')
                except ValueError:
                    continue
            self._printk = table
        return self._printk.get(addr)

    # -- iteration ----------------------------------------------------------

    def _streams(self, ids: set[int] | None, cpus: Iterable[int] | None,
                 buffer: str | None) -> list[_Stream]:
        want_cpus = set(cpus) if cpus is not None else None
        streams: list[_Stream] = []
        order = 0
        buffers = self._backend.buffers
        if buffer is not None and not any(b.name == buffer for b in buffers):
            raise TraceFormatError(f"no buffer called {buffer!r} in this trace", self.source)
        for b in buffers:
            for c in sorted(b.cpus, key=lambda c: c.cpu):
                order += 1
                if buffer is not None and b.name != buffer:
                    continue
                if want_cpus is not None and c.cpu not in want_cpus:
                    continue
                pages = self._backend.cpu_pages(b, c)
                streams.append(_Stream(b.name, c.cpu, order, pages,
                                       self._page_decoder(b, ids), self._conv))
        return streams

    def _page_decoder(self, b: Any, ids: set[int] | None):
        ps = b.page_size
        ls = self.info.long_size
        little = self.info.little_endian
        src = self.source

        def decode(data: Any, base: int, where: int, out: list) -> int:
            try:
                return decode_page(data, base, ps, ls, little, out, ids, src, where)
            except struct.error:
                raise TraceFormatError("ring-buffer page runs past its data", src,
                                       offset=where) from None
        return decode

    @property
    def _conv(self):
        info = self.info
        if info.tsc2nsec is None and not info.ts_offset:
            return None
        mult, shift, _ = info.tsc2nsec or (0, 0, 0)
        off = info.ts_offset

        def conv(ts: int) -> int:
            if mult:
                al = ts & 0xFFFFFFFF
                ah = ts >> 32
                r = (al * mult) >> shift
                if ah:
                    r += (ah * mult) << (32 - shift)
                ts = r & 0xFFFFFFFFFFFFFFFF
            return (ts + off) & 0xFFFFFFFFFFFFFFFF
        return conv

    def _check_ids(self, ids: set[int] | None) -> set[int] | None:
        return ids

    def _unknown(self, stream: _Stream, eid: int, index: int) -> TraceFormatError:
        return TraceFormatError(
            f"event id {eid} on CPU {stream.cpu} has no format in this trace", self.source,
            index=index)

    def records(self, names: Iterable[str] | None = None, cpus: Iterable[int] | None = None,
                buffer: str | None = None, *, lost: bool = False
                ) -> Iterator[RawRecord | LostEvents]:
        """Undecoded events in merge order (see the module's cost model).

        :param names: event names (``name``, ``system:name`` or a system) to keep.
        :param cpus: CPU numbers to keep.
        :param buffer: only this buffer ("" is the top buffer).
        :param lost: also yield :class:`LostEvents` markers.
        :raises TraceFormatError: malformed data, or an event id without a format.
        """
        ids = self.formats.ids_for(names) if names is not None else None
        fmts = self.formats
        cache: dict[int, EventFormat] = {}
        index = 0
        for s, i, j in _merge(self._streams(ids, cpus, buffer)):
            buf = s.buf
            recs = s.recs
            for k in range(i, j):
                ts, off, size, eid = recs[k]
                if eid < 0:
                    if lost:
                        yield LostEvents(s.buffer, s.cpu, ts, size if size >= 0 else None,
                                         eid == LOST_SHOWN)
                    continue
                fmt = cache.get(eid)
                if fmt is None:
                    if eid not in fmts:
                        raise self._unknown(s, eid, index)
                    fmt = cache[eid] = fmts.get(eid)
                index += 1
                yield RawRecord(ts, s.cpu, fmt, buf, off, size, s.buffer)

    def scan(self, fields: Mapping[str, Sequence[str]], cpus: Iterable[int] | None = None,
             buffer: str | None = None, *, lost: bool = False
             ) -> Iterator[tuple[int, int, str, tuple]]:
        """The fast path: ``(ts, cpu, name, values)`` for the events named in ``fields``.

        ``fields`` maps an event name (``name`` or ``system:name``) to the field
        names to decode (``common_pid`` etc. allowed); ``values`` has them in
        that order. Other events are skipped without decoding. With
        ``lost=True``, lost-events markers come as ``(ts, cpu, LOST, (count,))``
        (count -1 when unknown).
        """
        decoders: dict[int, tuple[str, Callable]] = {}
        little = self.info.little_endian
        for name, wanted in fields.items():
            for fmt in self.formats.by_name(name):
                decoders[fmt.id] = (fmt.name, fmt.decoder(tuple(wanted), little))
            if not self.formats.by_name(name):
                raise TraceFormatError(f"no event called {name!r} in this trace", self.source)
        ids = set(decoders)
        for s, i, j in _merge(self._streams(ids, cpus, buffer)):
            buf = s.buf
            cpu = s.cpu
            recs = s.recs
            for k in range(i, j):
                ts, off, size, eid = recs[k]
                if eid < 0:
                    if lost:
                        yield ts, cpu, LOST, (size,)
                    continue
                name, dec = decoders[eid]
                yield ts, cpu, name, dec(buf, off, size)

    def events(self, names: Iterable[str] | None = None, cpus: Iterable[int] | None = None,
               buffer: str | None = None, *, lost: bool = True
               ) -> Iterator[Event | LostEvents]:
        """Decoded :class:`Event` objects (and :class:`LostEvents` markers) in merge order.

        :param names: event names (``name``, ``system:name`` or a system) to keep.
        :param cpus: CPU numbers to keep.
        :param buffer: only this buffer ("" is the top buffer).
        """
        little = self.info.little_endian
        decs: dict[int, tuple] = {}
        index = 0
        for rec in self.records(names, cpus, buffer, lost=lost):
            if isinstance(rec, LostEvents):
                yield rec
                continue
            fmt = rec.format
            d = decs.get(fmt.id)
            if d is None:
                cnames = tuple(f.name for f in fmt.common_fields)
                fnames = tuple(f.name for f in fmt.fields)
                d = decs[fmt.id] = (cnames, fnames, fmt.decoder(cnames + fnames, little))
            cnames, fnames, dec = d
            try:
                vals = dec(rec.data, rec.offset, rec.size)
            except TraceFormatError as err:
                err.index = index
                raise err.located(self.source) from None
            common = dict(zip(cnames, vals[:len(cnames)], strict=False))
            pid = common.get("common_pid", 0)
            yield Event(rec.buffer, rec.cpu, rec.ts, fmt.system, fmt.name, pid, self.comm(pid),
                        dict(zip(fnames, vals[len(cnames):], strict=False)), common, fmt,
                        index)
            index += 1

    def count_events(self, cpus: Iterable[int] | None = None, buffer: str | None = None
                     ) -> EventCounts:
        """Count events per (buffer, cpu, event id) and collect the lost-events markers.

        Walks every page but decodes no field (only the 2-byte event id).
        """
        counts: dict[tuple[str, int, int], int] = {}
        lost: list[LostEvents] = []
        for s in self._streams(None, cpus, buffer):
            while s.fill():
                for ts, _off, size, eid in s.recs:
                    if eid < 0:
                        lost.append(LostEvents(s.buffer, s.cpu, ts, size if size >= 0 else None,
                                               eid == LOST_SHOWN))
                        continue
                    key = (s.buffer, s.cpu, eid)
                    counts[key] = counts.get(key, 0) + 1
        lost.sort(key=lambda m: (m.ts, m.buffer, m.cpu))
        return EventCounts(counts, lost)


class EventCounts(Frozen):
    """What :meth:`Trace.count_events` found: ``counts``, events per (buffer, cpu,
    event id), and ``lost``, every lost-events marker by time."""

    __slots__ = _fields = ("counts", "lost")
    counts: dict[tuple[str, int, int], int]
    lost: list[LostEvents]

    def __init__(self, counts: dict[tuple[str, int, int], int],
                 lost: list[LostEvents]) -> None:
        self._assign(counts, lost)


class _Kallsyms:
    """Address -> function lookup with libtraceevent's rules (tep_parse_kallsyms, find_func)."""

    def __init__(self, text: str) -> None:
        import bisect

        self._bisect = bisect.bisect_right
        entries: list[tuple[int, str]] = []
        for line in text.splitlines():
            parts = line.split(None, 3)
            if len(parts) < 3:
                continue
            try:
                addr = int(parts[0][:16], 16)
            except ValueError:
                continue
            typ, name = parts[1], parts[2]
            if name.startswith("$") or typ in ("A", "a"):
                continue
            entries.append((addr, name))
        entries.sort(key=lambda e: e[0])
        self.addrs = [a for a, _ in entries]
        self.names = [n for _, n in entries]

    def find(self, addr: int) -> tuple[str, int] | None:
        i = self._bisect(self.addrs, addr) - 1
        if i < 0:
            return None
        if i + 1 == len(self.addrs) and self.addrs[i] != addr:
            return None  # libtraceevent: the last symbol only matches exactly
        return self.names[i], self.addrs[i]


# ---------------------------------------------------------------------------
# opening


def _parse_cmdlines(text: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for line in text.split("\n"):
        if not line:
            continue
        m = re.match(r"\s*([-+]?\d+)\s+(.+)$", line)
        if not m:
            break
        pid = int(m.group(1))
        out.setdefault(pid, m.group(2))
    return out


def _stats_from_text(cpu: int, text: str) -> CpuStats:
    from ptreplay.formats.tracedat.reader import parse_cpustat

    d = parse_cpustat(text)

    def num(k: str) -> int | None:
        v = d.get(k)
        return v if isinstance(v, int) else None
    return CpuStats(cpu, num("entries"), num("overrun"), num("commit overrun"), num("bytes"),
                    num("dropped events"), num("read events"), text)


def open_trace(path: str | os.PathLike[str]) -> Trace:
    """Open a trace.dat file or a raw tracefs folder.

    :raises TraceFormatError: the input is not a trace we can read (says what and where).
    :raises ptreplay.errors.InputError: the path does not exist.
    """
    p = os.fspath(path)
    if os.path.isdir(p):
        from pathlib import Path

        from ptreplay.formats.tracefs import open_tracefs

        return open_tracefs(Path(p))
    if not os.path.exists(p):
        raise TraceFormatError("no such file or directory", p)
    return _open_tracedat(p)


def _open_tracedat(p: str) -> Trace:
    from ptreplay.formats.tracedat.options import Option
    from ptreplay.formats.tracedat.reader import TraceDatFile

    f = TraceDatFile(p)
    try:
        uname = version = None
        clock_text = ""
        tsc = None
        ts_offset = 0
        stats: list[CpuStats] = []
        per_buffer_stats: dict[str, list[CpuStats]] = {}
        current = ""
        opts = []
        for opt in f.options:
            opts.append((_option_name(opt.id), opt.data))
            text = opt.data.rstrip(b"\0").decode("utf-8", "replace")
            if opt.id == Option.UNAME:
                uname = text
            elif opt.id == Option.VERSION:
                version = text
            elif opt.id == Option.TRACECLOCK:
                clock_text = text
            elif opt.id == Option.TSC2NSEC and len(opt.data) >= 16:
                t = f.s.tsc2nsec.parse_bytes(opt.data[:16])
                tsc = (t.mult, t.shift, t.offset)
            elif opt.id == Option.OFFSET:
                ts_offset += _strtoll(text)
            elif opt.id == Option.DATE:
                ts_offset += _strtoll(text) * 1000
            elif opt.id == Option.CPUSTAT:
                m = re.match(r"\s*Buffer:\s*(\S*)", text)
                if m and "CPU:" not in text:
                    current = m.group(1)
                    continue
                m = re.search(r"CPU:\s*(\d+)", text)
                st = _stats_from_text(int(m.group(1)) if m else len(stats), text)
                stats.append(st)
                per_buffer_stats.setdefault(current, []).append(st)
        buffers = tuple(
            BufferInfo(b.name, b.clock, b.page_size, tuple(c.cpu for c in b.cpus),
                       {c.cpu: c.size for c in b.cpus},
                       tuple(per_buffer_stats.get(b.name, ())))
            for b in f.buffers)
        top = next((b for b in f.buffers if b.name == ""), None)
        if f.version == 7:
            cpus = (max((c.cpu for c in top.cpus), default=-1) + 1) if top else f.cpus
        else:
            cpus = f.cpus
        clock = top.clock if top else (f.buffers[0].clock if f.buffers else "local")
        release = None
        if uname:
            parts = uname.split()
            release = parts[2] if len(parts) > 2 else None
        info = TraceInfo(
            path=str(p), kind="trace.dat", version=f.version, little_endian=f.little,
            long_size=f.long_size, page_size=f.page_size,
            compression=f.compression if f.version >= 7 else None,
            compression_version=f.compression_version if f.version >= 7 else None,
            clock=clock, cpus=cpus, buffers=buffers, uname=uname, kernel_release=release,
            tracer_version=version, header_page=f.header_page, header_event=f.header_event,
            options=tuple(opts), tsc2nsec=tsc, ts_offset=ts_offset,
            cmdlines=_parse_cmdlines(f.cmdlines), cpu_stats=tuple(stats),
            kallsyms_size=f.kallsyms_size, trace_clock_text=clock_text)
        texts = [("ftrace", t) for t in f.ftrace_formats] + list(f.event_formats)
        formats = EventFormats(texts, f.long_size, str(p))
        return Trace(f, info, formats)
    except BaseException:
        f.close()
        raise


def _option_name(oid: int) -> str:
    from ptreplay.formats.tracedat.options import OPTION_NAMES

    return OPTION_NAMES.get(oid, f"OPTION_{oid}")


def _strtoll(text: str) -> int:
    m = re.match(r"\s*([-+]?(0[xX][0-9a-fA-F]+|\d+))", text)
    return int(m.group(1), 0) if m else 0
