"""Render a trace the way ``trace-cmd report -R`` (trace-cmd 3.1.6, libtraceevent 1.7) does.

One line per event::

    [instance: ]%16s-%-5d [%03d] %5llu.%09llu: name:<pad to 20> field=value ...

with ``cpus=N`` first, ``CPU:N [M EVENTS DROPPED]`` lines before the first
event after a loss, the instance column only when the file has instances,
and timestamps in microseconds (rounded: ``(ns + 500) / 1000``) or, with
``nsec=True`` (``-t``), in nanoseconds. Per event format a printer is
compiled once (:func:`ptreplay.formats.printfmt.compile_raw_printer`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

from ptreplay.formats.printfmt import compile_raw_printer
from ptreplay.formats.ringbuffer import LOST_SHOWN
from ptreplay.trace import Trace, _merge

__all__ = ["raw_report_lines", "USEC_CLOCKS"]

#: clocks trace-cmd prints as seconds.fraction (others: a plain counter)
USEC_CLOCKS = ("local", "global", "uptime", "perf", "tai", "x86-tsc-nsec")


def _time_formatter(clock: str, nsec: bool, tsc2nsec: bool):
    usecs = tsc2nsec or clock in USEC_CLOCKS or clock.startswith("mono")
    if usecs and nsec:
        def fmt(ts: int) -> str:
            return " %5d.%09d:" % divmod(ts, 1000000000)  # noqa: UP031 (C printf)
    elif usecs:
        def fmt(ts: int) -> str:
            return " %5d.%06d:" % divmod((ts + 500) // 1000, 1000000)  # noqa: UP031 (C printf)
    else:
        def fmt(ts: int) -> str:
            return "%5d.%012d:" % divmod(ts, 1000000000000)  # noqa: UP031 (C printf)
    return fmt


def raw_report_lines(trace: Trace, *, nsec: bool = True, names: Iterable[str] | None = None,
                     cpus: Iterable[int] | None = None, buffer: str | None = None,
                     ) -> Iterator[str]:
    """Yield the lines (without newline) of ``trace-cmd report -R [-t]`` for ``trace``."""
    info = trace.info
    yield f"cpus={info.cpus}"
    ids = trace.formats.ids_for(names) if names is not None else None
    instances = [b.name for b in info.buffers if b.name]
    width = max((len(n) for n in instances), default=0)
    prefixes = {}
    for b in info.buffers:
        if not instances:
            prefixes[b.name] = ""
        elif b.name:
            prefixes[b.name] = f"{b.name:>{width}}: "
        else:
            prefixes[b.name] = " " * width + "  "
    little = info.little_endian
    long_size = info.long_size
    cmdlines = info.cmdlines
    formats = trace.formats
    printers: dict[int, tuple] = {}
    heads: dict[int, str] = {}
    index = 0
    bare = False
    usecs = {b.name: _usecs(b.clock or info.clock, info.tsc2nsec is not None)
             for b in info.buffers}
    for s, recs, i, j in _merge(trace._streams(ids, cpus, buffer)):
        buf = s.buf
        prefix = prefixes[s.buffer]
        cpu_col = "[%03d]" % s.cpu  # noqa: UP031 (C printf)
        if not usecs[s.buffer]:
            tform, div, mod = "%s%s %s%5d.%012d:%s%s", 1, 1000000000000
        elif nsec:
            tform, div, mod = "%s%s %s %5d.%09d:%s%s", 1, 1000000000
        else:
            tform, div, mod = "%s%s %s %5d.%06d:%s%s", 1000, 1000000
        for k in range(i, j):
            ts, off, size, eid = recs[k]
            if eid < 0:
                if eid == LOST_SHOWN:
                    # trace-cmd prints the instance column, then the marker line,
                    # then the event line without the column
                    if size > 0:
                        yield f"{prefix}CPU:{s.cpu} [{size} EVENTS DROPPED]"
                    else:
                        yield f"{prefix}CPU:{s.cpu} [EVENTS DROPPED]"
                    bare = True
                continue
            p = printers.get(eid)
            if p is None:
                p = printers[eid] = _printer(trace, formats, eid, s, index, little, long_size)
            head, pid_unpack, pid_off, render = p
            pid = pid_unpack(buf, off + pid_off)[0] if pid_unpack else 0
            who = heads.get(pid)
            if who is None:
                comm = "<idle>" if pid == 0 else cmdlines.get(pid, "<...>")
                who = heads[pid] = f"{comm:>16}-{pid:<5}"
            if div == 1:
                sec, frac = divmod(ts, mod)
            else:
                sec, frac = divmod((ts + 500) // 1000, mod)
            line = tform % ("" if bare else prefix, who, cpu_col, sec, frac, head,
                            render(buf, off, size))
            bare = False
            # trace-cmd drops one trailing newline (a print event's buf)
            yield line[:-1] if line[-1:] == "\n" else line
            index += 1


def _usecs(clock: str, tsc2nsec: bool) -> bool:
    return tsc2nsec or clock in USEC_CLOCKS or clock.startswith("mono")


def _printer(trace: Trace, formats, eid: int, s, index: int, little: bool, long_size: int):
    if eid not in formats:
        raise trace._unknown(s, eid, index)
    fmt = formats.get(eid)
    pf = fmt.by_name.get("common_pid")
    pid_unpack = None
    pid_off = 0
    if pf is not None and pf.size in (1, 2, 4, 8):
        code = {1: "b", 2: "h", 4: "i", 8: "q"}[pf.size]
        pid_unpack = struct.Struct(("<" if little else ">") + code).unpack_from
        pid_off = pf.offset
    name = fmt.name
    head = f" {name}: " + (" " * (20 - len(name)) if len(name) < 20 else "")
    render = compile_raw_printer(fmt, little, long_size, trace.find_function,
                                 trace.find_printk)
    return head, pid_unpack, pid_off, render
