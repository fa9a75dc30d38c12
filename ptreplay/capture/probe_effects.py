"""Which probe events show which effects: one table, read both ways.

The capture kit's effect probes (``schemas/kprobes``: the ``kvm_s2_mm_ops``
callbacks, the TLB helpers, the cache-maintenance helpers) and the
``ptreplay:stage2_pte_store`` instrumentation tracepoint
(``schemas/tracepoints/ptreplay.json``) each show one kind of
:mod:`ptreplay.effects` record. :data:`EFFECT_PROBES` declares, once, for
every such event: the effect record it stands for, and which event field
carries which effect attribute. Two layers read it:

* the events -> operations layer (:mod:`ptreplay.stage2.operations`) turns an
  observed event (and its return event) into an effect:
  :meth:`EffectProbe.decode`;
* ``ptreplay gen`` (:mod:`ptreplay.synth`) turns an effect of the model into
  the events a real kernel's probes fire for it: :meth:`ProbeEffects.encode`.

Effects in this "observed" form hold what a probe can see: kernel virtual
addresses (the arm64 linear map) rather than the model's physical
addresses; ``get_page``/``put_page``/``page_count`` are called with any
address inside the table page (the entry's address), kept as ``addr`` next
to the page-aligned effect; a ``get``/``put`` probe does not show the page's
count (:data:`COUNT_NOT_OBSERVED`); a TLB helper names the ``struct
kvm_s2_mmu *`` (``mmu``). ``page_count()`` is a query for the model but a
probe for the trace: :class:`PageCount`. A ``free`` after a ``put`` reached
0, barriers and ``WARN_ON`` have no probe.

A field source in the table is an effect attribute (``pa``, ``size``,
``ipa``, ``level``, ``pages``, ``count``, ``old``, ``new``, ``ptep``,
``phys``, ``prot``), or :data:`ADDR` (the exact address passed), :data:`MMU`
(the mmu pointer) or :data:`MC` (the memory cache passed to
``zalloc_page``: context, not part of the effect).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, NamedTuple

from ptreplay.effects import Alloc, AllocFail, Cmo, Free, Get, Pte, Put, Rcu, Tlbi

__all__ = [
    "PageCount",
    "TlbFlushRange",
    "CreateUnlinked",
    "COUNT_NOT_OBSERVED",
    "ADDR",
    "MMU",
    "MC",
    "EffectProbe",
    "EFFECT_PROBES",
    "BY_EVENT",
    "effect_key",
    "ProbeEffects",
    "probe_effects",
    "PTE_STORE_EVENT",
]

#: ``count`` of a Get/Put whose page count the probe did not show.
COUNT_NOT_OBSERVED = -1

#: Field sources that are not effect attributes.
ADDR = "@addr"  #: the exact address passed to get_page / put_page / page_count
MMU = "@mmu"  #: the ``struct kvm_s2_mmu *`` passed to a TLB helper
MC = "@mc"  #: the memory cache passed to ``zalloc_page`` (context only)

#: The instrumentation tracepoint that shows entry stores (not in stock kernels).
PTE_STORE_EVENT = "stage2_pte_store"


class PageCount(NamedTuple):
    """``mm_ops->page_count()`` of the table page at ``pa``: it returned ``count``."""

    pa: int
    count: int  # type: ignore[assignment]  # shadows tuple.count


class TlbFlushRange(NamedTuple):
    """``kvm_tlb_flush_vmid_range(mmu, addr, size)`` (6.6+ host-side wrapper): a range flush
    request, which becomes ``__kvm_tlb_flush_vmid_range`` or ``__kvm_tlb_flush_vmid`` at EL2."""

    ipa: int
    size: int


class CreateUnlinked(NamedTuple):
    """``kvm_pgtable_stage2_create_unlinked()`` (6.6+, inside split): ``pa`` is the new table
    (0 or an ERR_PTR value when it failed), built for a block at ``phys``/``level``."""

    pa: int
    phys: int
    level: int
    prot: int


Fields = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class EffectProbe:
    """One probe event (with its return probe when ``ret`` is set) that shows one effect.

    :param event: the entry event (the probed function, or the tracepoint name).
    :param effect: the effect record type.
    :param entry: ``(event field, source)`` pairs of the entry event.
    :param ret: ``(field, source)`` pairs of the return event ``<event>__return``.
    :param const: effect attributes the event implies (``kind`` of a Cmo/Tlbi, ...).
    :param sized: Alloc/Free: whether the call has a size (``*_pages_exact``).
    :param system: the event system (``kprobes``, or the tracepoint's).
    """

    event: str
    effect: Any  # a NamedTuple type of ptreplay.effects (or of this module)
    entry: Fields = ()
    ret: Fields = ()
    const: tuple[tuple[str, Any], ...] = ()
    sized: bool | None = None
    system: str = "kprobes"
    _attrs: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @property
    def ret_event(self) -> str | None:
        """``<event>__return`` when the effect needs the return value, else ``None``."""
        return self.event + "__return" if self.ret else None

    @property
    def key(self) -> tuple:
        """What this probe shows, as :func:`effect_key` computes it for an effect."""
        consts = dict(self.const)
        return _key(self.effect.__name__, consts.get("kind"), self.sized)

    def decode(self, entry: Mapping[str, Any] | None, ret: Mapping[str, Any] | None,
               page_mask: int = ~0xFFF) -> tuple[Any, int | None, int | None]:
        """The effect an observed event shows: ``(effect, exact address, mmu)``.

        :param entry: the entry event's fields (``None`` or partial when only the return
            was seen: missing values decode as ``None``, a page address as -1).
        :param ret: the return event's fields (``None`` for entry-only probes).
        :param page_mask: ``~(PAGE_SIZE - 1)``: the page of an exact address.
        """
        values: dict[str, Any] = dict(self.const)
        addr = mmu = None
        for fields, pairs in ((entry, self.entry), (ret, self.ret)):
            for name, source in pairs:
                raw = fields.get(name) if fields is not None else None
                value = None if raw is None else int(raw)
                if source == ADDR:
                    addr = value
                    values["pa"] = value & page_mask if value is not None else -1
                elif source == MMU:
                    mmu = value
                elif source != MC:
                    values[source] = value
        effect = self.effect
        if effect is Alloc and not values.get("pa"):
            return AllocFail(), addr, mmu
        if effect is Get or effect is Put:
            values.setdefault("count", COUNT_NOT_OBSERVED)
        elif effect is PageCount and values.get("count") is None:
            values["count"] = -1
        return effect(**{k: values.get(k) for k in effect._fields if k in values}), addr, mmu

    def encode(self, effect: Any, addr: int | None = None, mmu: int | None = None,
               mc: int | None = None) -> list[tuple[str, str, dict[str, int]]]:
        """The events that show ``effect``: ``[(system, name, fields)]``, entry then return.

        ``effect`` is in observed form (kernel virtual addresses); ``addr`` is required for
        probes that take an exact address (get/put/page_count).
        """
        values = effect._asdict() if type(effect) is not AllocFail else {"pa": 0}
        out = []
        for name, pairs in ((self.event, self.entry), (self.ret_event, self.ret)):
            if name is None:
                continue
            fields: dict[str, int] = {}
            for fname, source in pairs:
                if source == ADDR:
                    if addr is None:
                        raise ValueError(f"{self.event}: the exact address is needed")
                    fields[fname] = addr
                elif source == MMU:
                    fields[fname] = mmu or 0
                elif source == MC:
                    fields[fname] = mc or 0
                else:
                    v = values.get(source)
                    fields[fname] = 0 if v is None else v
            out.append((self.system, name, fields))
        return out


def _key(type_name: str, kind: str | None = None, sized: bool | None = None) -> tuple:
    if type_name == "AllocFail":
        type_name = "Alloc"
    return (type_name, kind, sized)


def effect_key(effect: Any, sized: bool | None = None) -> tuple:
    """The table key of an effect: its type, its ``kind`` (Cmo, Tlbi, Rcu), whether an
    Alloc/Free has a size. An :class:`AllocFail` says nothing of the allocator it came from:
    pass ``sized`` (``zalloc_pages_exact`` failed) or it is taken for ``zalloc_page``."""
    name = type(effect).__name__
    if name in ("Alloc", "Free"):
        return _key(name, None, effect.size is not None)
    if name == "AllocFail":
        return _key(name, None, bool(sized))
    if name in ("Cmo", "Tlbi", "Rcu"):
        return _key(name, effect.kind)
    return _key(name)


#: Every event that shows an effect, across the kernel series ptreplay has probe sets for.
#: Where one effect has several events (renamed helpers), the first one a series has is the
#: one it uses.
EFFECT_PROBES: tuple[EffectProbe, ...] = (
    # mm_ops->zalloc_page(mc): KVM's stage2_memcache_zalloc_page (mmu.c); NULL -> alloc_fail
    EffectProbe("stage2_memcache_zalloc_page", Alloc, entry=(("mc", MC),), ret=(("virt", "pa"),),
                sized=False),
    # mm_ops->zalloc_pages_exact(size): the pgd (6.1+: kvm_s2_zalloc_pages_exact wraps
    # kvm_host_zalloc_pages_exact; 5.13 calls the latter directly)
    EffectProbe("kvm_s2_zalloc_pages_exact", Alloc, entry=(("size", "size"),),
                ret=(("virt", "pa"),), sized=True),
    EffectProbe("kvm_host_zalloc_pages_exact", Alloc, entry=(("size", "size"),),
                ret=(("virt", "pa"),), sized=True),
    # mm_ops->free_pages_exact(virt, size) (6.1+: kvm_s2_free_pages_exact; 5.13: free_pages_exact)
    EffectProbe("kvm_s2_free_pages_exact", Free, entry=(("virt", "pa"), ("size", "size")),
                sized=True),
    EffectProbe("free_pages_exact", Free, entry=(("virt", "pa"), ("size", "size")), sized=True),
    # mm_ops->get_page / put_page / page_count(addr): any address in the table page
    EffectProbe("kvm_host_get_page", Get, entry=(("addr", ADDR),)),
    EffectProbe("kvm_s2_put_page", Put, entry=(("addr", ADDR),)),
    EffectProbe("kvm_host_put_page", Put, entry=(("addr", ADDR),)),
    EffectProbe("kvm_host_page_count", PageCount, entry=(("addr", ADDR),),
                ret=(("count", "count"),)),
    # cache maintenance: 6.1+ mm_ops callbacks, 5.13's direct __flush_dcache_area
    EffectProbe("clean_dcache_guest_page", Cmo, entry=(("va", "pa"), ("size", "size")),
                const=(("kind", "dcache_clean_inval_poc"),)),
    EffectProbe("invalidate_icache_guest_page", Cmo, entry=(("va", "pa"), ("size", "size")),
                const=(("kind", "icache_inval_pou"),)),
    EffectProbe("__flush_dcache_area", Cmo, entry=(("va", "pa"), ("size", "size")),
                const=(("kind", "__flush_dcache_area"),)),
    # TLB invalidation helpers (VHE: plain calls; nVHE: at EL2, never seen)
    EffectProbe("__kvm_tlb_flush_vmid_ipa", Tlbi,
                entry=(("mmu", MMU), ("ipa", "ipa"), ("level", "level")),
                const=(("kind", "vmid_ipa"),)),
    EffectProbe("__kvm_tlb_flush_vmid_ipa_nsh", Tlbi,
                entry=(("mmu", MMU), ("ipa", "ipa"), ("level", "level")),
                const=(("kind", "vmid_ipa_nsh"),)),
    EffectProbe("__kvm_tlb_flush_vmid", Tlbi, entry=(("mmu", MMU),), const=(("kind", "vmid"),)),
    EffectProbe("__kvm_tlb_flush_vmid_range", Tlbi,
                entry=(("mmu", MMU), ("start", "ipa"), ("pages", "pages")),
                const=(("kind", "vmid_range"),)),
    EffectProbe("kvm_tlb_flush_vmid_range", TlbFlushRange,
                entry=(("mmu", MMU), ("addr", "ipa"), ("size", "size"))),
    # 6.6+: a table handed to RCU (stage2_free_unlinked_table -> call_rcu)
    EffectProbe("stage2_free_unlinked_table", Rcu, entry=(("addr", "pa"), ("level", "level")),
                const=(("kind", "call_rcu"), ("fn", "free_unlinked_table"))),
    # 6.6+: a new unlinked table built for a block (split)
    EffectProbe("kvm_pgtable_stage2_create_unlinked", CreateUnlinked,
                entry=(("phys", "phys"), ("level", "level"), ("prot", "prot")),
                ret=(("table", "pa"),)),
    # instrumentation (schemas/tracepoints/ptreplay.json): every entry store
    EffectProbe(PTE_STORE_EVENT, Pte, entry=(("ptep", "ptep"), ("old", "old"), ("new", "new")),
                system="ptreplay"),
)

#: The table by event name.
BY_EVENT: dict[str, EffectProbe] = {p.event: p for p in EFFECT_PROBES}


class ProbeEffects:
    """The effect probes one kernel series has (its kprobe set plus instrumentation).

    :param events: the event names that exist (probe events of the series'
        set, tracepoints); effects without an event here are invisible.
    """

    def __init__(self, events: Iterable[str]) -> None:
        names = set(events)
        self.by_key: dict[tuple, EffectProbe] = {}
        for probe in EFFECT_PROBES:
            if probe.event in names and (probe.ret_event is None or probe.ret_event in names):
                self.by_key.setdefault(probe.key, probe)

    def probe_for(self, effect: Any, sized: bool | None = None) -> EffectProbe | None:
        """The probe that shows ``effect`` in this series, ``None`` when none does."""
        return self.by_key.get(effect_key(effect, sized))

    def encode(self, effect: Any, addr: int | None = None, mmu: int | None = None,
               mc: int | None = None, sized: bool | None = None
               ) -> list[tuple[str, str, dict[str, int]]]:
        """The events a real kernel's probes fire for ``effect`` (observed form); ``[]`` when
        no probe shows it (a barrier, the free after a put, a WARN_ON)."""
        probe = self.probe_for(effect, sized)
        return [] if probe is None else probe.encode(effect, addr, mmu, mc)


@cache
def probe_effects(series: str, instrumented: bool = True) -> ProbeEffects:
    """The effect probes of a kernel series' probe set (``schemas/kprobes``), with the
    instrumentation tracepoint when ``instrumented``."""
    from ptreplay.capture.catalog import load_probe_set

    names = [e.definition.event for e in load_probe_set(series).entries]
    if instrumented:
        names.append(PTE_STORE_EVENT)
    return ProbeEffects(names)
