"""Render a trace the way ``trace-cmd report -R`` (trace-cmd 3.1.6, libtraceevent 1.7) does.

One line per event::

    [instance: ]%16s-%-5d [%03d] %5llu.%09llu: name:<pad to 20> field=value ...

with ``cpus=N`` first, ``CPU:N [M EVENTS DROPPED]`` lines before the first
event after a loss, the instance column only when the file has instances,
and timestamps in microseconds (rounded: ``(ns + 500) / 1000``) or, with
``nsec=True`` (``-t``), in nanoseconds.

How it is fast: per event format (and time layout) one line function is
compiled, ``(buf, off, size, ts, prefix, cpu) -> str``, that reads
``common_pid`` and every printed number with a single ``struct`` and builds
the whole line with a single ``%`` (:func:`_compile_line`, from
:func:`ptreplay.formats.printfmt.raw_fields`). Each CPU's page is rendered as
soon as it is decoded, so the merge across CPUs (:func:`ptreplay.trace._merge`)
moves runs of finished lines, and :func:`raw_report_batches` hands them out
in lists of thousands. Memory holds one page of lines per CPU, whatever the
length of the trace.
"""

from __future__ import annotations

import struct

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

#: lines per batch handed out by :func:`raw_report_batches`
BATCH = 8192

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
        (after the batch of lines before it).
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
        streams.append(_LineStream(s, prefix, p))
    batch = [f"cpus={info.cpus}"]
    done = 0  # lines handed out before ``batch``
    markers = 0  # lost-events marker lines among the lines so far
    for s, i, j in _merge(streams):
        if i == 0 and s.marker:
            markers += 1
        if i <= s.bad < j:
            batch += s.lines[i:s.bad]
            index = done + len(batch) - 1 - markers  # events before it
            yield batch
            raise trace._unknown(s, s.recs[s.bad_rec][3], index)
        if i == 0 and j == len(s.lines):
            batch += s.lines
        else:
            batch += s.lines[i:j]
        if len(batch) >= BATCH:
            done += len(batch)
            yield batch
            batch = []
    if batch:
        yield batch


class _Printers(dict):
    """Line functions by event id for one time layout, compiled on first use."""

    def __init__(self, trace: Trace, layout: str) -> None:
        super().__init__()
        self.trace = trace
        self.layout = layout
        self.heads: dict[int, str] = {}
        self.unknown_seen = False
        cmdlines = trace.info.cmdlines
        heads = self.heads

        def who(pid: int) -> str:
            comm = "<idle>" if pid == 0 else cmdlines.get(pid, "<...>")
            w = heads[pid] = "%16s-%-5d" % (comm, pid)  # noqa: UP031 (C printf)
            return w
        self.who = who

    def __missing__(self, eid: int):
        formats = self.trace.formats
        if eid not in formats:
            self.unknown_seen = True
            line = _unknown_line
        else:
            line = _compile_line(self.trace, formats.get(eid), self.layout, self.heads,
                                 self.who)
        self[eid] = line
        return line


def _unknown_line(buf: Any, off: int, size: int, ts: int, pre: str, cpu: str) -> None:
    return None


class _LineStream:
    """One CPU's records as finished lines, a page at a time (for :func:`_merge`)."""

    __slots__ = ("src", "order", "cpu", "prefix", "col", "printers", "tss", "lines", "i",
                 "bad", "bad_rec", "recs", "marker")

    def __init__(self, src: _Stream, prefix: str, printers: _Printers) -> None:
        self.src = src
        self.order = src.order
        self.cpu = src.cpu
        self.prefix = prefix
        self.col = "[%03d]" % src.cpu  # noqa: UP031 (C printf)
        self.printers = printers
        self.tss: list[int] = []
        self.lines: list[Any] = []
        self.recs: list = []
        self.i = 0
        self.bad = -1  # index in ``lines`` of an event without a format
        self.bad_rec = -1
        self.marker = False  # ``lines[0]`` is a lost-events marker

    def fill(self) -> bool:
        """Decode and render the next page with lines; False at the end of the CPU's data."""
        src = self.src
        pre = self.prefix
        col = self.col
        p = self.printers
        while src.fill():
            recs = src.recs
            buf = src.buf
            if recs[0][3] >= 0:
                self.lines = [p[eid](buf, off, size, ts, pre, col)
                              for ts, off, size, eid in recs]
                self.tss = src.tss
                self.marker = False
            else:
                self._fill_after_loss(recs, buf)
                if not self.lines:  # only a hidden marker
                    continue
            self.recs = recs
            self.i = 0
            self.bad = self.bad_rec = -1
            if p.unknown_seen and None in self.lines:
                self.bad = self.lines.index(None)
                self.bad_rec = self.bad + (len(recs) - len(self.lines))
            return True
        self.tss = self.lines = self.recs = []
        self.i = 0
        return False

    def _fill_after_loss(self, recs: list, buf: Any) -> None:
        """A page that starts with a lost-events marker (always its first record)."""
        ts, _off, count, eid = recs[0]
        rest = recs[1:]
        p = self.printers
        lines = [p[e](buf, o, n, t, self.prefix, self.col) for t, o, n, e in rest]
        tss = [r[0] for r in rest]
        self.marker = eid == LOST_SHOWN
        if self.marker:
            # trace-cmd prints the instance column, the marker, then the event
            # line without the column
            lost = f"{count} " if count > 0 else ""
            lines.insert(0, f"{self.prefix}CPU:{self.cpu} [{lost}EVENTS DROPPED]")
            tss.insert(0, ts)
            if len(lines) > 1 and lines[1] is not None:
                t, o, n, e = rest[0]
                lines[1] = p[e](buf, o, n, t, "", self.col)
        self.lines = lines
        self.tss = tss


def _compile_line(trace: Trace, fmt: Any, layout: str, heads: dict[int, str], who):
    """``(buf, off, size, ts, prefix, cpu_column) -> line`` for one event format.

    The head (comm-pid from ``heads``/``who``, CPU, time, name) and the fields
    are one ``%`` template; ``common_pid`` and the printed numbers are one
    ``struct`` read. Records too short for that struct take ``short``, which
    renders field by field (:attr:`RawFields.slow`), as trace-cmd does.
    """
    info = trace.info
    endian = "<" if info.little_endian else ">"
    plan = raw_fields(fmt, info.little_endian, info.long_size, trace.find_function,
                      trace.find_printk)
    name = fmt.name
    name_col = f" {name}: " + (" " * (20 - len(name)) if len(name) < 20 else "")
    time_t, sec, frac = _TIMES[layout]
    head = "%s%s %s" + time_t + name_col.replace("%", "%%")
    head_args = f"pre, heads.get(pid) or who(pid), cpu, {sec}, {frac}, "
    pf = fmt.by_name.get("common_pid")
    pid_code = {1: "b", 2: "h", 4: "i", 8: "q"}.get(pf.size) if pf is not None else None
    codes = list(plan.codes)
    if pid_code:
        codes.append((pf.offset, pid_code, "pid"))
    env: dict[str, Any] = {"heads": heads, "who": who, "slow": plan.slow, **plan.env,
                           "pid_at": _pid_reader(pid_code, pf.offset if pid_code else 0, endian)}
    strip = "    return text[:-1] if text[-1:] == '\\n' else text"  # a print event's last \n
    short = ["def short(buf, off, size, ts, pre, cpu):",
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
    src = ["def line(buf, off, size, ts, pre, cpu):"]
    if names:
        src += [f"    if size < {st.size}:",
                "        return short(buf, off, size, ts, pre, cpu)",
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
