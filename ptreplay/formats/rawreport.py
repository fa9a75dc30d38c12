"""Render a trace the way ``trace-cmd report -R`` (trace-cmd 3.1.6, libtraceevent 1.7) does.

One line per event::

    [instance: ]%16s-%-5d [%03d] %5llu.%09llu: name:<pad to 20> field=value ...

with ``cpus=N`` first, ``CPU:N [M EVENTS DROPPED]`` lines before the first
event after a loss, the instance column only when the file has instances,
and timestamps in microseconds (rounded: ``(ns + 500) / 1000``) or, with
``nsec=True`` (``-t``), in nanoseconds.

How it is fast (1.5-3 µs a line in all, where trace-cmd 3.1.6 takes 3-5 µs):

* per event format (and time layout) one line function is compiled,
  ``(buf, off, size, ts, heads) -> str``, that reads ``common_pid`` and every
  printed number with a single ``struct`` and builds the whole line with a
  single ``%`` (:func:`_compile_line`, from
  :func:`ptreplay.formats.printfmt.raw_fields`); ``heads`` holds each pid's
  ``[instance: ]comm-pid [cpu]`` column of one CPU, made once;
* each CPU's page is rendered as soon as it is decoded (:class:`_LineStream`);
* the CPUs are merged a window at a time (:func:`_merged_lines`): what is
  certainly next, up to the end of the page that ends first, is put in order
  by one stable sort on the timestamps (C speed), instead of choosing the
  next stream event by event.

Memory holds one page of lines per CPU, whatever the length of the trace.
"""

from __future__ import annotations

import struct
from bisect import bisect_left, bisect_right

from ptreplay.formats.printfmt import raw_fields, struct_format
from ptreplay.formats.ringbuffer import LOST_SHOWN
from ptreplay.trace import Trace, _merge, _Stream

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs start-up time
    from collections.abc import Iterable, Iterator
    from typing import Any

__all__ = ["raw_report_lines", "raw_report_batches", "USEC_CLOCKS"]

#: clocks trace-cmd prints as seconds.fraction (others: a plain counter)
USEC_CLOCKS = ("local", "global", "uptime", "perf", "tai", "x86-tsc-nsec")

#: lines per batch handed out by :func:`raw_report_batches` (about)
BATCH = 8192
#: lines a CPU renders ahead (whole pages): the merge's unit of work
FILL = 512

# The time column per layout: its % template and the expressions of its two numbers.
_TIMES = {
    "nsec": (" %5d.%09d:", "ts // 1000000000", "ts % 1000000000"),
    "usec": (" %5d.%06d:", "(ts + 500) // 1000000000", "(ts + 500) // 1000 % 1000000"),
    "counter": ("%5d.%012d:", "ts // 1000000000000", "ts % 1000000000000"),
}


def _usecs(clock: str, tsc2nsec: bool) -> bool:
    return tsc2nsec or clock in USEC_CLOCKS or clock.startswith("mono")


def raw_report_lines(trace: Trace, *, nsec: bool = True, names: Iterable[str] | None = None,
                     cpus: Iterable[int] | None = None, buffer: str | None = None,
                     ) -> Iterator[str]:
    """Yield the lines (without newline) of ``trace-cmd report -R [-t]`` for ``trace``."""
    for batch in raw_report_batches(trace, nsec=nsec, names=names, cpus=cpus, buffer=buffer):
        yield from batch


def raw_report_batches(trace: Trace, *, nsec: bool = True, names: Iterable[str] | None = None,
                       cpus: Iterable[int] | None = None, buffer: str | None = None,
                       ) -> Iterator[list[str]]:
    """The lines of :func:`raw_report_lines` in lists of about :data:`BATCH` lines.

    :raises TraceFormatError: malformed pages, or an event id without a format
        (after the lines before it).
    """
    info = trace.info
    ids = trace.formats.ids_for(names) if names is not None else None
    instances = [b.name for b in info.buffers if b.name]
    width = max((len(n) for n in instances), default=0)
    printers: dict[str, _Printers] = {}
    streams = []
    for s in trace._streams(ids, cpus, buffer):
        if not instances:
            prefix = ""
        elif s.buffer:
            prefix = f"{s.buffer:>{width}}: "
        else:
            prefix = " " * width + "  "
        clock = next((b.clock for b in info.buffers if b.name == s.buffer), "") or info.clock
        if not _usecs(clock, info.tsc2nsec is not None):
            layout = "counter"
        else:
            layout = "nsec" if nsec else "usec"
        p = printers.get(layout)
        if p is None:
            p = printers[layout] = _Printers(trace, layout)
        streams.append(_LineStream(s, _Heads(info.cmdlines, prefix, s.cpu), p))
    batch = [f"cpus={info.cpus}"]
    done = 0  # lines in the batches handed out
    markers = 0  # lost-events marker lines so far (they are no events)
    for lines, n_markers in _merged_lines(streams):
        if any(p.unknown_seen for p in printers.values()):
            bad = next((k for k, x in enumerate(lines) if isinstance(x, _Unknown)), -1)
            if bad >= 0:
                before = lines[:bad]
                markers += sum(isinstance(x, _Marker) for x in before)
                batch += before
                index = done + len(batch) - 1 - markers  # events before it ("cpus=" is none)
                yield batch
                raise trace._unknown(lines[bad].heads, lines[bad].eid, index)
        batch += lines
        markers += n_markers
        if len(batch) >= BATCH:
            done += len(batch)
            yield batch
            batch = []
    if batch:
        yield batch


class _Marker(str):
    """A ``[instance: ]CPU:N [M EVENTS DROPPED]`` line (no event)."""

    __slots__ = ()


class _Unknown:
    """What the line function of an event id without a format returns (``heads`` says
    the CPU)."""

    __slots__ = ("eid", "heads")

    def __init__(self, eid: int, heads: _Heads) -> None:
        self.eid = eid
        self.heads = heads


class _Heads(dict):
    """``pid -> "[instance: ]comm-pid [cpu]"`` for one CPU, made on first use."""

    def __init__(self, cmdlines: dict[int, str], prefix: str, cpu: int) -> None:
        super().__init__()
        self.cmdlines = cmdlines
        self.prefix = prefix
        self.cpu = cpu
        self.col = "[%03d]" % cpu  # noqa: UP031 (C printf)

    def __missing__(self, pid: int) -> str:
        comm = "<idle>" if pid == 0 else self.cmdlines.get(pid, "<...>")
        head = self[pid] = f"{self.prefix}{comm:>16}-{pid:<5} {self.col}"
        return head


class _Printers(dict):
    """Line functions by event id for one time layout, compiled on first use."""

    def __init__(self, trace: Trace, layout: str) -> None:
        super().__init__()
        self.trace = trace
        self.layout = layout
        self.unknown_seen = False

    def __missing__(self, eid: int):
        formats = self.trace.formats
        if eid in formats:
            line = _compile_line(self.trace, formats.get(eid), self.layout)
        else:
            self.unknown_seen = True

            def line(buf: Any, off: int, size: int, ts: int, heads: _Heads) -> _Unknown:
                return _Unknown(eid, heads)
        self[eid] = line
        return line


class _LineStream:
    """One CPU's records as finished lines, a few pages (about :data:`FILL` lines) at a time.

    ``tss`` and ``lines`` are the loaded records' timestamps and lines, ``i``
    the next one to hand out, ``sorted`` whether the timestamps never go back,
    ``markers`` the positions of lost-events marker lines in ``lines``.
    """

    __slots__ = ("src", "order", "cpu", "heads", "printers", "tss", "lines", "i", "sorted",
                 "markers")

    def __init__(self, src: _Stream, heads: _Heads, printers: _Printers) -> None:
        self.src = src
        self.order = src.order
        self.cpu = src.cpu
        self.heads = heads
        self.printers = printers
        self.tss: list[int] = []
        self.lines: list[Any] = []
        self.i = 0
        self.sorted = True
        self.markers: list[int] = []

    def fill(self) -> bool:
        """Decode and render the next pages; False at the end of the CPU's data."""
        src = self.src
        heads = self.heads
        p = self.printers
        lines: list[Any] = []
        tss: list[int] = []
        markers: list[int] = []
        while len(lines) < FILL and src.fill():
            recs = src.recs
            buf = src.buf
            if recs[0][3] < 0:
                recs = self._lost_marker(recs, lines, tss, markers)
                page_tss = [r[0] for r in recs]
            else:
                page_tss = src.tss
            lines += [p[eid](buf, off, size, ts, heads) for ts, off, size, eid in recs]
            tss += page_tss
        self.lines = lines
        self.tss = tss
        self.markers = markers
        self.sorted = tss == sorted(tss)
        self.i = 0
        return bool(lines)

    def _lost_marker(self, recs: list, lines: list, tss: list, markers: list) -> list:
        """A page that starts with a lost-events marker (always its first record): add the
        marker line (if trace-cmd shows it) and return the page's other records."""
        ts, _off, count, eid = recs[0]
        rest = recs[1:]
        if eid == LOST_SHOWN:
            heads = self.heads
            lost = f"{count} " if count > 0 else ""
            markers.append(len(lines))
            lines.append(_Marker(f"{heads.prefix}CPU:{self.cpu} [{lost}EVENTS DROPPED]"))
            tss.append(ts)
            if rest and heads.prefix:
                # trace-cmd prints the instance column, the marker, then the event
                # line without the column
                t, o, n, e = rest[0]
                lines.append(self.printers[e](self.src.buf, o, n, t,
                                              _Heads(heads.cmdlines, "", self.cpu)))
                tss.append(t)
                rest = rest[1:]
        return rest


def _merged_lines(streams: list[_LineStream]) -> Iterator[tuple[list, int]]:
    """``(lines, markers)`` in trace-cmd's merge order (:func:`ptreplay.trace._merge`).

    trace-cmd always prints the record with the smallest timestamp next, ties
    going to the lower stream. While every loaded record's timestamps never go
    back, that order is a stable sort by timestamp of the streams taken in
    order, and what can be put in order now is known: let L be the stream
    whose loaded records end first (at ``end``); nothing L has not loaded yet
    comes before (``end``, L), so every loaded record before (``end``, L) in
    that order can go, plus all of L's. A stream whose timestamps go back
    (absolute time stamps) hands the rest of the trace to the record-by-record
    merge. ``markers`` counts the lost-events marker lines in ``lines``.
    """
    live = [s for s in streams if s.fill()]
    while len(live) > 1:
        if not all(s.sorted for s in live):
            for s, i, j in _merge(live):
                yield s.lines[i:j], sum(i <= m < j for m in s.markers)
            return
        lim = live[0]
        end = lim.tss[-1]
        for s in live:
            if s.tss[-1] < end:
                lim, end = s, s.tss[-1]
        lim_order = lim.order
        keys: list[int] = []
        lines: list = []
        markers = parts = 0
        for s in live:
            i = s.i
            tss = s.tss
            if s is lim:
                j = len(tss)
            elif s.order < lim_order:
                j = bisect_right(tss, end, i)
            else:
                j = bisect_left(tss, end, i)
            if j > i:
                parts += 1
                if i == 0 and j == len(tss):
                    keys += tss
                    lines += s.lines
                else:
                    keys += tss[i:j]
                    lines += s.lines[i:j]
                if s.markers:
                    markers += sum(i <= m < j for m in s.markers)
                s.i = j
        if parts > 1:
            lines = [lines[k] for k in sorted(range(len(keys)), key=keys.__getitem__)]
        yield lines, markers
        live = [s for s in live if s.i < len(s.tss) or s.fill()]
    for s in live:
        while True:
            yield (s.lines[s.i:] if s.i else s.lines), sum(m >= s.i for m in s.markers)
            if not s.fill():
                break


def _compile_line(trace: Trace, fmt: Any, layout: str):
    """``(buf, off, size, ts, heads) -> line`` for one event format.

    The head (``heads[pid]``, time, name) and the fields are one ``%``
    template; ``common_pid`` and the printed numbers are one ``struct`` read.
    Records too short for that struct take ``short``, which renders field by
    field (:attr:`RawFields.slow`), as trace-cmd does.
    """
    info = trace.info
    endian = "<" if info.little_endian else ">"
    plan = raw_fields(fmt, info.little_endian, info.long_size, trace.find_function,
                      trace.find_printk)
    name = fmt.name
    name_col = f" {name}: " + (" " * (20 - len(name)) if len(name) < 20 else "")
    time_t, sec, frac = _TIMES[layout]
    head = "%s" + time_t + name_col.replace("%", "%%")
    head_args = f"heads[pid], {sec}, {frac}, "
    pf = fmt.by_name.get("common_pid")
    pid_code = {1: "b", 2: "h", 4: "i", 8: "q"}.get(pf.size) if pf is not None else None
    codes = list(plan.codes)
    if pid_code:
        codes.append((pf.offset, pid_code, "pid"))
    env: dict[str, Any] = {"slow": plan.slow, **plan.env,
                           "pid_at": _pid_reader(pid_code, pf.offset if pid_code else 0, endian)}
    strip = "    return text[:-1] if text[-1:] == '\\n' else text"  # a print event's last \n
    short = ["def short(buf, off, size, ts, heads):",
             "    pid = pid_at(buf, off)",
             f"    text = {head + '%s'!r} % ({head_args}slow(buf, off, size))",
             strip]
    exec("\n".join(short), env)  # noqa: S102 - code built from parsed format fields only
    layout_ = struct_format(codes, endian)
    if layout_ is None:  # overlapping fields: no single struct
        return env["short"]
    sfmt, names = layout_
    st = struct.Struct(sfmt)
    env["unpack"] = st.unpack_from
    src = ["def line(buf, off, size, ts, heads):"]
    if names:
        src += [f"    if size < {st.size}:",
                "        return short(buf, off, size, ts, heads)",
                f"    {', '.join(names)}, = unpack(buf, off)"]
    if not pid_code:
        src.append("    pid = 0")
    values = "".join(e + ", " for e in plan.exprs)
    src.append(f"    text = {head + plan.template!r} % ({head_args}{values})")
    src.append(strip if plan.str_last else "    return text")
    exec("\n".join(src), env)  # noqa: S102 - code built from parsed format fields only
    return env["line"]


def _pid_reader(code: str | None, offset: int, endian: str):
    """``(buf, off) -> common_pid`` (0 for a format without it)."""
    if code is None:
        return lambda buf, off: 0
    unpack = struct.Struct(endian + code).unpack_from
    return lambda buf, off: unpack(buf, off + offset)[0]
