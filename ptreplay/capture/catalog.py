"""The event schemas ptreplay ships, per kernel series (``schemas/``).

``schemas/kprobes/linux-<series>.txt`` holds the kprobe set of one kernel
series in ``kprobe_events`` syntax, each definition under a comment that
names the source line it comes from; ``schemas/tracepoints/kvm.json`` holds
the kvm:* tracepoint layouts with the series each exists in. This module
loads them, checks them (a malformed schema file is a bug of ours and
raises at load time), and maps a kernel version string to a series.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ptreplay.capture.formats import (
    Field,
    TracepointDef,
    format_text,
    kprobe_fields,
    kprobe_print_fmt,
    series_version,
    tracepoint_fields,
)
from ptreplay.capture.probedefs import ProbeDefinition, ProbeSyntaxError, parse_probe_definition
from ptreplay.errors import InputError
from ptreplay.resources import schemas_dir

__all__ = [
    "ProbeEntry",
    "ProbeSet",
    "KernelRelease",
    "UnknownKernelSeries",
    "known_series",
    "parse_kernel_release",
    "series_for",
    "load_probe_set",
    "load_tracepoints",
    "load_instrumentation",
    "EventSchema",
    "event_schema",
    "event_format",
]

_KPROBE_FILE = re.compile(r"linux-(\d+\.\d+)\.txt\Z")


class UnknownKernelSeries(InputError):
    """A kernel version ptreplay has no event schemas for."""


@dataclass(frozen=True)
class ProbeEntry:
    """One probe definition of a schema file with the comment lines just above it.

    A return probe written right under the entry probe of the same function
    shares that entry's comment lines.
    """

    definition: ProbeDefinition
    text: str
    comments: tuple[str, ...]
    lineno: int


@dataclass(frozen=True)
class ProbeSet:
    """The kprobe set of one kernel series."""

    series: str
    path: Path
    header: tuple[str, ...]
    entries: tuple[ProbeEntry, ...]

    def lines(self) -> list[str]:
        """The definition lines, in file order, as ``kprobe_events`` takes them."""
        return [e.text for e in self.entries]

    def by_event(self) -> dict[str, ProbeEntry]:
        """Entries keyed by event name."""
        return {e.definition.event: e for e in self.entries}


@dataclass(frozen=True)
class KernelRelease:
    """What a kernel version string says.

    :param major: e.g. 6.
    :param minor: e.g. 1.
    :param sublevel: the stable release (192 for Debian's 6.1.192), if the text says it.
    :param release: the ``uname -r`` token (``6.1.0-56-arm64``).
    :param flavour: the text after the version in the release (``-56-arm64``, ``+deb12-arm64-16k``).
    """

    major: int
    minor: int
    sublevel: int | None
    release: str
    flavour: str

    @property
    def series(self) -> str:
        """``"6.1"``."""
        return f"{self.major}.{self.minor}"


@cache
def known_series() -> tuple[str, ...]:
    """The kernel series with a kprobe set in ``schemas/kprobes``, oldest first."""
    found = []
    for p in (schemas_dir() / "kprobes").iterdir():
        m = _KPROBE_FILE.match(p.name)
        if m:
            found.append(m.group(1))
    return tuple(sorted(found, key=series_version))


_RELEASE_RE = re.compile(r"(?<![\w.])v?(\d+)\.(\d+)(?:\.(\d+))?([^\s]*)")
_DEBIAN_RE = re.compile(r"Debian (\d+)\.(\d+)\.(\d+)")


def parse_kernel_release(text: str) -> KernelRelease:
    """Read a kernel version out of ``uname -r``, ``uname -a`` or a series name.

    ``"6.1.0-56-arm64 #1 SMP Debian 6.1.192-2"`` gives 6.1 with sublevel 192
    (Debian's ABI name says 6.1.0; its package version says 6.1.192);
    ``"6.12.117+deb12-arm64-16k"`` gives 6.12.117 and flavour ``+deb12-arm64-16k``.

    :raises UnknownKernelSeries: no version in the text.
    """
    m = _RELEASE_RE.search(text)
    if not m:
        raise UnknownKernelSeries(f"no kernel version in {text.strip()!r}")
    major, minor = int(m.group(1)), int(m.group(2))
    sublevel = int(m.group(3)) if m.group(3) is not None else None
    release = m.group(0).lstrip("v")
    deb = _DEBIAN_RE.search(text)
    if deb and (int(deb.group(1)), int(deb.group(2))) == (major, minor):
        sublevel = int(deb.group(3))
    return KernelRelease(major, minor, sublevel, release, m.group(4))


def series_for(kernel: str) -> str:
    """The known series a kernel version string belongs to.

    :param kernel: ``"6.1"``, ``"6.1.0-56-arm64"``, ``"6.12.117+deb12-arm64"``, ...
    :raises UnknownKernelSeries: no schemas for that series (the message lists the known ones).
    """
    rel = parse_kernel_release(kernel)
    if rel.series not in known_series():
        raise UnknownKernelSeries(
            f"no kprobe set for Linux {rel.series} (from {kernel.strip()!r}); "
            f"known series: {', '.join(known_series())}"
        )
    return rel.series


@cache
def load_probe_set(series: str) -> ProbeSet:
    """Load and check ``schemas/kprobes/linux-<series>.txt``.

    :raises UnknownKernelSeries: no such file.
    :raises ProbeSyntaxError: a definition in the file is malformed (a bug in the schema).
    """
    if series not in known_series():
        raise UnknownKernelSeries(
            f"no kprobe set for Linux {series}; known series: {', '.join(known_series())}"
        )
    path = schemas_dir() / "kprobes" / f"linux-{series}.txt"
    header: list[str] = []
    pending: list[str] = []
    entries: list[ProbeEntry] = []
    seen: set[str] = set()
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            pending.append(line)
            continue
        where = f"{path.name} line {lineno}"
        defn = parse_probe_definition(line, where)
        if defn.event in seen:
            raise ProbeSyntaxError(f"event {defn.event!r} defined twice in {where}")
        seen.add(defn.event)
        if not entries and not header:
            # Comment lines before the first section rule belong to the file header.
            cut = next((i for i, c in enumerate(pending) if c.startswith("# ---")), 0)
            header, pending = pending[:cut], pending[cut:]
        comments = tuple(pending)
        if not comments and entries and entries[-1].definition.symbol == defn.symbol:
            # A return probe right under its entry probe shares the entry's comment.
            comments = entries[-1].comments
        entries.append(ProbeEntry(defn, line, comments, lineno))
        pending = []
    return ProbeSet(series, path, tuple(header), tuple(entries))


@cache
def _tracepoint_file(name: str = "kvm.json") -> dict[str, TracepointDef]:
    path = schemas_dir() / "tracepoints" / name
    data = json.loads(path.read_text(encoding="utf-8"))
    out: dict[str, TracepointDef] = {}
    for name, ev in data["events"].items():
        out[name] = TracepointDef(
            system=ev["system"],
            name=name,
            fields=tuple((str(t), str(n)) for t, n in ev["fields"]),
            print_fmt=ev["print_fmt"],
            source=dict(ev["source"]),
        )
    return out


def load_tracepoints(series: str) -> dict[str, TracepointDef]:
    """The kvm:* tracepoints that exist in a kernel series, by name, in schema order."""
    if series not in known_series():
        raise UnknownKernelSeries(
            f"no event schemas for Linux {series}; known series: {', '.join(known_series())}"
        )
    return {n: tp for n, tp in _tracepoint_file().items() if series in tp.source}


def load_instrumentation() -> dict[str, TracepointDef]:
    """The instrumentation tracepoints (``schemas/tracepoints/ptreplay.json``), by name.

    No stock kernel has them (the capture kit does not enable them); a patched kernel
    could, and ``ptreplay gen --pte-events`` writes them. They do not depend on the series.
    """
    return _tracepoint_file("ptreplay.json")


@dataclass(frozen=True)
class EventSchema:
    """The layout of one event a kernel series' probes or tracepoints produce.

    :param system: ``kprobes`` or the tracepoint's system (``kvm``).
    :param name: the event name.
    :param fields: the fields after the 8-byte common header, with offsets and sizes.
    :param print_fmt: the ``print fmt:`` value.
    """

    system: str
    name: str
    fields: tuple[Field, ...]
    print_fmt: str

    def format(self, event_id: int) -> str:
        """The exact ``format`` text, with the kernel's event id."""
        return format_text(self.name, event_id, self.fields, self.print_fmt)


def event_schema(series: str, name: str) -> EventSchema:
    """The schema of event ``name`` (a probe of the series' set, a kvm:* tracepoint, or an
    instrumentation tracepoint of :func:`load_instrumentation`).

    :raises KeyError: the series has no such event.
    """
    entry = load_probe_set(series).by_event().get(name)
    if entry is not None:
        d = entry.definition
        return EventSchema(d.group, d.event, tuple(kprobe_fields(d, series)),
                           kprobe_print_fmt(d, series))
    tp = load_tracepoints(series).get(name) or load_instrumentation().get(name)
    if tp is None:
        raise KeyError(f"Linux {series} schemas have no event {name!r}")
    return EventSchema(tp.system, tp.name, tuple(tracepoint_fields(tp)), tp.print_fmt)


def event_format(series: str, name: str, event_id: int) -> str:
    """The exact ``format`` text of event ``name`` in a kernel series (see :func:`event_schema`)."""
    return event_schema(series, name).format(event_id)
