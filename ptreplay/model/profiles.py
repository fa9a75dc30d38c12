"""Kernel profiles: which ``pgtable.c`` the model follows, as data.

A profile answers "which kernel source?" (the PROFILE axis); the machine the
code runs on (FWB, range TLBIs, ...) is the PLATFORM axis, kept apart in
:class:`~ptreplay.model.memory.Platform`. Each field below is one named
difference between linux-5.13 and linux-6.1, consulted at exactly one place in
:mod:`ptreplay.model.stage2`:

========================  ==============================  ==============================
field                     linux-5.13                      linux-6.1
========================  ==============================  ==============================
owner_shift               63:56 (56)                      9:2 (2)
table_tlbi_level          the entry's level               0 (``stage2_put_pte``)
cmo_via_mm_ops            no: ``__flush_dcache_area``     yes: ``mm_ops`` callbacks
                          direct, unmap/flush only        (map, unmap, flush, perms)
set_owner_force_pte       no (owner blocks possible)      yes (``.force_pte = true``)
has_force_pte_cb          no                              ``pgt->force_pte_cb``
relax_perms_rejects_sw    no                              ``-EINVAL`` on SW bits
prot_names                R W X DEVICE                    + SW0..SW3
init_function             ``kvm_pgtable_stage2_init_``    ``__kvm_pgtable_stage2_init``
                          ``flags``
========================  ==============================  ==============================

5.13 is v5.13's pgtable.c (the page-ownership series merged); 6.1 is Debian's
6.1.192. The walker is the same in both (``kvm_pgtable_walk`` with
TABLE_PRE / LEAF / TABLE_POST visits).

linux-6.12 and linux-6.12-16k are Debian's 6.12.117, built with 4 KiB and
16 KiB pages. Its walker has another shape (``struct kvm_pgtable_visit_ctx``,
``SHARED`` walks under RCU with ``cmpxchg`` stores, ``KVM_INVALID_PTE_LOCKED``
during break-before-make, RCU-deferred table frees, range TLBIs), so
``shared_walks`` selects sibling modules written in 6.12's order
(:mod:`~ptreplay.model.walker612`, :mod:`~ptreplay.model.stage2_612`,
:mod:`~ptreplay.model.scenario612`) instead of per-field branches. The other
fields still say what 6.12 does (owner bits 9:2, mm_ops CMOs, forced pages
for set_owner, ``force_pte_cb``, software bits refused by relax_perms, the
init function); ``granule`` is the build's ``PAGE_SIZE`` (the default
platform granule of the profile), ``locked_pte`` 6.12's ``KVM_INVALID_PTE_LOCKED``
and ``map_flag_names`` the walk flags a scenario's ``map`` may pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from ptreplay.errors import InputError
from ptreplay.model.geometry import GRANULE_4K, GRANULE_16K, Granule
from ptreplay.model.pte import (
    KVM_INVALID_PTE_LOCKED,
    KVM_PGTABLE_PROT_DEVICE,
    KVM_PGTABLE_PROT_NORMAL_NC,
    KVM_PGTABLE_PROT_R,
    KVM_PGTABLE_PROT_SW0,
    KVM_PGTABLE_PROT_SW1,
    KVM_PGTABLE_PROT_SW2,
    KVM_PGTABLE_PROT_SW3,
    KVM_PGTABLE_PROT_W,
    KVM_PGTABLE_PROT_X,
    TLBI_TTL_UNKNOWN,
    kvm_init_invalid_leaf_owner,
)
from ptreplay.model.walker612 import (
    KVM_PGTABLE_WALK_HANDLE_FAULT,
    KVM_PGTABLE_WALK_SHARED,
    KVM_PGTABLE_WALK_SKIP_BBM_TLBI,
    KVM_PGTABLE_WALK_SKIP_CMO,
)

__all__ = ["Profile", "LINUX_5_13", "LINUX_6_1", "LINUX_6_12", "LINUX_6_12_16K", "PROFILES",
           "DEFAULT_PROFILE", "get_profile"]

_BASE_PROTS = {
    "R": KVM_PGTABLE_PROT_R,
    "W": KVM_PGTABLE_PROT_W,
    "X": KVM_PGTABLE_PROT_X,
    "DEVICE": KVM_PGTABLE_PROT_DEVICE,
}
_SW_PROTS = {
    "SW0": KVM_PGTABLE_PROT_SW0,
    "SW1": KVM_PGTABLE_PROT_SW1,
    "SW2": KVM_PGTABLE_PROT_SW2,
    "SW3": KVM_PGTABLE_PROT_SW3,
}
_NC_PROTS = {"NORMAL_NC": KVM_PGTABLE_PROT_NORMAL_NC}
#: ``enum kvm_pgtable_walk_flags`` a 6.12 ``kvm_pgtable_stage2_map`` caller may pass.
_MAP_WALK_FLAGS = {
    "SHARED": KVM_PGTABLE_WALK_SHARED,
    "HANDLE_FAULT": KVM_PGTABLE_WALK_HANDLE_FAULT,
    "SKIP_BBM_TLBI": KVM_PGTABLE_WALK_SKIP_BBM_TLBI,
    "SKIP_CMO": KVM_PGTABLE_WALK_SKIP_CMO,
}


@dataclass(frozen=True)
class Profile:
    """One kernel's ``pgtable.c``: the facts in which it differs from the others."""

    #: ``linux-5.13``, ``linux-6.1``, ``linux-6.12``, ``linux-6.12-16k``.
    name: str
    #: low bit of ``KVM_INVALID_PTE_OWNER_MASK`` (8 bits wide).
    owner_shift: int
    #: TLBI level ``stage2_put_pte`` uses when the entry is a table (None: its level).
    table_tlbi_level: int | None
    #: CMOs go through ``mm_ops->dcache_clean_inval_poc`` / ``icache_inval_pou``
    #: (6.1) rather than a direct ``__flush_dcache_area`` in unmap/flush (5.13).
    cmo_via_mm_ops: bool
    #: ``kvm_pgtable_stage2_set_owner`` sets ``map_data.force_pte`` (6.1).
    set_owner_force_pte: bool
    #: ``struct kvm_pgtable`` has ``force_pte_cb`` (6.1).
    has_force_pte_cb: bool
    #: ``kvm_pgtable_stage2_relax_perms`` returns -EINVAL for software bits (6.1).
    relax_perms_rejects_sw: bool
    #: the stage-2 init entry point the harness calls.
    init_function: str
    #: ``prot`` names the scenario language accepts, with their ``enum kvm_pgtable_prot``.
    prot_names: Mapping[str, int] = field(default_factory=dict)
    #: 6.12's walker: visit contexts, SHARED / HANDLE_FAULT / SKIP_* walk flags,
    #: RCU, ``KVM_INVALID_PTE_LOCKED``, deferred table frees, range TLBIs, split
    #: and test_clear_young. Selects the ``*612`` sibling modules.
    shared_walks: bool = False
    #: the build's ``PAGE_SIZE`` (the granule the profile's oracle was built for).
    granule: Granule = GRANULE_4K
    #: ``KVM_INVALID_PTE_LOCKED`` (6.12), None before.
    locked_pte: int | None = None
    #: ``enum kvm_pgtable_walk_flags`` names a scenario ``map`` may pass (6.12).
    map_flag_names: Mapping[str, int] = field(default_factory=dict)

    # -- what readers of this kernel's entries and TLBIs need (the checkers) ----------

    @property
    def page_shift(self) -> int:
        """``PAGE_SHIFT`` of the build."""
        return self.granule.page_shift

    @property
    def tlbi_no_level_hints(self) -> frozenset[int]:
        """TLBI ``level`` values that carry no level hint: 0 (``__tlbi_level()``
        ignores it) and the level this kernel passes for table entries when that
        is a "level unknown" marker (6.12's ``TLBI_TTL_UNKNOWN``)."""
        hints = {0}
        if self.table_tlbi_level is not None:
            hints.add(self.table_tlbi_level)
        return frozenset(hints)

    def owner_of(self, pte: int) -> int:
        """Owner id an invalid entry carries (``FIELD_GET(KVM_INVALID_PTE_OWNER_MASK)``);
        0 (the host) for a valid entry."""
        if pte & 1:
            return 0
        return (pte >> self.owner_shift) & 0xFF

    def owner_pte(self, owner_id: int) -> int:
        """``kvm_init_invalid_leaf_owner(owner_id)`` of this kernel."""
        return kvm_init_invalid_leaf_owner(owner_id, self.owner_shift)


LINUX_5_13 = Profile(
    name="linux-5.13",
    owner_shift=56,
    table_tlbi_level=None,
    cmo_via_mm_ops=False,
    set_owner_force_pte=False,
    has_force_pte_cb=False,
    relax_perms_rejects_sw=False,
    init_function="kvm_pgtable_stage2_init_flags",
    prot_names=MappingProxyType(dict(_BASE_PROTS)),
)

LINUX_6_1 = Profile(
    name="linux-6.1",
    owner_shift=2,
    table_tlbi_level=0,
    cmo_via_mm_ops=True,
    set_owner_force_pte=True,
    has_force_pte_cb=True,
    relax_perms_rejects_sw=True,
    init_function="__kvm_pgtable_stage2_init",
    prot_names=MappingProxyType({**_BASE_PROTS, **_SW_PROTS}),
)

LINUX_6_12 = Profile(
    name="linux-6.12",
    owner_shift=2,
    table_tlbi_level=TLBI_TTL_UNKNOWN,
    cmo_via_mm_ops=True,
    set_owner_force_pte=True,
    has_force_pte_cb=True,
    relax_perms_rejects_sw=True,
    init_function="__kvm_pgtable_stage2_init",
    prot_names=MappingProxyType({**_BASE_PROTS, **_NC_PROTS, **_SW_PROTS}),
    shared_walks=True,
    locked_pte=KVM_INVALID_PTE_LOCKED,
    map_flag_names=MappingProxyType(dict(_MAP_WALK_FLAGS)),
)

LINUX_6_12_16K = replace(LINUX_6_12, name="linux-6.12-16k", granule=GRANULE_16K)

PROFILES: Mapping[str, Profile] = MappingProxyType(
    {p.name: p for p in (LINUX_5_13, LINUX_6_1, LINUX_6_12, LINUX_6_12_16K)})


#: the profile of the real recordings (Debian 6.1), used when nothing says otherwise.
DEFAULT_PROFILE = "linux-6.1"


def get_profile(name: str) -> Profile:
    """The profile called ``name``; an unknown name is an :class:`InputError` listing
    the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise InputError(f"unknown profile {name!r} (known: {', '.join(PROFILES)})",
                         "--profile") from None
