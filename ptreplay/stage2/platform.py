"""Platform features that change the kernel's path through pgtable.c, read from a trace.

The same kernel source behaves differently on different CPUs and callers:

* **fwb** — stage-2 Force Write-Back (``ARM64_HAS_STAGE2_FWB``): without it the
  unmap and flush walkers clean the data cache of every cacheable leaf they
  touch (``need_flush = !stage2_has_fwb(pgt)`` in ``stage2_unmap_walker``;
  ``kvm_pgtable_stage2_flush`` returns at once with FWB).
* **hw_af** — hardware access-flag management (FEAT_HAFDBS; KVM sets VTCR_EL2.HA
  unconditionally): without it the guest takes access-flag faults, which KVM
  handles with ``kvm_pgtable_stage2_mkyoung``; with it the hardware sets the
  AF again after ``mkold`` and no mkyoung ever happens.
* **tlb_range** — FEAT_TLBIRANGE, used by 6.6+ stage-2 code
  (``kvm_tlb_flush_vmid_range`` -> ``__kvm_tlb_flush_vmid_range``; unmap defers
  its leaf TLBIs to one range flush when the CPU also has FWB,
  ``stage2_unmap_defer_tlb_flush()``). Older kernels never use it in pgtable.c.
* **vhe** — whether the TLB helpers run as plain calls (VHE) that kprobes see;
  in nVHE they run at EL2 and a trace shows no TLB invalidation at all.
* **mc** — whether the callers pass a memory cache to ``kvm_pgtable_stage2_map``
  (``kvm_set_spte_gfn`` passes none: maps that need a table page then fail with
  -ENOMEM).

:class:`PlatformEvidence` watches the operations of a trace and
:meth:`PlatformEvidence.infer` returns the value of each feature with the
evidence (event index and reason), ``None`` where the trace does not tell;
overrides win and are reported as such. A wrong value must surface as
divergences in the replay, so every value says where it came from.
:func:`features_from_dmesg` reads the same features from a boot log's
``CPU features: detected:`` lines, when the user has one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ptreplay.capture.formats import series_version
from ptreplay.effects import Cmo, Put, Tlbi
from ptreplay.stage2.operations import Operation, TlbFlushRange

__all__ = [
    "FEATURES",
    "Feature",
    "PlatformFeatures",
    "PlatformEvidence",
    "features_from_dmesg",
]

#: The feature names, in report order.
FEATURES = ("fwb", "hw_af", "tlb_range", "vhe", "mc")

# Enough unmaps that tore down entries without any sign of a feature to call it absent/present.
_ENOUGH = 16
_AF = 1 << 10  # KVM_PTE_LEAF_ATTR_LO_S2_AF
_VALID = 1
_MAX_TRACKED = 1 << 16


@dataclass(frozen=True)
class Feature:
    """One platform feature: its value (``None``: unknown) and why.

    :param source: ``override`` (given by the user), ``trace`` (seen in the events),
        ``kernel`` (decided by the kernel version) or ``unknown``.
    :param evidence: one line saying what showed it.
    :param index: the event index of the evidence, when there is one.
    """

    name: str
    value: bool | None
    source: str
    evidence: str
    index: int | None = None

    def describe(self) -> str:
        """``fwb=yes (trace: ...)``."""
        shown = {True: "yes", False: "no", None: "unknown"}[self.value]
        where = f", event {self.index}" if self.index is not None else ""
        return f"{self.name}={shown} ({self.source}: {self.evidence}{where})"


@dataclass(frozen=True)
class PlatformFeatures:
    """The features a replay uses, each with its provenance."""

    fwb: Feature
    hw_af: Feature
    tlb_range: Feature
    vhe: Feature
    mc: Feature

    def values(self) -> dict[str, bool | None]:
        """``{"fwb": True, ...}``."""
        return {name: getattr(self, name).value for name in FEATURES}

    def describe(self) -> list[str]:
        """One line per feature, for reports."""
        return [getattr(self, name).describe() for name in FEATURES]


class PlatformEvidence:
    """Collects, operation by operation, what a trace shows of the platform.

    Memory is bounded: at most a fixed number of aged pages are tracked for the
    access-flag evidence.
    """

    def __init__(self) -> None:
        self.unmap_with_cmo: int | None = None  # first index
        self.flush_with_cmo: int | None = None
        self.unmaps_with_puts = 0
        self.unmaps_without_cmo: int | None = None
        self.mkyoung: int | None = None
        self.af_set_by_hw: int | None = None
        self.range_tlbi: int | None = None
        self.full_tlbi_after_range_request: int | None = None
        self.deferred_range_unmap: int | None = None
        self.tlbi_seen: int | None = None
        self.maps_with_mc = 0
        self.maps_without_mc = 0
        self.first_map_with_mc: int | None = None
        self.first_map_without_mc: int | None = None
        self._cleared: dict[tuple[int | None, int], int] = {}  # (root, addr) -> index

    def observe(self, op: Operation) -> None:
        """Take one operation (in trace order)."""
        kind = op.kind
        at = op.first_index
        effects = op.effects
        has_cmo = any(type(e.effect) is Cmo and e.effect.kind != "icache_inval_pou"
                      for e in effects)
        if self.tlbi_seen is None:
            for e in effects:
                if type(e.effect) is Tlbi:
                    self.tlbi_seen = e.index
                    break
        if kind == "unmap":
            if has_cmo and self.unmap_with_cmo is None:
                self.unmap_with_cmo = at
            if any(type(e.effect) is Put for e in effects):
                self.unmaps_with_puts += 1
                if not has_cmo and self.unmaps_without_cmo is None:
                    self.unmaps_without_cmo = at
            if self.deferred_range_unmap is None and any(
                    type(e.effect) is TlbFlushRange for e in effects):
                self.deferred_range_unmap = at
        elif kind == "flush":
            if has_cmo and self.flush_with_cmo is None:
                self.flush_with_cmo = at
        elif kind == "map":
            mc = op.entry_fields.get("mc")
            if mc:
                self.maps_with_mc += 1
                if self.first_map_with_mc is None:
                    self.first_map_with_mc = at
            elif mc is not None:
                self.maps_without_mc += 1
                if self.first_map_without_mc is None:
                    self.first_map_without_mc = at
        elif kind == "mkyoung":
            if self.mkyoung is None:
                self.mkyoung = at
            self._cleared.pop((op.root, op.entry_fields.get("addr", -1)), None)
        elif kind in ("mkold", "is_young", "test_clear_young"):
            self._aging(op)
        self._tlb_range(effects)

    def _aging(self, op: Operation) -> None:
        if self.af_set_by_hw is not None or op.ret is None or op.uncertain:
            return
        if op.kind == "mkold":
            young = bool(op.ret & _VALID) and bool(op.ret & _AF)
            clears = True
        elif op.kind == "is_young":
            young, clears = bool(op.ret), False
        else:
            young, clears = bool(op.ret), bool(op.entry_fields.get("mkold"))
            if op.entry_fields.get("size", 0) not in (0, 4096, 16384, 65536):
                return  # a range: which page was young is not known
        key = (op.root, op.entry_fields.get("addr", -1))
        cleared_at = self._cleared.get(key)
        if young and cleared_at is not None and self.mkyoung is None:
            # Aged before, young again, no access fault handled in between:
            # the hardware set the access flag.
            self.af_set_by_hw = op.first_index
            self._cleared.clear()
            return
        if young and clears and len(self._cleared) < _MAX_TRACKED:
            self._cleared[key] = op.first_index

    def _tlb_range(self, effects: list) -> None:
        if self.range_tlbi is not None and self.full_tlbi_after_range_request is not None:
            return
        requested = False
        for e in effects:
            eff = e.effect
            if type(eff) is TlbFlushRange:
                requested = True
            elif type(eff) is Tlbi:
                if eff.kind == "vmid_range" and self.range_tlbi is None:
                    self.range_tlbi = e.index
                elif (eff.kind == "vmid" and requested
                      and self.full_tlbi_after_range_request is None):
                    self.full_tlbi_after_range_request = e.index

    # --- decisions -------------------------------------------------------------

    def infer(self, series: str | None = None,
              overrides: Mapping[str, bool | None] | None = None) -> PlatformFeatures:
        """Decide each feature: an override, else what the trace shows, else unknown.

        :param series: the kernel series (``"6.1"``), for the features a kernel never uses.
        :param overrides: feature name -> value given by the user (``None`` entries ignored).
        :raises ValueError: an override names an unknown feature.
        """
        overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        for name in overrides:
            if name not in FEATURES:
                known = ", ".join(FEATURES)
                raise ValueError(f"unknown platform feature {name!r} (known: {known})")
        decided = {
            "fwb": self._fwb(),
            "hw_af": self._hw_af(),
            "tlb_range": self._tlb_range_feature(series),
            "vhe": self._vhe(),
            "mc": self._mc(),
        }
        for name, value in overrides.items():
            seen = decided[name]
            note = "given as an option"
            if seen.value is not None and seen.value != value:
                note += f"; the trace suggests {'yes' if seen.value else 'no'}: {seen.evidence}"
            decided[name] = Feature(name, bool(value), "override", note, seen.index)
        return PlatformFeatures(**decided)

    def _fwb(self) -> Feature:
        if self.unmap_with_cmo is not None:
            return Feature("fwb", False, "trace", "an unmap cleaned the data cache of a leaf",
                           self.unmap_with_cmo)
        if self.flush_with_cmo is not None:
            return Feature("fwb", False, "trace", "a flush cleaned the data cache",
                           self.flush_with_cmo)
        if self.unmaps_with_puts >= _ENOUGH:
            return Feature("fwb", True, "trace",
                           f"{self.unmaps_with_puts} unmaps removed entries and none cleaned "
                           "the data cache", self.unmaps_without_cmo)
        if self.deferred_range_unmap is not None:
            return Feature("fwb", True, "trace", "an unmap deferred its TLB invalidation to a "
                           "range flush (needs FWB)", self.deferred_range_unmap)
        return Feature("fwb", None, "unknown", "no unmap or flush of mapped memory in the trace")

    def _hw_af(self) -> Feature:
        if self.mkyoung is not None:
            return Feature("hw_af", False, "trace",
                           "the kernel handled an access-flag fault (mkyoung)", self.mkyoung)
        if self.af_set_by_hw is not None:
            return Feature("hw_af", True, "trace", "a page aged by mkold/test_clear_young was "
                           "young again with no access-flag fault handled", self.af_set_by_hw)
        return Feature("hw_af", None, "unknown", "no mkyoung and no page seen young again")

    def _tlb_range_feature(self, series: str | None) -> Feature:
        if self.range_tlbi is not None:
            return Feature("tlb_range", True, "trace", "__kvm_tlb_flush_vmid_range fired",
                           self.range_tlbi)
        if self.full_tlbi_after_range_request is not None:
            return Feature("tlb_range", False, "trace", "a range flush request became a full "
                           "VMID flush", self.full_tlbi_after_range_request)
        if self.deferred_range_unmap is not None:
            return Feature("tlb_range", True, "trace", "an unmap deferred its TLB invalidation "
                           "to a range flush (needs FEAT_TLBIRANGE)", self.deferred_range_unmap)
        if series is not None and series_version(series) < (6, 6):
            return Feature("tlb_range", None, "kernel",
                           f"irrelevant: Linux {series}'s pgtable.c does not use range TLBIs")
        return Feature("tlb_range", None, "unknown", "no range TLB flush request in the trace")

    def _vhe(self) -> Feature:
        if self.tlbi_seen is not None:
            return Feature("vhe", True, "trace", "TLB invalidation helpers ran at EL1",
                           self.tlbi_seen)
        if self.unmaps_with_puts >= _ENOUGH:
            return Feature("vhe", False, "trace", f"{self.unmaps_with_puts} unmaps removed "
                           "entries and no TLB invalidation was seen (they run at EL2)")
        return Feature("vhe", None, "unknown", "too few unmaps to tell")

    def _mc(self) -> Feature:
        total = self.maps_with_mc + self.maps_without_mc
        counts = f"{self.maps_with_mc} of {total} maps had a memory cache"
        if total == 0:
            return Feature("mc", None, "unknown", "no map in the trace")
        if self.maps_without_mc == 0:
            return Feature("mc", True, "trace", counts, self.first_map_with_mc)
        if self.maps_with_mc == 0:
            return Feature("mc", False, "trace", counts, self.first_map_without_mc)
        return Feature("mc", None, "trace", counts + " (per operation: see its mc argument)",
                       self.first_map_without_mc)


_DMESG = {
    "Stage-2 Force Write-Back": "fwb",
    "Hardware dirty bit management": "hw_af",
    "TLB range maintenance instructions": "tlb_range",
}


def features_from_dmesg(text: str) -> dict[str, bool]:
    """Platform features from a kernel boot log (``CPU features: detected: ...`` lines).

    A feature the log does not list as detected is absent. ``vhe`` comes from KVM's
    own line: ``kvm [1]: VHE mode initialized successfully`` (VHE) or ``Hyp mode`` /
    ``Hyp nVHE mode`` / ``Protected nVHE mode initialized successfully`` (nVHE).
    """
    found = {name: False for name in _DMESG.values()}
    found["vhe"] = False
    for line in text.splitlines():
        if "CPU features: detected:" in line:
            what = line.split("CPU features: detected:", 1)[1].strip()
            for label, name in _DMESG.items():
                if what.startswith(label):
                    found[name] = True
        elif "kvm [" in line and "]: VHE mode initialized successfully" in line:
            found["vhe"] = True
    return found
