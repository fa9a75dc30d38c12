"""The kernel structures the stage-2 code passes around, cut down to what it uses.

``struct kvm_pgtable`` (asm/kvm_pgtable.h), ``struct kvm_s2_mmu``,
``struct kvm_arch`` (asm/kvm_host.h, reduced like the oracle harness's:
``arch->mmu``, ``arch->vtcr``, ``mmu->arch``, ``mmu->pgt``; 6.12 also reads
``mmu->vtcr`` and ``mmu->split_page_cache``) and ``struct
kvm_mmu_memory_cache`` (reduced to ``nobjs``, as in the oracle). One
:class:`KvmPgtable` per stage-2 root; each points at the
:class:`~ptreplay.model.memory.Machine` it runs on (``pgt.m``), the model's
stand-in for the kernel's globals, so many roots can live side by side.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ptreplay.model.memory import KvmPgtableMmOps, Machine

__all__ = [
    "KvmArch", "KvmS2Mmu", "KvmMmuMemoryCache", "KvmPgtable", "ForcePteCb",
    "E2BIG", "EAGAIN", "ENOMEM", "EEXIST", "EINVAL", "ERANGE", "EPERM",
]

#: ``kvm_pgtable_force_pte_cb_t``: ``(addr, end, prot) -> bool`` (6.1).
ForcePteCb = Callable[[int, int, int], bool]


class KvmArch:
    """``struct kvm_arch``: ``vtcr`` and the ``mmu`` it embeds."""

    __slots__ = ("vtcr", "mmu")

    def __init__(self, vtcr: int = 0) -> None:
        self.vtcr = vtcr
        self.mmu = KvmS2Mmu(self)


class KvmS2Mmu:
    """``struct kvm_s2_mmu``: back pointers to its ``arch`` and page table.

    ``vmid`` is not in the oracle's cut-down struct; it is kept for replay
    layers that need to tell the TLBIs of several guests apart. ``vtcr``
    (6.12 reads it here, older kernels from ``arch->vtcr``) starts as the
    arch's; ``split_page_cache`` is the cache ``kvm_pgtable_stage2_split``
    takes its pages from (6.12).
    """

    __slots__ = ("arch", "pgt", "vmid", "vtcr", "split_page_cache")

    def __init__(self, arch: KvmArch | None = None, vmid: int = 0) -> None:
        self.arch = arch
        self.pgt: KvmPgtable | None = None
        self.vmid = vmid
        self.vtcr = arch.vtcr if arch is not None else 0
        self.split_page_cache = KvmMmuMemoryCache(self)


class KvmMmuMemoryCache:
    """``struct kvm_mmu_memory_cache``, reduced to ``nobjs`` (pages it holds).

    ``mmu`` is the ``struct kvm_s2_mmu`` that embeds it (what 6.12's
    ``container_of(mc, struct kvm_s2_mmu, split_page_cache)`` finds).
    :meth:`take` is what ``mm_ops->zalloc_page(mc)`` does with it.
    """

    __slots__ = ("nobjs", "mmu")

    def __init__(self, mmu: KvmS2Mmu, nobjs: int = 0) -> None:
        self.nobjs = nobjs
        self.mmu = mmu

    def take(self) -> bool:
        """Take one page (``kvm_mmu_memory_cache_alloc``); False when empty."""
        if self.nobjs <= 0:
            return False
        self.nobjs -= 1
        return True


class KvmPgtable:
    """``struct kvm_pgtable``: one stage-2 page table (one root).

    ``pgd`` is the address of the first pgd page (``None`` for NULL, before
    init and after destroy). ``m`` is the machine the table lives on.
    """

    __slots__ = ("ia_bits", "start_level", "pgd", "mm_ops", "mmu", "flags", "force_pte_cb", "m")

    def __init__(self, m: Machine) -> None:
        self.ia_bits = 0
        self.start_level = 0
        self.pgd: int | None = None
        # Set by the init function (the C struct is filled in there too).
        self.mm_ops: KvmPgtableMmOps = None  # type: ignore[assignment]
        self.mmu: KvmS2Mmu = None  # type: ignore[assignment]
        self.flags = 0
        self.force_pte_cb: ForcePteCb | None = None
        self.m = m

# Linux errno values the stage-2 code returns (negated), independent of the host OS.
E2BIG = 7
EAGAIN = 11
ENOMEM = 12
EEXIST = 17
EINVAL = 22
ERANGE = 34
EPERM = 1
