"""Writing trace-cmd.dat files (v6, and v7 optionally zstd/zlib compressed) from the same schemas.

The writer builds every structure with the Construct schemas the reader
parses with (:mod:`ptreplay.formats.tracedat.schema`,
:mod:`ptreplay.formats.ringbuffer`, :meth:`EventFormat.layout`), so a file
it writes is read back by :func:`ptreplay.trace.open_trace` and by
``trace-cmd report``. Typical use (``ptreplay gen`` does this)::

    w = TraceDatWriter(version=7, compression="zstd")
    w.add_event_format("kprobes", format_text)
    w.cmdlines[268] = "qemu-system-aar"
    payload = w.build_event("kvm_pgtable_stage2_map", {"addr": 0x1000, ...}, pid=268)
    w.add_event(cpu=0, ts=26_074_635_000, payload=payload)
    w.write("synthetic.dat")

Events of one CPU must be added in timestamp order. Pages are packed as the
kernel packs them: small events with ``type_len`` = words, larger ones with
an explicit length, a time extend when a delta does not fit 27 bits (or an
absolute time stamp with ``absolute_ts=True``), missed-events flags on a page
when :meth:`TraceDatWriter.add_missed` was called before its first event.

For long traces, ``TraceDatWriter(spool=True)`` keeps memory flat: each
CPU's finished pages go to a temporary file, :meth:`TraceDatWriter.write`
streams them (compressing chunk by chunk) into the output, and
:meth:`TraceDatWriter.event_packer` gives a ``struct``-based builder of one
event's payload derived from the same format (checked against
:func:`build_event` when made).
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Literal

import construct as cs

from ptreplay.formats.eventformat import EventFormat, parse_format
from ptreplay.formats.ringbuffer import (
    COMMIT_MASK,
    MISSING_EVENTS,
    MISSING_STORED,
    TYPE_DATA_MAX,
    TYPE_LEN_BITS,
    TYPE_TIME_EXTEND,
    TYPE_TIME_STAMP,
    event_header,
    page_header,
)
from ptreplay.formats.tracedat.compress import codec_for
from ptreplay.formats.tracedat.schema import MAGIC, SEC_FL_COMPRESS, Option, schemas

__all__ = ["TraceDatWriter", "PagePacker", "header_page_text", "HEADER_EVENT_TEXT",
           "build_event", "event_packer"]

HEADER_EVENT_TEXT = (
    "# compressed entry header\n"
    "\ttype_len    :    5 bits\n"
    "\ttime_delta  :   27 bits\n"
    "\tarray       :   32 bits\n"
    "\n"
    "\tpadding     : type == 29\n"
    "\ttime_extend : type == 30\n"
    "\ttime_stamp : type == 31\n"
    "\tdata max type_len  == 28\n"
)


def header_page_text(long_size: int, page_size: int) -> str:
    """``events/header_page`` as the kernel writes it for this long and page size."""
    data = 8 + long_size
    return (
        "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
        f"\tfield: local_t commit;\toffset:8;\tsize:{long_size};\tsigned:1;\n"
        "\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
        f"\tfield: char data;\toffset:{data};\tsize:{page_size - data};\tsigned:0;\n"
    )


def build_event(fmt: EventFormat, fields: dict[str, Any], *, pid: int = 0, flags: int = 0,
                preempt_count: int = 0, little: bool = True) -> bytes:
    """The payload of one event of format ``fmt`` (common fields included).

    Integer fields take ints, char arrays take str or bytes, other arrays a
    sequence of ints; ``__data_loc``/``__rel_loc`` fields take str (written
    with a NUL) or bytes, appended after the fixed part. Missing fields are 0.
    """
    values: dict[str, Any] = {}
    dyn: list[tuple[Any, bytes]] = []
    for f in fmt.common_fields + fmt.fields:
        if f.name == "common_type":
            v: Any = fmt.id
        elif f.name == "common_pid":
            v = pid
        elif f.name == "common_flags":
            v = flags
        elif f.name == "common_preempt_count":
            v = preempt_count
        else:
            v = fields.get(f.name, None)
        if f.is_dynamic:
            if isinstance(v, str):
                raw = v.encode() + b"\0"
            elif v is None:
                raw = b"\0" if f.is_string else b""
            elif isinstance(v, (bytes, bytearray)):
                raw = bytes(v)
            else:
                es = f.elementsize or 1
                raw = b"".join(int(x).to_bytes(es, "little" if little else "big",
                                               signed=f.signed) for x in v)
            dyn.append((f, raw))
            values[f.name] = 0
            continue
        sub = fmt.field_subcon(f, little)
        if v is None:
            if isinstance(sub, cs.Bytes):
                v = b""
            elif isinstance(sub, cs.Array):
                v = [0] * sub.count
            else:
                v = 0
        if isinstance(sub, cs.Bytes):
            if isinstance(v, str):
                v = v.encode()
            v = bytes(v)[:f.size].ljust(f.size, b"\0")
        elif isinstance(sub, cs.Array):
            v = list(v) + [0] * (sub.count - len(v))
        values[f.name] = v
    body = bytearray(fmt.layout(little).build(values))
    for f, raw in dyn:
        start = len(body)
        rel = start - (f.offset + f.size) if f.is_relative else start
        order: Literal["little", "big"] = "little" if little else "big"
        if f.size == 2:
            body[f.offset:f.offset + 2] = rel.to_bytes(2, order)
        else:
            body[f.offset:f.offset + 4] = ((len(raw) << 16) | rel).to_bytes(4, order)
        body += raw
    return bytes(body)


def event_packer(fmt: EventFormat, names: Sequence[str], *, little: bool = True
                 ) -> Callable[..., bytes]:
    """A fast builder ``pack(pid, *values) -> payload`` of events of ``fmt``.

    ``values`` are the integer fields ``names``, in that order; every other
    field is 0 (``common_flags`` and ``common_preempt_count`` too). The
    ``struct`` format is derived from the Construct integers of
    :meth:`EventFormat.field_subcon` (as the reader's decoders are), and the
    packer is checked against :func:`build_event` before it is returned.

    :raises ValueError: a field is not a plain integer (arrays, strings,
        ``__data_loc``) or fields overlap.
    """
    by_name = {f.name: f for f in fmt.common_fields + fmt.fields}
    for n in names:
        if n not in by_name:
            raise KeyError(f"event {fmt.full_name} has no field {n!r}")
    slots = []  # (offset, code, source): source -1 type id, -2 pid, -3 zero, else value index
    for f in fmt.common_fields + fmt.fields:
        sub = fmt.field_subcon(f, little)
        if f.is_dynamic or not isinstance(sub, cs.FormatField):
            raise ValueError(f"{fmt.full_name}: field {f.name} is not an integer")
        if f.name == "common_type":
            src = -1
        elif f.name == "common_pid":
            src = -2
        elif f.name in names:
            src = list(names).index(f.name)
        else:
            src = -3
        slots.append((f.offset, sub.fmtstr[1:], src))
    slots.sort()
    parts, pos, order = [], 0, []
    for off, code, src in slots:
        if off < pos:
            raise ValueError(f"{fmt.full_name}: overlapping fields")
        if off > pos:
            parts.append(f"{off - pos}x")
        parts.append(code)
        pos = off + struct.calcsize("<" + code)
        order.append(src)
    st = struct.Struct(("<" if little else ">") + "".join(parts))
    pad = b"\0" * (fmt.fixed_size() - st.size)
    type_id = fmt.id
    exprs = ", ".join({-1: "type_id", -2: "pid", -3: "0"}.get(src, f"values[{src}]")
                      for src in order)
    namespace: dict[str, Any] = {"pack": st.pack, "type_id": type_id, "pad": pad}
    exec(f"def packer(pid, *values):\n    return pack({exprs}){' + pad' if pad else ''}\n",
         namespace)
    packer: Callable[..., bytes] = namespace["packer"]
    sample = [(0x0102030405060708 + 0x1111 * i) & ((1 << (8 * by_name[n].size - 1)) - 1)
              for i, n in enumerate(names)]
    if packer(4242, *sample) != build_event(fmt, dict(zip(names, sample, strict=True)),
                                            pid=4242, little=little):
        raise AssertionError(f"{fmt.full_name}: fast packer disagrees with build_event")
    return packer


def _event_word(little: bool) -> Callable[[int, int], bytes]:
    """``(type_len, time_delta) -> 4 bytes``: the event header word, derived from
    :func:`event_header` and checked against it."""
    if little:
        st = struct.Struct("<I")

        def word(type_len: int, delta: int) -> bytes:
            return st.pack(type_len | (delta << TYPE_LEN_BITS))
    else:
        st = struct.Struct(">I")
        shift = 32 - TYPE_LEN_BITS

        def word(type_len: int, delta: int) -> bytes:
            return st.pack((type_len << shift) | delta)
    ref = event_header(little)
    for t, d in ((1, 0), (TYPE_TIME_EXTEND, COMMIT_MASK), (TYPE_DATA_MAX, 12345)):
        if word(t, d) != ref.build({"type_len": t, "time_delta": d}):
            raise AssertionError("event header word disagrees with its Construct")
    return word


class PagePacker:
    """Packs one CPU's events into ring-buffer pages (see the module docstring)."""

    def __init__(self, page_size: int, long_size: int, little: bool,
                 absolute_ts: bool = False, spool: IO[bytes] | None = None) -> None:
        self.page_size = page_size
        self.long_size = long_size
        self.little = little
        self.absolute_ts = absolute_ts
        self.header = page_header(long_size, little)
        self.ev_header = event_header(little)
        self._word_of = _event_word(little)
        self.u32 = cs.Int32ul if little else cs.Int32ub
        self._u32 = struct.Struct("<I" if little else ">I").pack
        self.long = (cs.Int64ul if little else cs.Int64ub) if long_size == 8 else self.u32
        #: finished pages (in memory), unless ``spool`` (a binary file) takes them.
        self.pages: list[bytes] = []
        self.spool = spool
        self.npages = 0
        self._data = bytearray()
        self._page_ts: int | None = None
        self._last_ts = 0
        self._missed: int | None = None  # for the page being filled
        self._pending_missed: int | None = None
        self._room = page_size - 8 - long_size
        self.count = 0

    def _word(self, type_len: int, delta: int) -> bytes:
        return self._word_of(type_len, delta)

    def add_missed(self, count: int | None) -> None:
        """Mark that ``count`` events (None: unknown) were lost before the next event."""
        self._pending_missed = -1 if count is None else count

    def add(self, ts: int, payload: bytes) -> None:
        """Append one event (``ts`` not before the previous one on this CPU)."""
        if self._page_ts is not None and self._pending_missed is None and not self.absolute_ts:
            # the common case, written out: a small event that fits the page being filled
            delta = ts - self._last_ts
            length = len(payload)
            if 0 <= delta < (1 << 27) and 0 < length <= TYPE_DATA_MAX * 4:
                padded = (length + 3) & ~3
                data = self._data
                reserve = self.long_size if self._missed is not None else 0
                if len(data) + padded + 4 + reserve <= self._room:
                    data += self._word_of(padded >> 2, delta)
                    data += payload
                    if padded != length:
                        data += bytes(padded - length)
                    self._last_ts = ts
                    self.count += 1
                    return
        if ts < self._last_ts and self._page_ts is not None:
            raise ValueError(f"timestamps must not go backwards on a CPU ({ts} < "
                             f"{self._last_ts})")
        length = len(payload)
        padded = (length + 3) & ~3
        if padded <= TYPE_DATA_MAX * 4 and padded > 0:
            event = self._word(padded // 4, 0) + payload + b"\0" * (padded - length)
            size = len(event)
            small = True
        else:
            event = self._word(0, 0) + self._u32(padded + 4) + payload + \
                b"\0" * (padded - length)
            size = len(event)
            small = False
        room = self.page_size - 8 - self.long_size
        if size + 8 > room:
            raise ValueError(f"event of {length} bytes does not fit a {self.page_size}-byte page")
        if self._pending_missed is not None and self._page_ts is not None:
            self._flush()
        if self._page_ts is None:
            self._page_ts = ts
            self._last_ts = ts
            self._missed = self._pending_missed
            self._pending_missed = None
        delta = ts - self._last_ts
        extra = b""
        if self.absolute_ts and delta:
            extra = self._word(TYPE_TIME_STAMP, ts & COMMIT_MASK) + self._u32(
                (ts >> 27) & 0xFFFFFFFF)
            delta = 0
        elif delta >= (1 << 27):
            extra = self._word(TYPE_TIME_EXTEND, delta & COMMIT_MASK) + self._u32(
                delta >> 27)
            delta = 0
        needed = len(extra) + size
        reserve = self.long_size if self._missed not in (None,) else 0
        if len(self._data) + needed + reserve > room:
            self._flush()
            self._page_ts = ts
            self._last_ts = ts
            self._missed = None
            extra = b""
            delta = 0
        hdr = self._word(padded // 4 if small else 0, delta)
        self._data += extra + hdr + event[4:]
        self._last_ts = ts
        self.count += 1

    def _flush(self) -> None:
        if self._page_ts is None:
            return
        commit = len(self._data)
        flags = commit
        tail = b""
        if self._missed is not None:
            flags |= MISSING_EVENTS
            if self._missed >= 0:
                flags |= MISSING_STORED
                tail = self.long.build(self._missed)
        page = self.header.build({"timestamp": self._page_ts, "commit": flags}) + \
            bytes(self._data) + tail
        page += b"\0" * (self.page_size - len(page))
        if self.spool is not None:
            self.spool.write(page)
        else:
            self.pages.append(page)
        self.npages += 1
        self._data = bytearray()
        self._page_ts = None
        self._missed = None

    def finish(self) -> bytes:
        """All pages, concatenated."""
        self._flush()
        if self.spool is not None:
            self.spool.seek(0)
            return self.spool.read()
        return b"".join(self.pages)

    def data_size(self) -> int:
        """Bytes of all pages, the page being filled included (it is finished first)."""
        self._flush()
        return self.npages * self.page_size

    def iter_pages(self, count: int) -> Iterator[bytes]:
        """The finished pages, ``count`` at a time (one chunk in memory at a time)."""
        self._flush()
        step = count * self.page_size
        if self.spool is None:
            data = b"".join(self.pages)
            for i in range(0, len(data), step):
                yield data[i:i + step]
            return
        self.spool.seek(0)
        while True:
            part = self.spool.read(step)
            if not part:
                return
            yield part

    def close(self) -> None:
        """Release the spool file, if any."""
        if self.spool is not None:
            self.spool.close()
            self.spool = None


@dataclass
class _Buffer:
    name: str
    clock: str
    page_size: int
    cpus: dict[int, PagePacker] = field(default_factory=dict)


class TraceDatWriter:
    """Collects formats, metadata and events, then writes a trace.dat (see the module docstring).

    :param version: 6 or 7.
    :param compression: v7 only: None (not compressed), "zstd" or "zlib".
    :param page_size: ring-buffer page size (4096 default; 8192, 16384 ...).
    :param chunk_pages: pages per compressed chunk (v7).
    :param spool: keep finished pages in temporary files rather than in memory
        (memory flat in trace length; :meth:`write` streams them out).
    """

    def __init__(self, version: int = 7, compression: str | None = "zstd", *,
                 little: bool = True, long_size: int = 8, page_size: int = 4096,
                 clock: str = "local", absolute_ts: bool = False,
                 chunk_pages: int = 10, spool: bool = False) -> None:
        if version not in (6, 7):
            raise ValueError("version must be 6 or 7")
        if version == 6 and compression:
            raise ValueError("v6 files are not compressed")
        self.version = version
        self.compression = compression
        self.little = little
        self.long_size = long_size
        self.page_size = page_size
        self.absolute_ts = absolute_ts
        self.chunk_pages = chunk_pages
        self.spool = spool
        self.s = schemas(little)
        self.ftrace_formats: list[str] = []
        self.event_formats: list[tuple[str, str]] = []
        self.formats: dict[str, EventFormat] = {}
        self.cmdlines: dict[int, str] = {}
        self.kallsyms = ""
        self.printk_formats = ""
        self.uname: str | None = "Linux ptreplay 6.1.0 #1 SMP aarch64"
        self.tracer_version: str | None = "ptreplay"
        self.cpu_stats: dict[str, dict[int, str]] = {}
        self.cpu_count: int | None = None
        self.clock_list = ["local", "global", "counter", "uptime", "perf", "mono", "mono_raw",
                           "boot"]
        self.buffers: list[_Buffer] = [_Buffer("", clock, page_size)]

    # -- content -------------------------------------------------------------

    def add_event_format(self, system: str, text: str) -> EventFormat:
        """Add an event format (its ``format`` file text); ``system`` "ftrace" for ftrace ones."""
        fmt = parse_format(text, system, long_size=self.long_size)
        if system == "ftrace":
            self.ftrace_formats.append(text)
        else:
            self.event_formats.append((system, text))
        self.formats[fmt.name] = fmt
        self.formats[f"{system}:{fmt.name}"] = fmt
        return fmt

    def build_event(self, name: str, fields: dict[str, Any], *, pid: int = 0, flags: int = 0,
                    preempt_count: int = 0) -> bytes:
        """Payload of event ``name`` (see :func:`build_event`)."""
        return build_event(self.formats[name], fields, pid=pid, flags=flags,
                           preempt_count=preempt_count, little=self.little)

    def event_packer(self, name: str, names: Sequence[str]) -> Callable[..., bytes]:
        """Fast builder of event ``name`` (see :func:`event_packer`)."""
        return event_packer(self.formats[name], names, little=self.little)

    def add_buffer(self, name: str, clock: str | None = None,
                   page_size: int | None = None) -> None:
        """Add an ftrace instance (v7 only)."""
        if self.version == 6:
            raise ValueError("instances are written in v7 files only")
        self.buffers.append(_Buffer(name, clock or self.buffers[0].clock,
                                    page_size or self.page_size))

    def _packer(self, buffer: str, cpu: int) -> PagePacker:
        b = next((b for b in self.buffers if b.name == buffer), None)
        if b is None:
            raise KeyError(f"no buffer {buffer!r}")
        p = b.cpus.get(cpu)
        if p is None:
            spool = tempfile.TemporaryFile(prefix="ptreplay-pages-") if self.spool else None
            p = b.cpus[cpu] = PagePacker(b.page_size, self.long_size, self.little,
                                         self.absolute_ts, spool)
        return p

    def add_event(self, cpu: int, ts: int, payload: bytes, buffer: str = "") -> None:
        """Append an event (payload from :meth:`build_event`) to a CPU of a buffer."""
        self._packer(buffer, cpu).add(ts, payload)

    def add_missed(self, cpu: int, count: int | None, buffer: str = "") -> None:
        """Record that ``count`` events were lost on ``cpu`` before its next event."""
        self._packer(buffer, cpu).add_missed(count)

    # -- writing ---------------------------------------------------------------

    def _cpus(self, b: _Buffer) -> list[int]:
        top = max((max(x.cpus, default=-1) for x in self.buffers), default=-1)
        n = max(top + 1, self.cpu_count or 0)
        return list(range(n)) if b.name == "" else sorted(b.cpus)

    def _cmdlines_text(self) -> str:
        return "".join(f"{pid} {comm}\n" for pid, comm in sorted(self.cmdlines.items()))

    def _clock_text(self, clock: str) -> str:
        names = list(self.clock_list)
        if clock not in names:
            names.append(clock)
        return " ".join(f"[{n}]" if n == clock else n for n in names) + "\n"

    def _text_options(self) -> list[tuple[int, bytes]]:
        opts: list[tuple[int, bytes]] = []
        top = self.buffers[0]
        opts.append((Option.TRACECLOCK, self._clock_text(top.clock).encode() + b"\0"))
        if self.uname:
            opts.append((Option.UNAME, self.uname.encode() + b"\0"))
        if self.tracer_version:
            opts.append((Option.VERSION, self.tracer_version.encode() + b"\0"))
        for b in self.buffers:
            stats = self.cpu_stats.get(b.name, {})
            if b.name and stats:
                opts.append((Option.CPUSTAT, f"\nBuffer: {b.name}\n\n".encode() + b"\0"))
            for cpu in sorted(stats):
                opts.append((Option.CPUSTAT, stats[cpu].encode() + b"\0"))
        return opts

    def _option(self, oid: int, data: bytes) -> bytes:
        return self.s.option.build({"id": oid, "size": len(data), "data": data})

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the file (streaming the pages: nothing but one chunk is held in memory)."""
        with open(path, "w+b") as f:
            self._write(f)

    def to_bytes(self) -> bytes:
        """The whole file, in memory."""
        out = io.BytesIO()
        self._write(out)
        return out.getvalue()

    def close(self) -> None:
        """Release the spool files (after writing)."""
        for b in self.buffers:
            for p in b.cpus.values():
                p.close()

    def _write(self, out: IO[bytes]) -> None:
        out.write(MAGIC + f"{self.version}\0".encode()
                  + bytes([0 if self.little else 1, self.long_size])
                  + self.s.u32.build(self.page_size))
        if self.version == 6:
            self._write_v6(out)
        else:
            self._write_v7(out)

    def _meta_blobs(self) -> dict[int, bytes]:
        s = self.s
        header = (b"header_page\0" + s.u64.build(len(hp := header_page_text(
            self.long_size, self.page_size).encode())) + hp + b"header_event\0"
            + s.u64.build(len(he := HEADER_EVENT_TEXT.encode())) + he)
        ftrace = s.u32.build(len(self.ftrace_formats)) + b"".join(
            s.sized64.build(t.encode()) for t in self.ftrace_formats)
        systems: dict[str, list[str]] = {}
        for system, text in self.event_formats:
            systems.setdefault(system, []).append(text)
        events = s.u32.build(len(systems)) + b"".join(
            name.encode() + b"\0" + s.u32.build(len(texts))
            + b"".join(s.sized64.build(t.encode()) for t in texts)
            for name, texts in systems.items())
        return {
            Option.HEADER_INFO: header,
            Option.FTRACE_EVENTS: ftrace,
            Option.EVENT_FORMATS: events,
            Option.KALLSYMS: s.sized32.build(self.kallsyms.encode()),
            Option.PRINTK: s.sized32.build(self.printk_formats.encode()),
            Option.CMDLINES: s.sized64.build(self._cmdlines_text().encode()),
        }

    def _write_v6(self, out: IO[bytes]) -> None:
        s = self.s
        blobs = self._meta_blobs()
        for sec in (Option.HEADER_INFO, Option.FTRACE_EVENTS, Option.EVENT_FORMATS,
                    Option.KALLSYMS, Option.PRINTK, Option.CMDLINES):
            out.write(blobs[sec])
        top = self.buffers[0]
        cpus = self._cpus(top)
        out.write(s.u32.build(len(cpus)))
        out.write(b"options  \0")
        for oid, data in self._text_options():
            out.write(self._option(oid, data))
        out.write(s.u16.build(Option.DONE))
        out.write(b"flyrecord\0")
        table_at = out.tell()
        out.write(b"\0" * 16 * len(cpus))
        clock = self._clock_text(top.clock).encode()
        out.write(s.sized64.build(clock))
        entries = []
        for cpu in cpus:
            packer = top.cpus.get(cpu)
            size = packer.data_size() if packer is not None else 0
            pos = _align(out.tell(), self.page_size)
            out.write(b"\0" * (pos - out.tell()))
            if packer is not None:
                for part in packer.iter_pages(256):
                    out.write(part)
            entries.append((pos if size else 0, size))
        end = out.tell()
        out.seek(table_at)
        for off, size in entries:
            out.write(s.cpu_entry_v6.build({"offset": off, "size": size}))
        out.seek(end)

    def _write_v7(self, out: IO[bytes]) -> None:
        s = self.s
        codec = codec_for(self.compression) if self.compression else None
        if codec is None:
            out.write(b"none\0\0")
        else:
            out.write(codec.name.encode() + b"\0" + codec.version.encode() + b"\0")
        options_ptr = out.tell()
        out.write(b"\0" * 8)
        strings = bytearray()

        def string_id(text: str) -> int:
            sid = len(strings)
            strings.extend(text.encode() + b"\0")
            return sid

        def section(sec_id: int, desc: str, payload: bytes, compress: bool) -> int:
            at = out.tell()
            flags = 0
            if compress and codec is not None:
                z = codec.compress(payload)
                payload = s.block_header.build({"csize": len(z), "usize": len(payload)}) + z
                flags = SEC_FL_COMPRESS
            out.write(s.section_header.build({"id": sec_id, "flags": flags,
                                              "description": string_id(desc),
                                              "size": len(payload)}))
            out.write(payload)
            return at

        blobs = self._meta_blobs()
        names = {Option.HEADER_INFO: "headers", Option.FTRACE_EVENTS: "ftrace events",
                 Option.EVENT_FORMATS: "events format", Option.KALLSYMS: "kallsyms",
                 Option.PRINTK: "printk", Option.CMDLINES: "command lines"}
        where: dict[int, int] = {}
        for sec in (Option.HEADER_INFO, Option.FTRACE_EVENTS, Option.EVENT_FORMATS,
                    Option.KALLSYMS, Option.PRINTK, Option.CMDLINES):
            where[sec] = section(sec, names[sec], blobs[sec], True)
        # first options section: metadata locations and text options
        opts = b"".join(self._option(sec, s.u64.build(off)) for sec, off in where.items())
        opts += b"".join(self._option(oid, data) for oid, data in self._text_options())
        top_cpus = self._cpus(self.buffers[0])
        opts += self._option(Option.CPUCOUNT, s.u32.build(self.cpu_count or len(top_cpus)))
        pending_done = self._write_options(out, opts, string_id, options_ptr, first=True)
        for b in self.buffers:
            fly_at = out.tell()
            hdr_at = fly_at
            out.write(b"\0" * 16)
            cpus_entries = []
            for cpu in self._cpus(b):
                packer = b.cpus.get(cpu)
                raw_size = packer.data_size() if packer is not None else 0
                pos = _align(out.tell(), b.page_size)
                out.write(b"\0" * (pos - out.tell()))
                if codec is not None and raw_size:
                    assert packer is not None
                    out.write(s.u32.build(0))  # chunk count, set below
                    nchunks = 0
                    for part in packer.iter_pages(self.chunk_pages):
                        z = codec.compress(part)
                        out.write(s.chunk_header.build({"csize": len(z), "usize": len(part)}))
                        out.write(z)
                        nchunks += 1
                    end = out.tell()
                    out.seek(pos)
                    out.write(s.u32.build(nchunks))
                    out.seek(end)
                    cpus_entries.append({"cpu": cpu, "offset": pos, "size": end - pos - 4})
                else:
                    if packer is not None:
                        for part in packer.iter_pages(256):
                            out.write(part)
                    cpus_entries.append({"cpu": cpu, "offset": pos if raw_size else 0,
                                         "size": raw_size})
            end = out.tell()
            out.seek(hdr_at)
            out.write(s.section_header.build({
                "id": Option.BUFFER, "flags": SEC_FL_COMPRESS if codec is not None else 0,
                "description": string_id(f"buffer flyrecord {b.name}"),
                "size": end - hdr_at - 16}))
            out.seek(end)
            bopt = s.buffer_option_v7.build({"offset": fly_at, "name": b.name,
                                             "clock": b.clock, "page_size": b.page_size,
                                             "cpus": cpus_entries})
            pending_done = self._write_options(out, self._option(Option.BUFFER, bopt),
                                               string_id, pending_done)
        # strings last
        sid = string_id("strings")
        at = out.tell()
        out.write(s.section_header.build({"id": Option.STRINGS, "flags": 0,
                                          "description": sid, "size": len(strings)}))
        out.write(bytes(strings))
        del at

    def _write_options(self, out: IO[bytes], body: bytes, string_id, link_at: int,
                       first: bool = False) -> int:
        """Write an options section; point ``link_at`` (a u64 slot) at it. Returns its DONE slot."""
        s = self.s
        at = out.tell()
        done = self._option(Option.DONE, b"\0" * 8)
        out.write(s.section_header.build({"id": Option.DONE, "flags": 0,
                                          "description": string_id("options"),
                                          "size": len(body) + len(done)}))
        out.write(body)
        slot = out.tell() + 6
        out.write(done)
        end = out.tell()
        out.seek(link_at)
        out.write(s.u64.build(at))
        out.seek(end)
        return slot


def _align(pos: int, page: int) -> int:
    return (pos + page - 1) & ~(page - 1)

