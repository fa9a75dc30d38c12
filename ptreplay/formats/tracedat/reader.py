"""Reading trace-cmd.dat files, versions 6 and 7 (the container; events are decoded elsewhere).

:class:`TraceDatFile` opens a file, checks its initial format, reads every
metadata piece (headers, event formats, saved cmdlines, options, buffers and
their per-CPU data locations) and hands out the ring-buffer pages of one CPU
of one buffer, lazily (v7 chunks are decompressed one at a time). Large
metadata (kallsyms, printk formats) is located, not loaded, until asked for.

Every inconsistency raises :class:`~ptreplay.errors.TraceFormatError` with
the file offset; sizes are checked against the file before anything is read.
"""

from __future__ import annotations

import mmap
import os

from ptreplay.errors import TraceFormatError
from ptreplay.formats.layout import Layout, LayoutError
from ptreplay.formats.tracedat import layouts as _derived
from ptreplay.formats.tracedat.compress import Codec, codec_for
from ptreplay.formats.tracedat.options import SEC_FL_COMPRESS, Option
from ptreplay.values import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

__all__ = ["TraceDatFile", "BufferData", "CpuData", "RawOption", "parse_cpustat"]


class CpuData(Value):
    """Where one CPU's ring-buffer pages are: ``offset``/``size`` in the file."""

    __slots__ = _fields = ("cpu", "offset", "size")

    def __init__(self, cpu: int, offset: int, size: int) -> None:
        self.cpu = cpu
        self.offset = offset
        self.size = size


class BufferData(Value):
    """One ftrace buffer (the top one is named "") and its CPUs."""

    __slots__ = _fields = ("name", "clock", "page_size", "cpus", "compressed", "section_offset")

    def __init__(self, name: str, clock: str, page_size: int, cpus: list[CpuData],
                 compressed: bool = False, section_offset: int | None = None) -> None:
        self.name = name
        self.clock = clock
        self.page_size = page_size
        self.cpus = cpus
        self.compressed = compressed
        self.section_offset = section_offset


class RawOption(Value):
    """One option as stored: id, payload, and where it was."""

    __slots__ = _fields = ("id", "data", "offset")

    def __init__(self, id: int, data: bytes, offset: int) -> None:
        self.id = id
        self.data = data
        self.offset = offset


class _Lazy(Value):
    """A metadata blob not read yet: where it is, and how (``section``: v7, ``offset``
    is a section header)."""

    __slots__ = _fields = ("offset", "size", "section", "width")

    def __init__(self, offset: int, size: int, section: bool = False, width: int = 4) -> None:
        self.offset = offset
        self.size = size
        self.section = section
        self.width = width


class Layouts:
    """The derived layouts of one byte order, by schema name (``s.u64``, ``s.section_header``)."""

    def __init__(self, steps: dict[str, tuple]) -> None:
        for name, layout_steps in steps.items():
            setattr(self, name, Layout(layout_steps))

    def __getattr__(self, name: str) -> Layout:
        # only reached for names that are not set above; says their type to type checkers
        raise AttributeError(name)


_LAYOUTS: dict[bool, Layouts] = {}


def layouts(little: bool) -> Layouts:
    """The struct layouts derived from :func:`ptreplay.formats.tracedat.schema.schemas`."""
    s = _LAYOUTS.get(little)
    if s is None:
        s = _LAYOUTS[little] = Layouts(_derived.LITTLE if little else _derived.BIG)
    return s


def file_header() -> Layout:
    """The derived layout of :data:`ptreplay.formats.tracedat.schema.FileHeader`."""
    return Layout(_derived.FILE_HEADER)


def parse_cpustat(text: str) -> dict[str, Any]:
    """The ``per_cpu/cpuN/stats`` text as a dict (ints where the value is an int)."""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        key, _, val = line.partition(":")
        val = val.strip()
        try:
            out[key.strip()] = int(val)
        except ValueError:
            out[key.strip()] = val
    return out


class _Reader:
    """Bounded reads from a bytes-like object; errors say the absolute offset."""

    __slots__ = ("data", "pos", "end", "source", "base")

    def __init__(self, data: Any, pos: int, end: int, source: str, base: int = 0) -> None:
        self.data = data
        self.pos = pos
        self.end = end
        self.source = source
        self.base = base  # absolute file offset of data[0] (for decompressed blocks)

    def where(self, pos: int | None = None) -> int:
        return self.base + (self.pos if pos is None else pos)

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.end:
            raise TraceFormatError(
                f"truncated {what}: needs {n} bytes, {max(self.end - self.pos, 0)} left",
                self.source, offset=self.where())

    def parse(self, layout: Layout, what: str) -> Any:
        if layout.size is not None:
            self.need(layout.size, what)
        try:
            val, self.pos = layout.parse(self.data, self.pos, self.end)
        except LayoutError:
            raise TraceFormatError(f"malformed {what}", self.source,
                                   offset=self.where()) from None
        return val

    def take(self, n: int, what: str) -> bytes:
        self.need(n, what)
        out = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return out

    def cstring(self, what: str, limit: int = 4096) -> str:
        stop = min(self.end, self.pos + limit)
        idx = self.data.find(b"\0", self.pos, stop)
        if idx < 0:
            raise TraceFormatError(f"unterminated {what}", self.source, offset=self.where())
        out = bytes(self.data[self.pos:idx]).decode("utf-8", "replace")
        self.pos = idx + 1
        return out


# CPU data read through the mapping is released every this many bytes (see _release)
_RELEASE_STEP = 1 << 20


class TraceDatFile:
    """An open trace.dat file (see the module docstring).

    :param path: the file.
    :raises TraceFormatError: on any malformed input.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.source = self.path
        self._file = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        try:
            self.file_size = os.fstat(self._file.fileno()).st_size
            self.data: Any = (mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
                              if self.file_size else b"")
            self._init()
        except BaseException:
            self.close()
            raise

    # -- lifetime -------------------------------------------------------

    def close(self) -> None:
        """Release the file (pages handed out before stay valid only as copies)."""
        data = getattr(self, "data", None)
        if isinstance(data, mmap.mmap):
            try:
                data.close()
            except BufferError:
                pass
        self.data = b""
        if self._file:
            self._file.close()

    # -- parsing --------------------------------------------------------

    def _init(self) -> None:
        r = _Reader(self.data, 0, self.file_size, self.source)
        if self.file_size < 3 or bytes(self.data[:3]) != b"\x17\x08\x44":
            raise TraceFormatError("not a trace-cmd file (bad magic)", self.source, offset=0)
        if bytes(self.data[3:10]) != b"tracing":
            raise TraceFormatError("not a trace-cmd file (bad magic)", self.source, offset=3)
        r.pos = 10
        version_text = r.cstring("file version", 16)
        try:
            self.version = int(version_text)
        except ValueError:
            raise TraceFormatError(f"bad file version {version_text!r}", self.source,
                                   offset=10) from None
        if self.version not in (6, 7):
            raise TraceFormatError(f"unsupported trace-cmd file version {self.version}",
                                   self.source, offset=10)
        r.pos = 0
        r.need(10 + len(version_text) + 1 + 2 + 4, "file header")
        hdr = r.parse(file_header(), "file header")
        if hdr.endian not in (0, 1):
            raise TraceFormatError(f"bad endianness flag {hdr.endian}", self.source,
                                   offset=r.pos - 2)
        if hdr.long_size not in (4, 8):
            raise TraceFormatError(f"bad long size {hdr.long_size}", self.source,
                                   offset=r.pos - 1)
        self.little = hdr.endian == 0
        self.long_size = hdr.long_size
        self.s = layouts(self.little)
        self.page_size = r.parse(self.s.u32, "page size")
        if self.page_size < 64 or self.page_size & (self.page_size - 1) or \
                self.page_size > (1 << 24):
            raise TraceFormatError(f"bad page size {self.page_size}", self.source,
                                   offset=r.pos - 4)
        self.compression = "none"
        self.compression_version = ""
        self.codec: Codec | None = None
        self.header_page = ""
        self.header_event = ""
        self.ftrace_formats: list[str] = []
        self.event_formats: list[tuple[str, str]] = []
        self.kallsyms_loc: _Lazy | None = None
        self.printk_loc: _Lazy | None = None
        self.cmdlines = ""
        self.options: list[RawOption] = []
        self.buffers: list[BufferData] = []
        self.latency = False
        self.cpus = 0
        self.sections: list[tuple[int, int, int, int]] = []  # id, flags, offset, size
        self.strings = b""
        if self.version == 6:
            self._read_v6(r)
        else:
            self._read_v7(r)

    # v6 ---------------------------------------------------------------

    def _read_v6(self, r: _Reader) -> None:
        s = self.s
        start = r.pos
        r.need(12, "header_page")
        if bytes(self.data[r.pos:r.pos + 12]) != b"header_page\0":
            raise TraceFormatError("missing header_page", self.source, offset=r.where())
        r.pos += 12
        size = r.parse(s.u64, "header_page size")
        self.header_page = r.take(size, "header_page").decode("utf-8", "replace")
        r.need(13, "header_event")
        if bytes(self.data[r.pos:r.pos + 13]) != b"header_event\0":
            raise TraceFormatError("missing header_event", self.source, offset=r.where())
        r.pos += 13
        size = r.parse(s.u64, "header_event size")
        self.header_event = r.take(size, "header_event").decode("utf-8", "replace")
        del start
        self._read_ftrace_formats(r)
        self._read_event_formats(r)
        size = r.parse(s.u32, "kallsyms size")
        r.need(size, "kallsyms")
        self.kallsyms_loc = _Lazy(r.pos - 4, size, False, 4)
        r.pos += size
        size = r.parse(s.u32, "printk formats size")
        r.need(size, "printk formats")
        self.printk_loc = _Lazy(r.pos - 4, size, False, 4)
        r.pos += size
        size = r.parse(s.u64, "saved cmdlines size")
        self.cmdlines = r.take(size, "saved cmdlines").decode("utf-8", "replace")
        self.cpus = r.parse(s.u32, "CPU count")
        kind = r.take(10, "data kind")
        has_clock = False
        if kind.startswith(b"options"):
            has_clock = self._read_options_v6(r)
            kind = r.take(10, "data kind")
        if kind.startswith(b"latency"):
            self.latency = True
            raise TraceFormatError("latency (text) trace files are not supported", self.source,
                                   offset=r.where() - 10)
        if not kind.startswith(b"flyrecord"):
            raise TraceFormatError(f"unknown data kind {kind!r}", self.source,
                                   offset=r.where() - 10)
        flycpus = self.cpus
        top = self._read_flyrecord_v6(r, flycpus, "top buffer")
        clock = ""
        if has_clock:
            size = r.parse(s.u64, "trace clock size")
            clock = _clock_of(r.take(size, "trace clock").decode("utf-8", "replace"))
        if not clock:
            clock = self._option_clock() or "local"
        self.buffers.insert(0, BufferData("", clock, self.page_size, top))
        # instances (v6 BUFFER options point at their own "flyrecord" table)
        for opt in self.options:
            if opt.id == Option.BUFFER:
                b = self._parse_option(s.buffer_option_v6, opt, "BUFFER option")
                ir = _Reader(self.data, b.offset, self.file_size, self.source)
                if ir.take(10, "instance data kind")[:9] != b"flyrecord":
                    raise TraceFormatError(f"bad data of buffer {b.name!r}", self.source,
                                           offset=b.offset)
                cpus = self._read_flyrecord_v6(ir, flycpus, f"buffer {b.name!r}")
                self.buffers.append(BufferData(b.name, clock, self.page_size, cpus))

    def _read_flyrecord_v6(self, r: _Reader, cpus: int, what: str) -> list[CpuData]:
        r.need(cpus * 16, f"CPU data table of the {what}")
        out = []
        for cpu in range(cpus):
            ent = r.parse(self.s.cpu_entry_v6, "CPU data entry")
            self._check_extent(ent.offset, ent.size, f"CPU {cpu} data of the {what}",
                               r.where() - 16)
            out.append(CpuData(cpu, ent.offset, ent.size))
        return out

    def _check_extent(self, offset: int, size: int, what: str, where: int) -> None:
        if size and offset + size > self.file_size:
            lost = offset + size - self.file_size
            raise TraceFormatError(
                f"file truncated: {what} needs {offset + size} bytes, file has "
                f"{self.file_size} ({lost} bytes of trace data lost)", self.source, offset=where)

    def _read_options_v6(self, r: _Reader) -> bool:
        has_clock = False
        while True:
            oid = r.parse(self.s.u16, "option id")
            if oid == Option.DONE:
                break
            off = r.where()
            size = r.parse(self.s.u32, "option size")
            data = r.take(size, f"option {oid}")
            self.options.append(RawOption(oid, data, off - 2))
            if oid == Option.TRACECLOCK:
                has_clock = True
            if oid == Option.CPUCOUNT and size >= 4:
                self.cpus = max(self.cpus, self.s.u32.parse_bytes(data[:4]))
        return has_clock

    def _read_ftrace_formats(self, r: _Reader) -> None:
        count = r.parse(self.s.u32, "ftrace format count")
        r.need(count * 8, "ftrace formats")
        for _ in range(count):
            size = r.parse(self.s.u64, "ftrace format size")
            self.ftrace_formats.append(r.take(size, "ftrace format").decode("utf-8", "replace"))

    def _read_event_formats(self, r: _Reader) -> None:
        systems = r.parse(self.s.u32, "event system count")
        r.need(systems * 5, "event systems")
        for _ in range(systems):
            name = r.cstring("system name")
            count = r.parse(self.s.u32, "event count")
            r.need(count * 8, f"event formats of {name}")
            for _ in range(count):
                size = r.parse(self.s.u64, "event format size")
                self.event_formats.append(
                    (name, r.take(size, "event format").decode("utf-8", "replace")))

    # v7 ---------------------------------------------------------------

    def _read_v7(self, r: _Reader) -> None:
        s = self.s
        self.compression = r.cstring("compression name", 64)
        self.compression_version = r.cstring("compression version", 64)
        self.codec = codec_for(self.compression, self.source, r.where())
        first_options = r.parse(s.u64, "options offset")
        self._first_section = r.pos
        self._scan_sections(r.pos)
        pending: dict[int, int] = {}
        seen = set()
        off = first_options
        while off:
            if off in seen:
                raise TraceFormatError("options sections form a loop", self.source, offset=off)
            seen.add(off)
            off = self._read_options_v7(off, pending)
        for sec_id, sec_off in pending.items():
            self._read_meta_section(sec_id, sec_off)
        for opt in self.options:
            if opt.id == Option.BUFFER:
                b = self._parse_option(s.buffer_option_v7, opt, "BUFFER option")
                self._add_buffer_v7(b, opt)
            elif opt.id == Option.BUFFER_TEXT:
                self.latency = True
        if not any(b.name == "" for b in self.buffers) and not self.latency:
            # no top buffer: trace-cmd still reads the instances
            pass
        if self.latency and not self.buffers:
            raise TraceFormatError("latency (text) trace files are not supported", self.source,
                                   offset=first_options)

    def _scan_sections(self, pos: int) -> None:
        """Sections follow one another from the end of the header to the end of the file
        (trace-cmd's read_metadata_strings walks them so); one cut short means the file was
        truncated."""
        strings = []
        while pos < self.file_size:
            if pos + 16 > self.file_size:
                raise TraceFormatError(
                    f"file truncated inside a section header ({self.file_size - pos} of 16 "
                    f"bytes)", self.source, offset=pos)
            hdr = self.s.section_header.parse_bytes(bytes(self.data[pos:pos + 16]))
            if hdr.id > Option.BUFFER_TEXT:
                raise TraceFormatError(f"unknown section id {hdr.id}", self.source, offset=pos)
            if pos + 16 + hdr.size > self.file_size:
                raise TraceFormatError(
                    f"file truncated: section {hdr.id} needs {hdr.size} bytes, "
                    f"{self.file_size - pos - 16} left ({pos + 16 + hdr.size - self.file_size} "
                    f"bytes lost)", self.source, offset=pos)
            self.sections.append((hdr.id, hdr.flags, pos, hdr.size))
            if hdr.id == Option.STRINGS:
                strings.append(self._section_payload(pos, "strings"))
            pos += 16 + hdr.size
        self.strings = b"".join(strings)

    def _section_payload(self, off: int, what: str, expect: int | None = None) -> bytes:
        r = _Reader(self.data, off, self.file_size, self.source)
        hdr = r.parse(self.s.section_header, f"{what} section header")
        if expect is not None and hdr.id != expect:
            raise TraceFormatError(f"expected {what} section (id {expect}), found id {hdr.id}",
                                   self.source, offset=off)
        r.need(hdr.size, f"{what} section")
        if hdr.flags & SEC_FL_COMPRESS:
            if self.codec is None:
                raise TraceFormatError(f"compressed {what} section in an uncompressed file",
                                       self.source, offset=off)
            bh = r.parse(self.s.block_header, f"{what} compression header")
            if bh.csize + 8 > hdr.size:
                raise TraceFormatError(
                    f"{what} section: compressed size {bh.csize} exceeds section size "
                    f"{hdr.size}", self.source, offset=r.where() - 8)
            blob = r.take(bh.csize, f"compressed {what}")
            return self.codec.decompress(blob, bh.usize, self.source, r.where() - bh.csize - 8)
        return r.take(hdr.size, f"{what} section")

    def _read_options_v7(self, off: int, pending: dict[int, int]) -> int:
        r = _Reader(self.data, off, self.file_size, self.source)
        hdr = r.parse(self.s.section_header, "options section header")
        if hdr.id != Option.DONE:
            raise TraceFormatError(f"expected an options section, found section id {hdr.id}",
                                   self.source, offset=off)
        if hdr.flags & SEC_FL_COMPRESS:
            payload = self._section_payload(off, "options")
            pr = _Reader(payload, 0, len(payload), self.source, base=off + 24)
        else:
            r.need(hdr.size, "options section")
            pr = _Reader(self.data, r.pos, r.pos + hdr.size, self.source)
        while True:
            where = pr.where()
            oid = pr.parse(self.s.u16, "option id")
            size = pr.parse(self.s.u32, "option size")
            data = pr.take(size, f"option {oid}")
            if oid == Option.DONE:
                if size < 8:
                    raise TraceFormatError("short DONE option", self.source, offset=where)
                return self.s.u64.parse_bytes(data[:8])
            self.options.append(RawOption(oid, data, where))
            if Option.HEADER_INFO <= oid <= Option.CMDLINES and size >= 8:
                pending[oid] = self.s.u64.parse_bytes(data[:8])
            elif oid == Option.CPUCOUNT and size >= 4:
                self.cpus = self.s.u32.parse_bytes(data[:4])

    def _read_meta_section(self, sec_id: int, off: int) -> None:
        names = {Option.HEADER_INFO: "headers", Option.FTRACE_EVENTS: "ftrace events",
                 Option.EVENT_FORMATS: "event formats", Option.KALLSYMS: "kallsyms",
                 Option.PRINTK: "printk", Option.CMDLINES: "cmdlines"}
        what = names[sec_id]
        if sec_id in (Option.KALLSYMS, Option.PRINTK):
            r = _Reader(self.data, off, self.file_size, self.source)
            hdr = r.parse(self.s.section_header, f"{what} section header")
            if hdr.id != sec_id:
                raise TraceFormatError(f"expected {what} section (id {sec_id}), found id "
                                       f"{hdr.id}", self.source, offset=off)
            r.need(hdr.size, f"{what} section")
            loc = _Lazy(off, hdr.size, True, 4)
            if sec_id == Option.KALLSYMS:
                self.kallsyms_loc = loc
            else:
                self.printk_loc = loc
            return
        payload = self._section_payload(off, what, sec_id)
        base = off + 16
        pr = _Reader(payload, 0, len(payload), self.source, base=base)
        if sec_id == Option.HEADER_INFO:
            if pr.take(12, "header_page tag") != b"header_page\0":
                raise TraceFormatError("missing header_page", self.source, offset=base)
            size = pr.parse(self.s.u64, "header_page size")
            self.header_page = pr.take(size, "header_page").decode("utf-8", "replace")
            if pr.take(13, "header_event tag") != b"header_event\0":
                raise TraceFormatError("missing header_event", self.source, offset=pr.where())
            size = pr.parse(self.s.u64, "header_event size")
            self.header_event = pr.take(size, "header_event").decode("utf-8", "replace")
        elif sec_id == Option.FTRACE_EVENTS:
            self._read_ftrace_formats(pr)
        elif sec_id == Option.EVENT_FORMATS:
            self._read_event_formats(pr)
        elif sec_id == Option.CMDLINES:
            size = pr.parse(self.s.u64, "saved cmdlines size")
            self.cmdlines = pr.take(size, "saved cmdlines").decode("utf-8", "replace")

    def _add_buffer_v7(self, b: Any, opt: RawOption) -> None:
        r = _Reader(self.data, b.offset, self.file_size, self.source)
        hdr = r.parse(self.s.section_header, f"flyrecord section of buffer {b.name!r}")
        if hdr.id != Option.BUFFER:
            raise TraceFormatError(f"buffer {b.name!r}: expected a flyrecord section, found id "
                                   f"{hdr.id}", self.source, offset=b.offset)
        compressed = bool(hdr.flags & SEC_FL_COMPRESS)
        if compressed and self.codec is None:
            raise TraceFormatError("compressed CPU data in an uncompressed file", self.source,
                                   offset=b.offset)
        page_size = b.page_size
        if page_size < 64 or page_size & (page_size - 1) or page_size > (1 << 24):
            raise TraceFormatError(f"buffer {b.name!r}: bad page size {page_size}", self.source,
                                   offset=opt.offset)
        cpus: list[CpuData] = []
        for c in b.cpus:
            self._check_extent(c.offset, c.size, f"CPU {c.cpu} data of buffer {b.name!r}",
                               opt.offset)
            cpus.append(CpuData(c.cpu, c.offset, c.size))
        self.buffers.append(BufferData(b.name, b.clock, page_size, cpus, compressed, b.offset))

    def _parse_option(self, layout: Layout, opt: RawOption, what: str) -> Any:
        try:
            return layout.parse_bytes(opt.data)
        except LayoutError:
            raise TraceFormatError(f"malformed {what}", self.source, offset=opt.offset) from None

    def _option_clock(self) -> str:
        for opt in self.options:
            if opt.id == Option.TRACECLOCK:
                return _clock_of(opt.data.decode("utf-8", "replace"))
        return ""

    # -- lazily read metadata --------------------------------------------

    def _lazy_text(self, loc: _Lazy | None, what: str) -> str:
        if loc is None:
            return ""
        if not loc.section:
            return bytes(self.data[loc.offset + 4:loc.offset + 4 + loc.size]).decode(
                "utf-8", "replace")
        payload = self._section_payload(loc.offset, what)
        r = _Reader(payload, 0, len(payload), self.source, base=loc.offset + 16)
        size = r.parse(self.s.u32, f"{what} size")
        return r.take(size, what).decode("utf-8", "replace")

    def kallsyms(self) -> str:
        """The stored /proc/kallsyms text (read on first use)."""
        return self._lazy_text(self.kallsyms_loc, "kallsyms")

    def printk_formats(self) -> str:
        """The stored printk_formats text (read on first use)."""
        return self._lazy_text(self.printk_loc, "printk formats")

    @property
    def kallsyms_size(self) -> int:
        """Bytes of kallsyms as stored (compressed size for a compressed v7 section)."""
        return self.kallsyms_loc.size if self.kallsyms_loc else 0

    # -- CPU data --------------------------------------------------------

    def cpu_pages(self, buf: BufferData, cpu: CpuData) -> Iterator[tuple[Any, int, int]]:
        """Yield ``(data, base, file_offset)`` for each page of one CPU, in order.

        ``data[base:base + page_size]`` is the page. For compressed data,
        ``file_offset`` is the offset of the chunk that holds the page.
        """
        ps = buf.page_size
        if not cpu.size:
            return
        if not buf.compressed:
            end = cpu.offset + cpu.size
            pos = done = cpu.offset
            while pos < end:
                if pos + ps > self.file_size:
                    raise TraceFormatError(
                        f"file truncated inside a page of CPU {cpu.cpu} "
                        f"({pos + ps - self.file_size} bytes of the page missing)",
                        self.source, offset=pos)
                yield self.data, pos, pos
                pos += ps
                if pos - done >= _RELEASE_STEP:
                    done = self._release(done, pos)
            return
        yield from self._chunk_pages(buf, cpu)

    def _release(self, start: int, end: int) -> int:
        """Drop this process's mapping of file bytes ``[start, end)`` already read.

        The pages stay in the page cache (and fault back in if read again);
        without this, every byte of the file read once would stay in the
        process's resident set, and RSS would grow with the trace length.
        Returns the page-aligned offset up to which the mapping was dropped.
        """
        lo = start & ~(mmap.PAGESIZE - 1)
        hi = end & ~(mmap.PAGESIZE - 1)
        if hi > lo and isinstance(self.data, mmap.mmap):
            self.data.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
        return max(hi, start)

    def _chunk_pages(self, buf: BufferData, cpu: CpuData) -> Iterator[tuple[Any, int, int]]:
        assert self.codec is not None
        # the stored size counts the chunks, not the 4-byte chunk count before them
        end = cpu.offset + 4 + cpu.size
        if end > self.file_size:
            raise TraceFormatError(
                f"file truncated: CPU {cpu.cpu} data needs {end} bytes, file has "
                f"{self.file_size} ({end - self.file_size} bytes of trace data lost)",
                self.source, offset=cpu.offset)
        r = _Reader(self.data, cpu.offset, end, self.source)
        count = r.parse(self.s.u32, f"chunk count of CPU {cpu.cpu}")
        if count * 8 > cpu.size:
            raise TraceFormatError(f"CPU {cpu.cpu}: {count} chunks cannot fit in {cpu.size} "
                                   f"bytes", self.source, offset=cpu.offset)
        ps = buf.page_size
        done = cpu.offset
        for i in range(count):
            if r.pos - done >= _RELEASE_STEP:
                done = self._release(done, r.pos)
            where = r.where()
            ch = r.parse(self.s.chunk_header, f"chunk {i} header of CPU {cpu.cpu}")
            if r.pos + ch.csize > r.end:
                raise TraceFormatError(
                    f"CPU {cpu.cpu} chunk {i}: {ch.csize} compressed bytes run past the CPU "
                    f"data ({r.end - r.pos} left)", self.source, offset=where)
            blob = r.take(ch.csize, "chunk")
            data = self.codec.decompress(blob, ch.usize, self.source, where)
            if len(data) % ps:
                raise TraceFormatError(
                    f"CPU {cpu.cpu} chunk {i}: {len(data)} bytes is not a whole number of "
                    f"{ps}-byte pages", self.source, offset=where)
            for base in range(0, len(data), ps):
                yield data, base, where


def _clock_of(text: str) -> str:
    """The selected clock in a trace_clock text ("[local] global ..." -> "local")."""
    for word in text.split():
        if word.startswith("["):
            return word.strip("[]")
    return ""
