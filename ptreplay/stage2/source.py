"""A trace opened for stage-2 replay: the events to read, and what the trace can show.

:class:`Stage2Trace` wraps a :class:`~ptreplay.trace.Trace` (a trace.dat or a
raw tracefs copy) for the replay layer:

* :meth:`Stage2Trace.events` reads, through :meth:`Trace.scan`'s fast path,
  exactly the events :class:`~ptreplay.stage2.operations.OperationBuilder`
  needs (the stage-2 API's entry and return probes, the mm_ops and TLB
  probes, the two callers that tie a root to its VM) and skips every other
  event after reading its id. Events are numbered by their position among
  the events read (an *ordinal*); :meth:`Stage2Trace.event_indexes` turns
  ordinals back into event indexes of the whole trace (what ``ptreplay
  events`` and ``trace-cmd report`` count) with one more pass, only when a
  report needs them.
* :meth:`Stage2Trace.kernel` identifies the kernel (uname option, probe
  layout: :func:`~ptreplay.stage2.kernels.identify_kernel`).
* :meth:`Stage2Trace.observable` says which kinds of effects the trace can
  observe at all, from the probes it holds (a trace without the
  ``kvm_host_get_page`` probe observes no ``get``; TLB invalidations are
  observable only where their probes can fire, see
  :mod:`ptreplay.stage2.platform`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from ptreplay.stage2.kernels import KernelInfo, identify_kernel
from ptreplay.stage2.operations import _CONTEXTS, LOST_EVENTS, OperationBuilder
from ptreplay.trace import LOST, Trace

__all__ = [
    "ScanEvent",
    "Stage2Trace",
    "OBSERVABLE_BY_PROBE",
    "TLBI_PROBES",
    "CONTEXTS_READ",
    "MARKER",
]


class ScanEvent(NamedTuple):
    """One event as the operations layer takes it (the ``EventLike`` protocol).

    :param index: the event's ordinal among the events read (see
        :meth:`Stage2Trace.event_indexes`).
    """

    index: int  # type: ignore[assignment]  # shadows tuple.index
    cpu: int
    ts: int
    pid: int
    name: str
    fields: dict[str, Any]


#: The ftrace event of a ``trace_marker`` write: a capture script (or ``ptreplay gen``)
#: writes the machine's boot-log lines about the platform there.
MARKER = "print"

#: Callers and tracepoints read for their attribution value (root -> VM, mmu); the
#: other context events (guest faults, MMU notifiers' hva tracepoints ...) only name
#: why an operation ran and are skipped.
CONTEXTS_READ = frozenset(["kvm_init_stage2_mmu", "kvm_free_stage2_pgd",
                           "kvm_uninit_stage2_mmu"])

#: Effect kind (as :mod:`ptreplay.stage2.compare` names them) -> the probe(s) that show it.
OBSERVABLE_BY_PROBE: dict[str, tuple[str, ...]] = {
    "alloc": ("stage2_memcache_zalloc_page__return",),
    "alloc_exact": ("kvm_s2_zalloc_pages_exact__return", "kvm_host_zalloc_pages_exact__return"),
    "free_exact": ("kvm_s2_free_pages_exact", "free_pages_exact"),
    "get": ("kvm_host_get_page",),
    "put": ("kvm_s2_put_page", "kvm_host_put_page"),
    "page_count": ("kvm_host_page_count__return",),
    "cmo:dcache_clean_inval_poc": ("clean_dcache_guest_page",),
    "cmo:icache_inval_pou": ("invalidate_icache_guest_page",),
    "cmo:__flush_dcache_area": ("__flush_dcache_area",),
    "pte": ("stage2_pte_store",),  # ptreplay's instrumentation tracepoint (docs/synth.md)
}

#: The TLB invalidation probes (they fire only where the helpers run at EL1: VHE).
TLBI_PROBES = ("__kvm_tlb_flush_vmid_ipa", "__kvm_tlb_flush_vmid")


# Probe header fields nobody reads (the probed address, the return site).
_PROBE_META = frozenset(["__probe_ip", "__probe_func", "__probe_ret_ip"])


class Stage2Trace:
    """A trace read for stage-2 replay.

    :param trace: an open trace (the caller closes it).
    """

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.source = trace.source
        self.page_size = trace.info.page_size or 4096
        formats = trace.formats
        #: event name -> field names read (``common_pid`` first; the events' ``fields``
        #: dicts hold it too).
        self.fields: dict[str, tuple[str, ...]] = {}
        self._names: set[str] = set()
        handlers = OperationBuilder(self.page_size)._handlers
        for ev_id in formats.ids():
            system, name = formats.name_of(ev_id)
            self._names.add(name)
            if system == "ftrace" and name == MARKER:
                self.fields[name] = ("common_pid", "buf")
                continue
            if name not in handlers or (name in _CONTEXTS and name not in CONTEXTS_READ):
                continue
            fmt = formats.get(ev_id)
            self.fields[name] = ("common_pid",) + tuple(
                f.name for f in fmt.fields if f.name not in _PROBE_META)

    # --- what the trace is ------------------------------------------------------------

    def has_event(self, name: str) -> bool:
        """Whether the trace has a format for an event called ``name``."""
        return name in self._names

    def probe_fields(self) -> dict[str, list[tuple[str, int]]]:
        """The trace's kprobe events and their fields after the probe header."""
        out = {}
        formats = self.trace.formats
        for ev_id in formats.ids():
            system, name = formats.name_of(ev_id)
            if system != "kprobes":
                continue
            fmt = formats.get(ev_id)
            out[name] = [(f.name, f.size) for f in fmt.fields
                         if not f.name.startswith("__probe")]
        return out

    def kernel(self, profiles: Iterable[str]) -> KernelInfo:
        """Which kernel recorded the trace, and which of ``profiles`` replays it."""
        info = self.trace.info
        return identify_kernel(info.uname, self.probe_fields(), info.page_size or None,
                               tuple(profiles))

    def observable(self, tlbi: bool) -> frozenset[str]:
        """Effect kinds the trace observes (see :data:`OBSERVABLE_BY_PROBE`).

        :param tlbi: whether TLB invalidations are observed (the probes exist and
            can fire on this platform: VHE).
        """
        kinds = {kind for kind, probes in OBSERVABLE_BY_PROBE.items()
                 if any(p in self._names for p in probes)}
        if tlbi and any(p in self._names for p in TLBI_PROBES):
            kinds.add("tlbi")
        return frozenset(kinds)

    # --- events ------------------------------------------------------------------------

    def event_makers(self, handlers: dict[str, Callable[[Any], Any]] | None = None
                     ) -> dict[str, Callable[[int, int, int, tuple], Any]]:
        """Per event name, ``(ordinal, cpu, ts, values) -> ScanEvent``, ``values`` as
        :meth:`Trace.scan` yields them for :attr:`fields`; with ``handlers`` (event name
        -> function), a function that makes the event and passes it to its handler.

        Each is compiled from the event's field names (a dict display per event is a
        third of the cost of ``dict(zip(names, values))``, on the hottest loop).
        """
        out = {}
        for name, keys in self.fields.items():
            body = ", ".join(f"{k!r}: v[{i}]" for i, k in enumerate(keys))
            make = f"ScanEvent(n, cpu, ts, v[0], {name!r}, {{{body}}})"
            env: dict[str, Any] = {"ScanEvent": ScanEvent}
            if handlers is not None:
                env["handle"] = handlers[name]
                make = f"handle({make})"
            out[name] = eval(f"lambda n, cpu, ts, v: {make}", env)  # noqa: S307 - our text
        return out

    def events(self) -> Iterator[ScanEvent]:
        """The events the operations layer needs, in trace order, with their ordinals.

        Lost-events markers come as events called
        :data:`~ptreplay.stage2.operations.LOST_EVENTS` carrying the ordinal of the
        next event read and ``fields["count"]`` (-1 when unknown).
        """
        make = self.event_makers()
        ordinal = 0
        for ts, cpu, name, vals in self.trace.scan(self.fields, lost=True):
            if name is LOST:
                yield ScanEvent(ordinal, cpu, ts, 0, LOST_EVENTS, {"count": vals[0]})
                continue
            yield make[name](ordinal, cpu, ts, vals)
            ordinal += 1

    def _read_ids(self) -> set[int]:
        """Format ids of the events the operations layer reads (see :attr:`fields`)."""
        read = set(self.fields)
        fmts = self.trace.formats
        return {i for i in fmts.ids() if fmts.name_of(i)[1] in read}

    def ordinals_until(self, index: int) -> int:
        """How many events the operations layer reads up to event ``index`` of the whole
        trace (inclusive): the inverse of :meth:`event_indexes` for ``--at INDEX``."""
        ids = self._read_ids()
        count = 0
        for i, rec in enumerate(self.trace.records(lost=False)):
            if i > index:
                break
            if rec.format.id in ids:  # type: ignore[union-attr]
                count += 1
        return count

    def event_indexes(self, ordinals: Iterable[int]) -> dict[int, int]:
        """Event index in the whole trace of each event ordinal (see :meth:`events`).

        One pass over the trace that reads every event's id and nothing else.
        """
        wanted = sorted(set(ordinals))
        out: dict[int, int] = {}
        if not wanted:
            return out
        ids = self._read_ids()
        ordinal = 0
        pos = 0
        target = wanted[0]
        for index, rec in enumerate(self.trace.records(lost=False)):
            if rec.format.id not in ids:  # type: ignore[union-attr]
                continue
            if ordinal == target:
                out[target] = index
                pos += 1
                if pos == len(wanted):
                    break
                target = wanted[pos]
            ordinal += 1
        return out
