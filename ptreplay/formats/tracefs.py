"""Raw copies of tracefs: ``trace_pipe_raw`` pages plus the format files, read like a trace.dat.

Two layouts are recognised (both as users make them by hand):

* ``per_cpu/cpuN/trace_pipe_raw`` with ``events/header_page``,
  ``events/header_event``, ``events/<system>/<event>/format``,
  ``saved_cmdlines``, ``printk_formats``, ``trace_clock`` and per-CPU stats in
  ``stats_cpuN.txt`` or ``per_cpu/cpuN/stats``;
* ``cpuN.trace_pipe_raw`` or ``cpuN.trace_pipe_raw.gz`` (gzip, read as a
  stream) with ``cpuN.stats``, in the folder itself or in its ``raw/``.

The page size and the kernel's long size come from ``events/header_page``
(the ``data`` field ends at the page size, ``commit`` is a long). The byte
order is taken from ``uname.txt`` (``endian=``) when present, else from the
first page (a page header whose commit fits the page).
"""

from __future__ import annotations

import gzip
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ptreplay.errors import TraceFormatError
from ptreplay.formats.tracedat.reader import BufferData, CpuData

__all__ = ["open_tracefs", "TracefsCopy"]

_MAX_TEXT = 64 << 20  # metadata files larger than this are not tracefs files


def _read_text(p: Path) -> str:
    if not p.exists():
        return ""
    if p.stat().st_size > _MAX_TEXT:
        raise TraceFormatError(f"{p.name} is implausibly large ({p.stat().st_size} bytes)",
                               str(p))
    return p.read_text("utf-8", "replace")


class TracefsCopy:
    """The container part of a tracefs copy (the counterpart of ``TraceDatFile``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.source = str(root)
        base = root
        if not (root / "events").is_dir() and (root / "raw" / "events").is_dir():
            base = root / "raw"
        self.base = base
        events = base / "events"
        if not events.is_dir():
            raise TraceFormatError("not a tracefs copy (no events/ folder)", self.source)
        self.header_page = _read_text(events / "header_page")
        self.header_event = _read_text(events / "header_event")
        if not self.header_page:
            raise TraceFormatError("tracefs copy without events/header_page", self.source)
        self.page_size, self.long_size = _page_geometry(self.header_page, str(events /
                                                                              "header_page"))
        self.cpu_files = self._find_cpu_files(base)
        if not self.cpu_files:
            raise TraceFormatError("tracefs copy without per-CPU trace_pipe_raw files",
                                   self.source)
        self.little = self._endianness(base)
        self.event_formats: list[tuple[str, str]] = []
        for fmt in sorted(events.glob("*/*/format")):
            system = fmt.parent.parent.name
            self.event_formats.append((system, _read_text(fmt)))
        self.cmdlines = _read_text(base / "saved_cmdlines")
        self._printk = base / "printk_formats"
        clock_text = _read_text(base / "trace_clock")
        self.trace_clock_text = clock_text.strip()
        m = re.search(r"\[(\S+)\]", clock_text)
        self.clock = m.group(1) if m else "local"
        uname = _read_text(base / "uname.txt").splitlines()
        self.uname = uname[0].strip() if uname else None
        self.stats: dict[int, str] = {}
        for cpu in self.cpu_files:
            for cand in (base / f"stats_cpu{cpu}.txt", base / f"cpu{cpu}.stats",
                         base / "per_cpu" / f"cpu{cpu}" / "stats"):
                if cand.exists():
                    self.stats[cpu] = _read_text(cand)
                    break
        cpus = [CpuData(cpu, 0, p.stat().st_size) for cpu, p in sorted(self.cpu_files.items())]
        self.buffers = [BufferData("", self.clock, self.page_size, cpus)]
        self._open: list[Any] = []

    @staticmethod
    def _find_cpu_files(base: Path) -> dict[int, Path]:
        out: dict[int, Path] = {}
        for p in sorted((base / "per_cpu").glob("cpu*/trace_pipe_raw")):
            m = re.fullmatch(r"cpu(\d+)", p.parent.name)
            if m:
                out[int(m.group(1))] = p
        for p in sorted(base.glob("cpu*.trace_pipe_raw*")):
            m = re.fullmatch(r"cpu(\d+)\.trace_pipe_raw(\.gz)?", p.name)
            if m and int(m.group(1)) not in out:
                out[int(m.group(1))] = p
        return out

    def _endianness(self, base: Path) -> bool:
        m = re.search(r"endian=(\w+)", _read_text(base / "uname.txt"))
        if m:
            return m.group(1) != "big"
        for path in self.cpu_files.values():
            with self._raw_open(path) as f:
                head = f.read(8 + self.long_size)
            if len(head) < 8 + self.long_size:
                continue
            code = "Q" if self.long_size == 8 else "I"
            le = struct.unpack("<" + code, head[8:])[0] & ((1 << 27) - 1)
            be = struct.unpack(">" + code, head[8:])[0] & ((1 << 27) - 1)
            if le <= self.page_size and be > self.page_size:
                return True
            if be <= self.page_size and le > self.page_size:
                return False
        return True

    @staticmethod
    def _raw_open(path: Path):
        if path.name.endswith(".gz"):
            return gzip.open(path, "rb")
        return open(path, "rb")  # noqa: SIM115

    def close(self) -> None:
        for f in self._open:
            f.close()
        self._open.clear()

    def kallsyms(self) -> str:
        return _read_text(self.base / "kallsyms")

    def printk_formats(self) -> str:
        return _read_text(self._printk)

    @property
    def kallsyms_size(self) -> int:
        p = self.base / "kallsyms"
        return p.stat().st_size if p.exists() else 0

    def cpu_pages(self, buf: BufferData, cpu: CpuData) -> Iterator[tuple[Any, int, int]]:
        """Yield ``(page, 0, offset)`` for each page of the CPU's file (streamed)."""
        path = self.cpu_files[cpu.cpu]
        ps = buf.page_size
        f = self._raw_open(path)
        self._open.append(f)
        try:
            offset = 0
            while True:
                try:
                    page = f.read(ps)
                except (OSError, EOFError, gzip.BadGzipFile) as err:
                    raise TraceFormatError(f"unreadable {path.name} ({err})", str(path),
                                           offset=offset) from None
                if not page:
                    return
                if len(page) < ps:
                    raise TraceFormatError(
                        f"{path.name} ends inside a page ({len(page)} of {ps} bytes)",
                        str(path), offset=offset)
                yield page, 0, offset
                offset += ps
        finally:
            f.close()
            if f in self._open:
                self._open.remove(f)


def _page_geometry(text: str, source: str) -> tuple[int, int]:
    fields = {}
    for m in re.finditer(r"field:\s*(.*?)\s+(\w+);\s*offset:(\d+);\s*size:(\d+);", text):
        fields[m.group(2)] = (int(m.group(3)), int(m.group(4)))
    if "data" not in fields or "commit" not in fields:
        raise TraceFormatError("events/header_page without data or commit field", source)
    off, size = fields["data"]
    page = off + size
    long_size = fields["commit"][1]
    if long_size not in (4, 8) or page < 64 or page & (page - 1) or page > (1 << 24):
        raise TraceFormatError(f"implausible header_page (page {page}, long {long_size})",
                               source)
    return page, long_size


def open_tracefs(root: Path):
    """Open a tracefs copy as a :class:`ptreplay.trace.Trace`."""
    from ptreplay.trace import (
        BufferInfo,
        EventFormats,
        Trace,
        TraceInfo,
        _parse_cmdlines,
        _stats_from_text,
    )

    t = TracefsCopy(root)
    stats = tuple(_stats_from_text(cpu, text) for cpu, text in sorted(t.stats.items()))
    b = t.buffers[0]
    buffers = (BufferInfo("", t.clock, t.page_size, tuple(c.cpu for c in b.cpus),
                          {c.cpu: c.size for c in b.cpus}, stats),)
    release = None
    if t.uname:
        parts = t.uname.split()
        release = parts[2] if len(parts) > 2 else None
    info = TraceInfo(
        path=str(root), kind="tracefs", version=None, little_endian=t.little,
        long_size=t.long_size, page_size=t.page_size, compression=None,
        compression_version=None, clock=t.clock,
        cpus=max(t.cpu_files) + 1, buffers=buffers, uname=t.uname, kernel_release=release,
        tracer_version=None, header_page=t.header_page, header_event=t.header_event,
        options=(), tsc2nsec=None, ts_offset=0, cmdlines=_parse_cmdlines(t.cmdlines),
        cpu_stats=stats, kallsyms_size=t.kallsyms_size, trace_clock_text=t.trace_clock_text)
    formats = EventFormats(t.event_formats, t.long_size, str(root))
    return Trace(t, info, formats)
