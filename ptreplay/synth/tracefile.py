"""Writing a synthetic trace.dat: the formats a capture-kit recording embeds, then events.

:class:`TraceSink` sets up a :class:`~ptreplay.formats.tracedat.writer.TraceDatWriter`
the way ``trace-cmd record -e kprobes -e kvm:...`` would: the exact
``format`` text of every probe of the series' kprobe set and of every kvm:*
tracepoint of the series (:mod:`ptreplay.capture.catalog`), the
``ptreplay:stage2_pte_store`` instrumentation tracepoint when the trace uses
it, ftrace's ``print`` event (``trace_marker`` notes), the UNAME option with
the kernel release, the kernel symbols the probes point into (KALLSYMS), the
tasks' command names and per-CPU statistics. Events go in as
``(ts, cpu, pid, name, fields)``, packed with ``struct`` packers derived
from their formats, into spooled pages: memory stays flat in trace length.
"""

from __future__ import annotations

import os
from typing import Any

from ptreplay import __version__
from ptreplay.capture.catalog import (
    event_format,
    load_instrumentation,
    load_probe_set,
    load_tracepoints,
)
from ptreplay.capture.formats import Field, format_text
from ptreplay.formats.tracedat.writer import TraceDatWriter, build_event
from ptreplay.synth.kernel import KernelImage

__all__ = ["TraceSink", "PRINT_FORMAT_ID", "print_format"]

#: ftrace's ``print`` event id (TRACE_PRINT in kernel/trace/trace.h).
PRINT_FORMAT_ID = 5
_TRACEPOINT_BASE = 1100  # ids the kernel gave the kvm:* events (about; dynamic in reality)
_KPROBE_BASE = 1200
_INSTRUMENTATION_BASE = 1900


def print_format() -> str:
    """The ``format`` of ftrace's ``print`` event (``trace_marker`` writes) on arm64."""
    fields = (Field("unsigned long", "ip", 8, 8, False),
              Field("char", "buf", 16, 0, False, array=1, show_len=False))
    return format_text("print", PRINT_FORMAT_ID, fields, '"%ps: %s", (void *)REC->ip, REC->buf')


class TraceSink:
    """A trace.dat being written (see the module docstring).

    :param image: the synthetic kernel.
    :param version: trace.dat version (6 or 7).
    :param compression: v7 compression (``zstd`` or ``None``).
    :param cpus: number of CPUs the trace has.
    :param instrumented: embed the ``ptreplay:stage2_pte_store`` format.
    """

    def __init__(self, image: KernelImage, *, version: int = 7, compression: str | None = None,
                 cpus: int = 2, instrumented: bool = False) -> None:
        self.image = image
        w = self.writer = TraceDatWriter(version, compression if version == 7 else None,
                                         spool=True)
        w.uname = image.uname
        w.tracer_version = f"ptreplay gen {__version__}"
        w.kallsyms = image.kallsyms()
        w.cpu_count = cpus
        self.cpus = cpus
        series = image.series
        w.add_event_format("ftrace", print_format())
        for i, name in enumerate(load_tracepoints(series)):
            w.add_event_format("kvm", event_format(series, name, _TRACEPOINT_BASE + i))
        for i, entry in enumerate(load_probe_set(series).entries):
            name = entry.definition.event
            w.add_event_format("kprobes", event_format(series, name, _KPROBE_BASE + i))
        if instrumented:
            for i, name in enumerate(load_instrumentation()):
                w.add_event_format("ptreplay",
                                   event_format(series, name, _INSTRUMENTATION_BASE + i))
        self._packers: dict[str, Any] = {}
        self._adders: dict[int, Any] = {}
        self.count = 0
        self.per_cpu = [0] * cpus
        self.first_ts: list[int | None] = [None] * cpus
        self.last_ts = [0] * cpus

    def _packer(self, name: str) -> Any:
        fmt = self.writer.formats[name]
        names = tuple(f.name for f in fmt.fields)
        packer = self.writer.event_packer(name, names)
        entry = self._packers[name] = (packer, names)
        return entry

    def emit(self, ts: int, cpu: int, pid: int, name: str, fields: dict[str, int]) -> int:
        """Write one event; returns its index (0-based, in trace order)."""
        entry = self._packers.get(name) or self._packer(name)
        packer, names = entry
        get = fields.get
        payload = packer(pid, *[get(n, 0) for n in names])
        add = self._adders.get(cpu)
        if add is None:
            add = self._adders[cpu] = self.writer._packer("", cpu).add
        add(ts, payload)
        index = self.count
        self.count = index + 1
        self.per_cpu[cpu] += 1
        if self.first_ts[cpu] is None:
            self.first_ts[cpu] = ts
        self.last_ts[cpu] = ts
        return index

    def mark(self, ts: int, cpu: int, pid: int, text: str) -> int:
        """A ``trace_marker`` write: ftrace ``print`` event with ``text`` (a newline is added,
        as ``tracing_mark_write`` does)."""
        fmt = self.writer.formats["print"]
        payload = build_event(fmt, {"ip": self.image.addr("tracing_mark_write")}, pid=pid,
                              little=self.writer.little)
        payload += text.encode() + b"\n\0"
        self.writer.add_event(cpu, ts, payload)
        return self._count(cpu, ts)

    def _count(self, cpu: int, ts: int) -> int:
        index = self.count
        self.count += 1
        self.per_cpu[cpu] += 1
        if self.first_ts[cpu] is None:
            self.first_ts[cpu] = ts
        self.last_ts[cpu] = ts
        return index

    def finish(self, path: str | os.PathLike[str], cmdlines: dict[int, str]) -> None:
        """Write the file: cmdlines, per-CPU statistics, then everything streamed."""
        w = self.writer
        w.cmdlines.update(cmdlines)
        stats = {}
        for cpu in range(self.cpus):
            n = self.per_cpu[cpu]
            first = self.first_ts[cpu] or 0
            stats[cpu] = (f"CPU: {cpu}\nentries: {n}\noverrun: 0\ncommit overrun: 0\n"
                          f"bytes: {n * 64}\noldest event ts: {_secs(first)}\n"
                          f"now ts: {_secs(self.last_ts[cpu])}\ndropped events: 0\n"
                          f"read events: {n}\n")
        w.cpu_stats[""] = stats
        try:
            w.write(path)
        finally:
            w.close()

    def close(self) -> None:
        """Drop the spooled pages without writing (an error happened)."""
        self.writer.close()


def _secs(ns: int) -> str:
    return f"{ns // 1_000_000_000:>6}.{(ns // 1000) % 1_000_000:06d}"
