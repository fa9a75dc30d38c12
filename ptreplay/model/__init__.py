"""A model of ``arch/arm64/kvm/hyp/pgtable.c``'s guest stage-2 code (Linux 5.13, 6.1, 6.12).

For the same operations it performs the same side effects, in the same order,
as the kernel code (checked against the kernel oracle in
``shared/conformance/oracle``). Modules, bottom up:

* :mod:`~ptreplay.model.geometry` - granule, levels, pgd pages, VTCR_EL2;
* :mod:`~ptreplay.model.pte` - descriptor bits and pure PTE helpers;
* :mod:`~ptreplay.model.profiles` - linux-5.13 / 6.1 / 6.12 / 6.12-16k as data;
* :mod:`~ptreplay.model.memory` - the machine (memory, barriers, effects) and mm_ops;
* :mod:`~ptreplay.model.structs` - struct kvm_pgtable, kvm_s2_mmu, kvm_arch;
* :mod:`~ptreplay.model.walker` - kvm_pgtable_walk (5.13, 6.1);
* :mod:`~ptreplay.model.stage2` - the stage-2 operations and their visitors (5.13, 6.1);
* :mod:`~ptreplay.model.walker612` - 6.12's walker (visit contexts, shared walks, RCU);
* :mod:`~ptreplay.model.stage2_612` - 6.12's stage-2 operations (split, test_clear_young, ...);
* :mod:`~ptreplay.model.state` - read-only dumps, leaves and invariant checks;
* :mod:`~ptreplay.model.scenario` - the oracle's scenario language and output
  (:mod:`~ptreplay.model.scenario612` for 6.12).

:func:`new_stage2` builds a ready page table for library users;
:func:`stage2_code` is the module whose ``kvm_pgtable_stage2_*`` functions
run a profile's kernel.
"""

from __future__ import annotations

from types import ModuleType

from ptreplay.model.geometry import (
    GRANULE_4K,
    ID_AA64MMFR0_EL1_PARANGE_48,
    ID_AA64MMFR1_EL1_VMIDBITS_16,
    VTCR_EL2_SL0_MASK,
    VTCR_EL2_SL0_SHIFT,
    Granule,
    kvm_get_vtcr,
)
from ptreplay.model.memory import (
    KvmPgtableMmOps,
    Machine,
    Memcache,
    OracleMmOps,
    Platform,
)
from ptreplay.model.profiles import (
    LINUX_5_13,
    LINUX_6_1,
    LINUX_6_12,
    LINUX_6_12_16K,
    PROFILES,
    Profile,
    get_profile,
)
from ptreplay.model.structs import KvmArch, KvmPgtable

__all__ = [
    "GRANULE_4K",
    "Granule",
    "KvmArch",
    "KvmPgtable",
    "KvmPgtableMmOps",
    "LINUX_5_13",
    "LINUX_6_1",
    "LINUX_6_12",
    "LINUX_6_12_16K",
    "Machine",
    "Memcache",
    "OracleMmOps",
    "PROFILES",
    "Platform",
    "Profile",
    "get_profile",
    "new_stage2",
    "stage2_code",
    "stage2_vtcr",
]


def stage2_vtcr(ia_bits: int, start_level: int | None = None,
                granule: Granule = GRANULE_4K) -> int:
    """VTCR_EL2 as the oracle harness builds it: ``kvm_get_vtcr`` (48-bit PA, 16-bit
    VMID), with SL0 replaced when ``start_level`` is given."""
    vtcr = kvm_get_vtcr(ID_AA64MMFR0_EL1_PARANGE_48, ID_AA64MMFR1_EL1_VMIDBITS_16 << 4,
                        ia_bits, granule)
    if start_level is not None:
        vtcr = (vtcr & ~VTCR_EL2_SL0_MASK) | (
            (granule.tgran_sl0_base - start_level) << VTCR_EL2_SL0_SHIFT)
    return vtcr


def stage2_code(profile: Profile) -> ModuleType:
    """The module with ``profile``'s pgtable.c functions.

    :mod:`ptreplay.model.stage2` (linux-5.13, linux-6.1) or
    :mod:`ptreplay.model.stage2_612` (linux-6.12, linux-6.12-16k). Both have
    ``kvm_pgtable_stage2_map/set_owner/unmap/wrprotect/relax_perms/mkyoung/
    flush/destroy`` (6.12's map takes walk ``flags`` as a last, optional
    argument); 6.12 replaces ``mkold``/``is_young`` by ``test_clear_young``
    and adds ``split``. After each 6.12 operation a caller that wants the
    oracle's behaviour ends the RCU grace period: ``m.rcu_barrier()``.
    """
    if profile.shared_walks:
        from ptreplay.model import stage2_612

        return stage2_612
    from ptreplay.model import stage2

    return stage2


def new_stage2(m: Machine, mm_ops: KvmPgtableMmOps, vtcr: int, flags: int = 0,
               force_pte_cb=None) -> tuple[int, KvmPgtable]:  # type: ignore[no-untyped-def]
    """Initialise a stage-2 page table on ``m`` with the profile's init function.

    Returns ``(ret, pgt)``; ``ret`` is the kernel's (0 or -ENOMEM). Several
    tables may share one machine and one ``mm_ops`` (one object per root).
    """
    stage2 = stage2_code(m.profile)

    arch = KvmArch(vtcr)
    pgt = KvmPgtable(m)
    arch.mmu.pgt = pgt
    if m.profile.has_force_pte_cb:
        init = getattr(stage2, "__kvm_pgtable_stage2_init")
        ret = init(pgt, arch.mmu, mm_ops, flags, force_pte_cb)
    else:
        ret = stage2.kvm_pgtable_stage2_init_flags(pgt, arch, mm_ops, flags)
    return ret, pgt
