"""Which kernel recorded a trace, and which model profile replays it.

A trace says what kernel it came from in two ways: the ``uname`` option
trace-cmd stores (``Linux (none) 6.1.0-56-arm64 aarch64``; a full ``uname -a``
also gives Debian's package version, ``#1 SMP Debian 6.1.192-2``), and the
layout of its probe events (which probes exist, which fields they have:
``__kvm_pgtable_stage2_init`` takes an ``arch`` in 5.15 and an ``mmu`` in 6.1,
``start_level`` is one byte from 6.9, ...), compared with the kprobe sets of
``schemas/kprobes``. :func:`identify_kernel` combines both into a
:class:`KernelInfo` naming the series and the model profile
(``linux-<series>``, ``-16k`` for 16 KiB pages), and says plainly when the
model has no such profile.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

from ptreplay.capture.catalog import (
    UnknownKernelSeries,
    known_series,
    load_probe_set,
    parse_kernel_release,
)
from ptreplay.capture.formats import kprobe_fields

__all__ = [
    "MODEL_PROFILES",
    "KernelInfo",
    "identify_kernel",
    "series_from_probes",
    "profile_name",
]

#: The profiles of the model (issue 4); pass the model's own list where it is known.
MODEL_PROFILES: tuple[str, ...] = ("linux-5.13", "linux-6.1")

FieldSpec = str | tuple[str, int]


@dataclass(frozen=True)
class KernelInfo:
    """What is known of the kernel that recorded a trace.

    :param series: ``"6.1"``, or ``None`` when nothing identifies it.
    :param release: the ``uname -r`` token, when the trace carries one.
    :param sublevel: the stable release (192 for Debian's 6.1.192), when known.
    :param page_size: the kernel's PAGE_SIZE, when known.
    :param profile: the model profile that replays this kernel (``linux-6.1``,
        ``linux-6.12-16k``), ``None`` when the series is unknown.
    :param covered: whether ``profile`` is one of the available profiles.
    :param available: the profiles that were available.
    :param evidence: how the series was decided, one line per source.
    """

    series: str | None
    release: str | None
    sublevel: int | None
    page_size: int | None
    profile: str | None
    covered: bool
    available: tuple[str, ...]
    evidence: tuple[str, ...]

    def message(self) -> str:
        """One line for the user: which kernel, which profile, or why none."""
        if self.series is None:
            return ("cannot tell which kernel recorded this trace (no uname, no known probe "
                    f"layout); choose a profile with --profile ({', '.join(self.available)})")
        name = f"Linux {self.series}" + (f".{self.sublevel}" if self.sublevel else "")
        if self.release:
            name += f" ({self.release})"
        if self.covered:
            return f"{name}: profile {self.profile}"
        return (f"{name}: no model profile covers it (it would need {self.profile}; "
                f"available: {', '.join(self.available)})")


def profile_name(series: str, page_size: int | None = None) -> str:
    """``linux-6.12``, or ``linux-6.12-16k`` for a 16 KiB-page kernel."""
    name = f"linux-{series}"
    if page_size and page_size != 4096:
        name += f"-{page_size // 1024}k"
    return name


@cache
def _layout(series: str) -> dict[str, tuple[tuple[str, int], ...]]:
    out = {}
    for entry in load_probe_set(series).entries:
        fields = kprobe_fields(entry.definition, series)
        out[entry.definition.event] = tuple(
            (f.name, f.size) for f in fields if not f.name.startswith("__probe"))
    return out


def series_from_probes(
    probe_fields: Mapping[str, Sequence[FieldSpec]],
) -> tuple[list[str], list[str]]:
    """The known series whose kprobe set agrees with a trace's probe events.

    :param probe_fields: event name -> its fields after the probe header, as names or
        ``(name, size)`` pairs (from the trace's format texts). Events that are not
        ptreplay probes (tracepoints, other probes) are ignored.
    :returns: (matching series oldest first, one line of evidence per excluded series).
    """
    layouts = {s: _layout(s) for s in known_series()}
    ours = set().union(*layouts.values())
    matching, notes = [], []
    for series, layout in layouts.items():
        why = None
        for event, fields in probe_fields.items():
            if event not in ours:
                continue
            if event not in layout:
                why = f"{event} does not exist in Linux {series}"
                break
            want = layout[event]
            given = [f for f in fields if not (f if isinstance(f, str) else f[0]).startswith(
                ("__probe", "common_"))]
            names = [f if isinstance(f, str) else f[0] for f in given]
            if names != [n for n, _ in want]:
                why = f"{event} has fields {names}, Linux {series} {[n for n, _ in want]}"
                break
            sizes = [f[1] for f in given if not isinstance(f, str)]
            if sizes and sizes != [s for _, s in want]:
                why = f"{event} field sizes {sizes} differ from Linux {series}'s"
                break
        if why is None:
            matching.append(series)
        else:
            notes.append(why)
    return matching, notes


def identify_kernel(
    uname: str | None = None,
    probe_fields: Mapping[str, Sequence[FieldSpec]] | None = None,
    page_size: int | None = None,
    profiles: Iterable[str] = MODEL_PROFILES,
) -> KernelInfo:
    """Decide the kernel series and model profile of a trace.

    :param uname: the trace's uname text (trace-cmd's UNAME option, or ``uname -a``).
    :param probe_fields: the trace's probe events and their fields (see
        :func:`series_from_probes`).
    :param page_size: the trace's page size (trace.dat header), if known.
    :param profiles: the model profiles available.
    """
    available = tuple(profiles)
    evidence: list[str] = []
    series = release = None
    sublevel = None
    if uname:
        try:
            rel = parse_kernel_release(uname)
        except UnknownKernelSeries:
            evidence.append(f"uname {uname.strip()!r} names no kernel version")
        else:
            series, release, sublevel = rel.series, rel.release, rel.sublevel
            evidence.append(f"uname says {rel.release}")
            if page_size is None and "16k" in rel.flavour.lower():
                page_size = 16384
            if page_size is None and "64k" in rel.flavour.lower():
                page_size = 65536
    if probe_fields:
        matching, _notes = series_from_probes(probe_fields)
        if series is None:
            if len(matching) == 1:
                series = matching[0]
                evidence.append(f"probe layout matches Linux {series} only")
            elif matching:
                evidence.append(f"probe layout matches Linux {', '.join(matching)}: ambiguous")
            else:
                evidence.append("probe layout matches no known kernel series")
        elif matching and series not in matching:
            evidence.append(f"probe layout matches Linux {', '.join(matching)}, not {series}: "
                            "the probes were not ptreplay's set for this kernel")
        elif series in matching:
            evidence.append(f"probe layout agrees with Linux {series}")
    profile = profile_name(series, page_size) if series else None
    return KernelInfo(series, release, sublevel, page_size, profile,
                      profile is not None and profile in available, available, tuple(evidence))
