"""Kernel profiles: which ``pgtable.c`` the model follows, as data.

A profile answers "which kernel source?" (the PROFILE axis); the machine the
code runs on (granule, FWB, ...) is the PLATFORM axis, kept apart in
:class:`~ptreplay.model.memory.Platform`. Each field below is one named
difference between the kernels, consulted at exactly one place in
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
TABLE_PRE / LEAF / TABLE_POST visits); 6.12's shared walks, locked PTEs and
RCU-deferred frees would be a further profile with a different walker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ptreplay.model.pte import (
    KVM_PGTABLE_PROT_DEVICE,
    KVM_PGTABLE_PROT_R,
    KVM_PGTABLE_PROT_SW0,
    KVM_PGTABLE_PROT_SW1,
    KVM_PGTABLE_PROT_SW2,
    KVM_PGTABLE_PROT_SW3,
    KVM_PGTABLE_PROT_W,
    KVM_PGTABLE_PROT_X,
)

__all__ = ["Profile", "LINUX_5_13", "LINUX_6_1", "PROFILES", "get_profile"]

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


@dataclass(frozen=True)
class Profile:
    """One kernel's ``pgtable.c``: the facts in which it differs from the others."""

    #: ``linux-5.13``, ``linux-6.1``.
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

PROFILES: Mapping[str, Profile] = MappingProxyType({p.name: p for p in (LINUX_5_13, LINUX_6_1)})


def get_profile(name: str) -> Profile:
    """The profile called ``name``; ``KeyError`` lists the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown profile {name!r} (known: {', '.join(PROFILES)})") from None
