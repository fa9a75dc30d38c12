"""The guest stage-2 code of Linux 6.12's ``arch/arm64/kvm/hyp/pgtable.c``.

Debian 6.12.117's pgtable.c from ``struct stage2_map_data`` to
``kvm_pgtable_stage2_free_unlinked``, one Python function per C function, in
the file's order and under the kernel's names, for the linux-6.12 and
linux-6.12-16k profiles (the granule comes from the machine). The walker
underneath is :mod:`ptreplay.model.walker612`; visitors take a
:class:`~ptreplay.model.walker612.KvmPgtableVisitCtx` and a visit kind.

What is new against 6.1 (:mod:`ptreplay.model.stage2`):

* break-before-make is :func:`stage2_try_break_pte` (store
  ``KVM_INVALID_PTE_LOCKED``, TLBI the old entry, drop its reference) then
  :func:`stage2_make_pte` (take a reference, store the new entry); in a
  ``SHARED`` walk the first store is a ``cmpxchg`` against the value read
  and a lost race gives ``-EAGAIN``;
* map replaces a table by a block in its TABLE_PRE visit and hands the old
  table to ``mm_ops->free_unlinked_table`` (freed after an RCU grace
  period) instead of the 6.1 anchor walk;
* table TLBIs are ranges (:func:`kvm_tlb_flush_vmid_range`; unmap may defer
  its leaf TLBIs to one range flush), table TLBI level hints are
  ``TLBI_TTL_UNKNOWN``;
* the walk flags of the caller: ``SHARED``/``HANDLE_FAULT`` (relax_perms,
  mkyoung and KVM's fault path), ``SKIP_BBM_TLBI``/``SKIP_CMO`` (unlinked
  tables);
* new operations: :func:`kvm_pgtable_stage2_test_clear_young` (replacing
  mkold / is_young), :func:`kvm_pgtable_stage2_split` with
  :func:`kvm_pgtable_stage2_create_unlinked`; ``KVM_PGTABLE_PROT_NORMAL_NC``.

Conventions as in :mod:`ptreplay.model.stage2`: the machine is ``pgt.m`` /
``ctx.mm_ops.m`` (the C's globals), pointers are ints (``None`` for NULL; an
``ERR_PTR`` is a negative errno), values returned through pointer arguments
are returned. The hyp stage-1 functions, ``kvm_pgtable_get_leaf`` and
``kvm_get_vtcr`` (:func:`ptreplay.model.geometry.kvm_get_vtcr`: the same
without LPA2) are not repeated here.
"""

from __future__ import annotations

from typing import Any

from ptreplay.effects import Tlbi
from ptreplay.model.geometry import VTCR_EL2_IPA, kvm_pgd_pages, vtcr_start_level
from ptreplay.model.memory import KvmPgtableMmOps, Machine, Memcache
from ptreplay.model.pte import (
    KVM_INVALID_PTE_LOCKED,
    KVM_MAX_OWNER_ID,
    KVM_PGTABLE_PROT_DEVICE,
    KVM_PGTABLE_PROT_NORMAL_NC,
    KVM_PGTABLE_PROT_R,
    KVM_PGTABLE_PROT_W,
    KVM_PGTABLE_PROT_X,
    KVM_PGTABLE_S2_IDMAP,
    KVM_PHYS_INVALID,
    KVM_PTE_LEAF_ATTR_HI_S2_XN,
    KVM_PTE_LEAF_ATTR_HI_SW,
    KVM_PTE_LEAF_ATTR_LO,
    KVM_PTE_LEAF_ATTR_LO_S2_AF,
    KVM_PTE_LEAF_ATTR_LO_S2_MEMATTR,
    KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R,
    KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W,
    KVM_PTE_LEAF_ATTR_LO_S2_SH_IS,
    KVM_PTE_VALID,
    MT_S2_FWB_NORMAL,
    MT_S2_FWB_NORMAL_NC,
    MT_S2_NORMAL,
    MT_S2_NORMAL_NC,
    TLBI_TTL_UNKNOWN,
    MT_S2_DEVICE_nGnRE,
    MT_S2_FWB_DEVICE_nGnRE,
    genmask,
    kvm_init_invalid_leaf_owner,
    kvm_init_valid_leaf_pte,
    kvm_pte_table,
    kvm_pte_valid,
    stage2_pte_is_counted,
    stage2_pte_needs_update,
)
from ptreplay.model.stage2 import (
    __kvm_tlb_flush_vmid,
    __kvm_tlb_flush_vmid_ipa,
    kvm_call_hyp,
    kvm_pgtable_stage2_pte_prot,
    stage2_has_fwb,
)
from ptreplay.model.structs import (
    E2BIG,
    EAGAIN,
    EINVAL,
    ENOMEM,
    ForcePteCb,
    KvmMmuMemoryCache,
    KvmPgtable,
    KvmS2Mmu,
)
from ptreplay.model.walker612 import (
    KVM_PGTABLE_LAST_LEVEL,
    KVM_PGTABLE_WALK_HANDLE_FAULT,
    KVM_PGTABLE_WALK_LEAF,
    KVM_PGTABLE_WALK_SHARED,
    KVM_PGTABLE_WALK_SKIP_BBM_TLBI,
    KVM_PGTABLE_WALK_SKIP_CMO,
    KVM_PGTABLE_WALK_TABLE_POST,
    KVM_PGTABLE_WALK_TABLE_PRE,
    KvmPgtableVisitCtx,
    KvmPgtableWalkData,
    KvmPgtableWalker,
    __kvm_pgtable_walk,
    kvm_block_mapping_supported,
    kvm_clear_pte,
    kvm_init_table_pte,
    kvm_pgtable_walk,
    kvm_pgtable_walk_shared,
    kvm_pgtable_walk_skip_bbm_tlbi,
    kvm_pgtable_walk_skip_cmo,
    kvm_pte_follow,
)

__all__ = [
    "MAX_TLBI_RANGE_PAGES",
    "__kvm_tlb_flush_vmid_range",
    "__kvm_tlb_flush_vmid_ipa_nsh",
    "Stage2MapData",
    "stage2_has_fwb",
    "kvm_tlb_flush_vmid_range",
    "KVM_S2_MEMATTR",
    "stage2_set_prot_attr",
    "kvm_pgtable_stage2_pte_prot",
    "stage2_pte_is_locked",
    "stage2_try_set_pte",
    "stage2_try_break_pte",
    "stage2_make_pte",
    "stage2_unmap_defer_tlb_flush",
    "stage2_unmap_put_pte",
    "stage2_pte_cacheable",
    "stage2_pte_executable",
    "stage2_map_walker_phys_addr",
    "stage2_leaf_mapping_allowed",
    "stage2_map_walker_try_leaf",
    "stage2_map_walk_table_pre",
    "stage2_map_walk_leaf",
    "stage2_map_walker",
    "kvm_pgtable_stage2_map",
    "kvm_pgtable_stage2_set_owner",
    "stage2_unmap_walker",
    "kvm_pgtable_stage2_unmap",
    "Stage2AttrData",
    "stage2_attr_walker",
    "stage2_update_leaf_attrs",
    "kvm_pgtable_stage2_wrprotect",
    "kvm_pgtable_stage2_mkyoung",
    "Stage2AgeData",
    "stage2_age_walker",
    "kvm_pgtable_stage2_test_clear_young",
    "kvm_pgtable_stage2_relax_perms",
    "stage2_flush_walker",
    "kvm_pgtable_stage2_flush",
    "kvm_pgtable_stage2_create_unlinked",
    "stage2_block_get_nr_page_tables",
    "stage2_split_walker",
    "kvm_pgtable_stage2_split",
    "__kvm_pgtable_stage2_init",
    "kvm_pgtable_stage2_pgd_size",
    "stage2_free_walker",
    "kvm_pgtable_stage2_destroy",
    "kvm_pgtable_stage2_free_unlinked",
]

#: ``MAX_TLBI_RANGE_PAGES`` (asm/tlbflush.h): ``__TLBI_RANGE_PAGES(31, 3)``.
MAX_TLBI_RANGE_PAGES = (31 + 1) << (5 * 3 + 1)

#: ``KVM_PTE_LEAF_ATTR_HI`` in 6.12 (bit 50, stage-1 GP, joined it; stage-2
#: attributes never set it, so the 6.1 mask in ``kvm_init_valid_leaf_pte`` is equivalent).
KVM_PTE_LEAF_ATTR_HI = genmask(63, 50)

_MEMATTR = {  # PAGE_S2_MEMATTR(attr, has_fwb) -> (MT_S2_<attr>, MT_S2_FWB_<attr>)
    "NORMAL": (MT_S2_NORMAL, MT_S2_FWB_NORMAL),
    "NORMAL_NC": (MT_S2_NORMAL_NC, MT_S2_FWB_NORMAL_NC),
    "DEVICE_nGnRE": (MT_S2_DEVICE_nGnRE, MT_S2_FWB_DEVICE_nGnRE),
}


# -- hypercalls new in 6.12 (arch/arm64/kvm/hyp/*/tlb.c) ------------------------

def __kvm_tlb_flush_vmid_range(mmu: KvmS2Mmu, start: int, pages: int) -> None:
    """``__kvm_tlb_flush_vmid_range()``: invalidate ``pages`` pages of IPA from ``start``.

    One ``tlbi vmid_range`` effect for the whole hypercall (range TLBIs and
    their barriers).
    """
    assert mmu.pgt is not None
    mmu.pgt.m.emit(Tlbi("vmid_range", start, pages=pages))


def __kvm_tlb_flush_vmid_ipa_nsh(mmu: KvmS2Mmu, ipa: int, level: int) -> None:
    """``__kvm_tlb_flush_vmid_ipa_nsh()``: invalidate one IPA on this CPU only."""
    assert mmu.pgt is not None
    mmu.pgt.m.emit(Tlbi("vmid_ipa_nsh", ipa, level))


# -- pgtable.c, from struct stage2_map_data on -----------------------------------

class Stage2MapData:
    """``struct stage2_map_data`` (6.12): what a map / set_owner / create_unlinked walk maps.

    ``phys`` stays the start PA (:func:`stage2_map_walker_phys_addr` offsets
    it by how far the walk got). The C struct's ``anchor`` and ``childp`` are
    unused in 6.12 and left out.
    """

    __slots__ = ("phys", "attr", "owner_id", "mmu", "memcache", "force_pte")

    def __init__(self, phys: int, mmu: KvmS2Mmu, memcache: Any, *, owner_id: int = 0,
                 force_pte: bool = False) -> None:
        self.phys = phys
        self.attr = 0
        self.owner_id = owner_id
        self.mmu = mmu
        self.memcache = memcache
        self.force_pte = force_pte


# kvm_get_vtcr(): geometry.kvm_get_vtcr (6.12's sets VTCR_EL2.DS with LPA2 only).
# stage2_has_fwb(pgt): the same as 6.1's (imported from ptreplay.model.stage2).


def kvm_tlb_flush_vmid_range(mmu: KvmS2Mmu, addr: int, size: int) -> None:
    """``kvm_tlb_flush_vmid_range()`` (6.12): range TLBIs in chunks, or the whole VMID.

    Without FEAT_TLBIRANGE one ``__kvm_tlb_flush_vmid``; with it one
    ``__kvm_tlb_flush_vmid_range`` per ``MAX_TLBI_RANGE_PAGES`` pages (none
    for a size below a page).
    """
    assert mmu.pgt is not None
    m = mmu.pgt.m

    if not m.system_supports_tlb_range():
        kvm_call_hyp(__kvm_tlb_flush_vmid, mmu)
        return

    page_shift = m.granule.page_shift
    pages = size >> page_shift
    while pages > 0:
        inval_pages = min(pages, MAX_TLBI_RANGE_PAGES)
        kvm_call_hyp(__kvm_tlb_flush_vmid_range, mmu, addr, inval_pages)

        addr += inval_pages << page_shift
        pages -= inval_pages


def KVM_S2_MEMATTR(pgt: KvmPgtable, attr: str) -> int:  # noqa: N802 - the kernel's macro
    """``KVM_S2_MEMATTR(pgt, NORMAL | NORMAL_NC | DEVICE_nGnRE)``: ``PAGE_S2_MEMATTR``."""
    mt, mt_fwb = _MEMATTR[attr]
    return (mt_fwb if stage2_has_fwb(pgt) else mt) << 2  # PTE_S2_MEMATTR()


def stage2_set_prot_attr(pgt: KvmPgtable, prot: int) -> tuple[int, int]:
    """``stage2_set_prot_attr()`` (6.12); returns ``(ret, attr)``.

    Device and Normal-NC are exclusive and never executable; without LPA2
    the shareability bits are set.
    """
    sh = KVM_PTE_LEAF_ATTR_LO_S2_SH_IS

    kind = prot & (KVM_PGTABLE_PROT_DEVICE | KVM_PGTABLE_PROT_NORMAL_NC)
    if kind == KVM_PGTABLE_PROT_DEVICE | KVM_PGTABLE_PROT_NORMAL_NC:
        return -EINVAL, 0
    if kind == KVM_PGTABLE_PROT_DEVICE:
        if prot & KVM_PGTABLE_PROT_X:
            return -EINVAL, 0
        attr = KVM_S2_MEMATTR(pgt, "DEVICE_nGnRE")
    elif kind == KVM_PGTABLE_PROT_NORMAL_NC:
        if prot & KVM_PGTABLE_PROT_X:
            return -EINVAL, 0
        attr = KVM_S2_MEMATTR(pgt, "NORMAL_NC")
    else:
        attr = KVM_S2_MEMATTR(pgt, "NORMAL")

    if not prot & KVM_PGTABLE_PROT_X:
        attr |= KVM_PTE_LEAF_ATTR_HI_S2_XN

    if prot & KVM_PGTABLE_PROT_R:
        attr |= KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R

    if prot & KVM_PGTABLE_PROT_W:
        attr |= KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W

    attr |= sh << 8  # !kvm_lpa2_is_enabled(): FIELD_PREP(KVM_PTE_LEAF_ATTR_LO_S2_SH, sh)

    attr |= KVM_PTE_LEAF_ATTR_LO_S2_AF
    attr |= prot & KVM_PTE_LEAF_ATTR_HI_SW
    return 0, attr


# kvm_pgtable_stage2_pte_prot(): the same as 6.1's (imported from ptreplay.model.stage2).
# stage2_pte_needs_update(), stage2_pte_is_counted() (!!pte): pte.py, as in 6.1.


def stage2_pte_is_locked(pte: int) -> bool:
    """``stage2_pte_is_locked()``: an invalid entry with ``KVM_INVALID_PTE_LOCKED``."""
    return not pte & KVM_PTE_VALID and bool(pte & KVM_INVALID_PTE_LOCKED)


def stage2_try_set_pte(ctx: KvmPgtableVisitCtx, new: int) -> bool:
    """``stage2_try_set_pte()``: a plain store, or in a shared walk a ``cmpxchg`` against
    the value the walk read (False: another walker changed the entry)."""
    m = ctx.mm_ops.m
    if not ctx.flags & KVM_PGTABLE_WALK_SHARED:  # !kvm_pgtable_walk_shared(ctx)
        m.WRITE_ONCE(ctx.ptep, new)
        return True

    return m.cmpxchg(ctx.ptep, ctx.old, new) == ctx.old


def stage2_try_break_pte(ctx: KvmPgtableVisitCtx, mmu: KvmS2Mmu) -> bool:
    """``stage2_try_break_pte()``: lock the entry, invalidate what it mapped, drop its reference.

    Returns False when the entry is already locked (another walker's
    break-before-make) or the ``cmpxchg`` lost a race. A table entry is
    invalidated by range, a valid leaf by IPA at its level, unless the walk
    skips break-before-make TLBIs.
    """
    mm_ops = ctx.mm_ops
    m = mm_ops.m

    if stage2_pte_is_locked(ctx.old):
        # Should never occur if this walker has exclusive access to the page tables.
        m.WARN_ON(not kvm_pgtable_walk_shared(ctx), "!kvm_pgtable_walk_shared(ctx)")
        return False

    if not stage2_try_set_pte(ctx, KVM_INVALID_PTE_LOCKED):
        return False

    if not kvm_pgtable_walk_skip_bbm_tlbi(ctx):
        # The TLB invalidation the evicted entry (if any) needs.
        if kvm_pte_table(ctx.old, ctx.level):
            size = 1 << m.granule.granule_shifts[ctx.level + 1]  # kvm_granule_size()
            addr = ctx.addr & ~(size - 1)  # ALIGN_DOWN(ctx->addr, size)

            kvm_tlb_flush_vmid_range(mmu, addr, size)
        elif kvm_pte_valid(ctx.old):
            kvm_call_hyp(__kvm_tlb_flush_vmid_ipa, mmu, ctx.addr, ctx.level)

    if stage2_pte_is_counted(ctx.old):
        mm_ops.put_page(ctx.ptep)

    return True


def stage2_make_pte(ctx: KvmPgtableVisitCtx, new: int) -> None:
    """``stage2_make_pte()``: take the new entry's reference, then publish it."""
    mm_ops = ctx.mm_ops
    m = mm_ops.m

    m.WARN_ON(not stage2_pte_is_locked(m.load(ctx.ptep)), "!stage2_pte_is_locked(*ctx->ptep)")

    if stage2_pte_is_counted(new):
        mm_ops.get_page(ctx.ptep)

    m.smp_store_release(ctx.ptep, new)


def stage2_unmap_defer_tlb_flush(pgt: KvmPgtable) -> bool:
    """``stage2_unmap_defer_tlb_flush()``: leaf TLBIs of an unmap become one range flush
    when the CPU has range TLBIs and no CMOs are needed (FWB)."""
    return pgt.m.system_supports_tlb_range() and stage2_has_fwb(pgt)


def stage2_unmap_put_pte(ctx: KvmPgtableVisitCtx, mmu: KvmS2Mmu,
                         mm_ops: KvmPgtableMmOps) -> None:
    """``stage2_unmap_put_pte()``: clear the entry (TLBI unless deferred), drop its reference."""
    pgt: KvmPgtable = ctx.arg
    m = mm_ops.m

    # Clear the entry; break-before-make if it was valid, the TLBI maybe deferred.
    if kvm_pte_valid(ctx.old):
        kvm_clear_pte(m, ctx.ptep)

        if kvm_pte_table(ctx.old, ctx.level):
            kvm_call_hyp(__kvm_tlb_flush_vmid_ipa, mmu, ctx.addr, TLBI_TTL_UNKNOWN)
        elif not stage2_unmap_defer_tlb_flush(pgt):
            kvm_call_hyp(__kvm_tlb_flush_vmid_ipa, mmu, ctx.addr, ctx.level)

    mm_ops.put_page(ctx.ptep)


def stage2_pte_cacheable(pgt: KvmPgtable, pte: int) -> bool:
    """``stage2_pte_cacheable()`` (6.12): a valid entry with this table's Normal MemAttr."""
    memattr = pte & KVM_PTE_LEAF_ATTR_LO_S2_MEMATTR
    return kvm_pte_valid(pte) and memattr == KVM_S2_MEMATTR(pgt, "NORMAL")


def stage2_pte_executable(pte: int) -> bool:
    """``stage2_pte_executable()`` (6.12): a valid entry with XN clear."""
    return kvm_pte_valid(pte) and not pte & KVM_PTE_LEAF_ATTR_HI_S2_XN


def stage2_map_walker_phys_addr(ctx: KvmPgtableVisitCtx, data: Stage2MapData) -> int:
    """``stage2_map_walker_phys_addr()``: the PA for the visited IPA.

    An invalid PA (a set_owner walk) is passed through, not offset (it could
    wrap into a valid one).
    """
    phys = data.phys

    if phys >= 1 << 48:  # !kvm_phys_is_valid(phys)
        return phys

    return phys + (ctx.addr - ctx.start)


def stage2_leaf_mapping_allowed(ctx: KvmPgtableVisitCtx, data: Stage2MapData) -> bool:
    """``stage2_leaf_mapping_allowed()``: a leaf fits here, and blocks are not forced off."""
    phys = stage2_map_walker_phys_addr(ctx, data)

    if data.force_pte and ctx.level < KVM_PGTABLE_LAST_LEVEL:
        return False

    return kvm_block_mapping_supported(ctx, phys)


def stage2_map_walker_try_leaf(ctx: KvmPgtableVisitCtx, data: Stage2MapData) -> int:
    """``stage2_map_walker_try_leaf()`` (6.12): install a leaf or owner annotation here.

    ``-E2BIG`` when no leaf fits at this level, ``-EAGAIN`` when the entry
    already maps the same thing (up to permissions) or a race was lost. A
    change of software bits only, in an exclusive walk, is stored in place
    (fixing the refcount); anything else goes through break-before-make.
    """
    mm_ops = ctx.mm_ops
    m = mm_ops.m
    g = m.granule
    phys = stage2_map_walker_phys_addr(ctx, data)
    granule = 1 << g.granule_shifts[ctx.level + 1]  # kvm_granule_size(ctx->level)
    pgt = data.mmu.pgt
    assert pgt is not None

    if not stage2_leaf_mapping_allowed(ctx, data):
        return -E2BIG

    if phys < 1 << 48:  # kvm_phys_is_valid(phys)
        new = kvm_init_valid_leaf_pte(phys, data.attr, ctx.level, g)
    else:
        new = kvm_init_invalid_leaf_owner(data.owner_id, m.profile.owner_shift)

    # Recreating the same mapping, or only changing permissions: leave it to
    # the vCPU's next fault (relax_perms).
    if not stage2_pte_needs_update(ctx.old, new):
        return -EAGAIN

    # Only software bits change: store them and go.
    if not kvm_pgtable_walk_shared(ctx) and not (ctx.old ^ new) & ~KVM_PTE_LEAF_ATTR_HI_SW:
        old_is_counted = stage2_pte_is_counted(ctx.old)

        if old_is_counted != stage2_pte_is_counted(new):
            if old_is_counted:
                mm_ops.put_page(ctx.ptep)
            else:
                mm_ops.get_page(ctx.ptep)
        m.WARN_ON_ONCE(not stage2_try_set_pte(ctx, new), "!stage2_try_set_pte(ctx, new)")
        return 0

    if not stage2_try_break_pte(ctx, data.mmu):
        return -EAGAIN

    # CMOs before the guest can use the new entry
    if not kvm_pgtable_walk_skip_cmo(ctx) and mm_ops.dcache_clean_inval_poc is not None and \
            stage2_pte_cacheable(pgt, new):
        mm_ops.dcache_clean_inval_poc(kvm_pte_follow(new, mm_ops), granule)

    if not kvm_pgtable_walk_skip_cmo(ctx) and mm_ops.icache_inval_pou is not None and \
            stage2_pte_executable(new):
        mm_ops.icache_inval_pou(kvm_pte_follow(new, mm_ops), granule)

    stage2_make_pte(ctx, new)

    return 0


def stage2_map_walk_table_pre(ctx: KvmPgtableVisitCtx, data: Stage2MapData) -> int:
    """``stage2_map_walk_table_pre()`` (6.12): replace a table by a block if one fits.

    The detached table goes to ``mm_ops->free_unlinked_table`` (freed after
    an RCU grace period); the walk does not descend into it.
    """
    mm_ops = ctx.mm_ops
    childp = kvm_pte_follow(ctx.old, mm_ops)

    if not stage2_leaf_mapping_allowed(ctx, data):
        return 0

    ret = stage2_map_walker_try_leaf(ctx, data)
    if ret:
        return ret

    mm_ops.free_unlinked_table(childp, ctx.level)
    return 0


def stage2_map_walk_leaf(ctx: KvmPgtableVisitCtx, data: Stage2MapData) -> int:
    """``stage2_map_walk_leaf()`` (6.12): map here, or install a table to descend into.

    An existing block (or annotation) is replaced by an empty table; the
    rest of it is faulted back lazily.
    """
    mm_ops = ctx.mm_ops
    m = mm_ops.m

    ret = stage2_map_walker_try_leaf(ctx, data)
    if ret != -E2BIG:
        return ret

    if m.WARN_ON(ctx.level == KVM_PGTABLE_LAST_LEVEL, "ctx->level == KVM_PGTABLE_LAST_LEVEL"):
        return -EINVAL

    if data.memcache is None:
        return -ENOMEM

    childp = mm_ops.zalloc_page(data.memcache)
    if childp is None:
        return -ENOMEM

    if not stage2_try_break_pte(ctx, data.mmu):
        mm_ops.put_page(childp)
        return -EAGAIN

    new = kvm_init_table_pte(childp, mm_ops)
    stage2_make_pte(ctx, new)

    return 0


def stage2_map_walker(ctx: KvmPgtableVisitCtx, visit: int) -> int:
    """``stage2_map_walker()`` (6.12): TABLE_PRE and LEAF visits (no TABLE_POST any more)."""
    data: Stage2MapData = ctx.arg

    if visit == KVM_PGTABLE_WALK_TABLE_PRE:
        return stage2_map_walk_table_pre(ctx, data)
    if visit == KVM_PGTABLE_WALK_LEAF:
        return stage2_map_walk_leaf(ctx, data)
    return -EINVAL


def kvm_pgtable_stage2_map(pgt: KvmPgtable, addr: int, size: int, phys: int, prot: int,
                           mc: Memcache | None, flags: int = 0) -> int:
    """``kvm_pgtable_stage2_map()`` (6.12): map ``[addr, addr + size)`` to ``phys``.

    :param prot: ``enum kvm_pgtable_prot`` bits.
    :param mc: the memcache (``None``: NULL, no table page may be allocated).
    :param flags: ``enum kvm_pgtable_walk_flags`` of the caller (KVM's fault
        path passes ``SHARED | HANDLE_FAULT``; 0 is an exclusive walk).
    """
    m = pgt.m
    force_pte = pgt.force_pte_cb is not None and pgt.force_pte_cb(addr, addr + size, prot)
    map_data = Stage2MapData(phys & ~m.granule.page_mask, pgt.mmu, mc, force_pte=force_pte)
    walker = KvmPgtableWalker(stage2_map_walker, map_data,
                              flags | KVM_PGTABLE_WALK_TABLE_PRE | KVM_PGTABLE_WALK_LEAF)

    if m.WARN_ON(bool(pgt.flags & KVM_PGTABLE_S2_IDMAP) and addr != phys,
                 "(pgt->flags & KVM_PGTABLE_S2_IDMAP) && (addr != phys)"):
        return -EINVAL

    ret, map_data.attr = stage2_set_prot_attr(pgt, prot)
    if ret:
        return ret

    ret = kvm_pgtable_walk(pgt, addr, size, walker)
    m.dsb("ishst")
    return ret


def kvm_pgtable_stage2_set_owner(pgt: KvmPgtable, addr: int, size: int, mc: Memcache | None,
                                 owner_id: int) -> int:
    """``kvm_pgtable_stage2_set_owner()`` (6.12): annotate the range with a ``u8`` owner id.

    Page granularity (``force_pte``), ids above ``KVM_MAX_OWNER_ID`` (1) refused.
    """
    map_data = Stage2MapData(KVM_PHYS_INVALID, pgt.mmu, mc, owner_id=owner_id, force_pte=True)
    walker = KvmPgtableWalker(stage2_map_walker, map_data,
                              KVM_PGTABLE_WALK_TABLE_PRE | KVM_PGTABLE_WALK_LEAF)

    if owner_id > KVM_MAX_OWNER_ID:
        return -EINVAL

    ret = kvm_pgtable_walk(pgt, addr, size, walker)
    return ret


def stage2_unmap_walker(ctx: KvmPgtableVisitCtx, visit: int) -> int:
    """``stage2_unmap_walker()`` (6.12): clear leaves and annotations, free empty tables."""
    pgt: KvmPgtable = ctx.arg
    mmu = pgt.mmu
    mm_ops = ctx.mm_ops
    m = mm_ops.m
    childp = None
    need_flush = False

    if not kvm_pte_valid(ctx.old):
        if stage2_pte_is_counted(ctx.old):
            kvm_clear_pte(m, ctx.ptep)
            mm_ops.put_page(ctx.ptep)
        return 0

    if kvm_pte_table(ctx.old, ctx.level):
        childp = kvm_pte_follow(ctx.old, mm_ops)

        if mm_ops.page_count(childp) != 1:
            return 0
    elif stage2_pte_cacheable(pgt, ctx.old):
        need_flush = not stage2_has_fwb(pgt)

    # Like map: the whole block goes, the rest is faulted back lazily.
    stage2_unmap_put_pte(ctx, mmu, mm_ops)

    if need_flush and mm_ops.dcache_clean_inval_poc is not None:
        mm_ops.dcache_clean_inval_poc(kvm_pte_follow(ctx.old, mm_ops),
                                      1 << m.granule.granule_shifts[ctx.level + 1])

    if childp is not None:
        mm_ops.put_page(childp)

    return 0


def kvm_pgtable_stage2_unmap(pgt: KvmPgtable, addr: int, size: int) -> int:
    """``kvm_pgtable_stage2_unmap()`` (6.12): then the deferred range TLBI, if any."""
    walker = KvmPgtableWalker(stage2_unmap_walker, pgt,
                              KVM_PGTABLE_WALK_LEAF | KVM_PGTABLE_WALK_TABLE_POST)

    ret = kvm_pgtable_walk(pgt, addr, size, walker)
    if stage2_unmap_defer_tlb_flush(pgt):
        # The deferred TLB invalidations
        kvm_tlb_flush_vmid_range(pgt.mmu, addr, size)

    return ret


class Stage2AttrData:
    """``struct stage2_attr_data``: bits to set and clear; the last valid leaf seen."""

    __slots__ = ("attr_set", "attr_clr", "pte", "level")

    def __init__(self, attr_set: int, attr_clr: int) -> None:
        self.attr_set = attr_set
        self.attr_clr = attr_clr
        self.pte = 0
        self.level = 0


def stage2_attr_walker(ctx: KvmPgtableVisitCtx, visit: int) -> int:
    """``stage2_attr_walker()`` (6.12): ``-EAGAIN`` on an invalid entry, else update it.

    The store is ``stage2_try_set_pte`` (``cmpxchg`` in a shared walk).
    """
    pte = ctx.old
    data: Stage2AttrData = ctx.arg
    mm_ops = ctx.mm_ops

    if not kvm_pte_valid(ctx.old):
        return -EAGAIN

    data.level = ctx.level
    data.pte = pte
    pte &= ~data.attr_clr
    pte |= data.attr_set

    # A race with the CPU setting AF only loses that update (it is set again).
    if data.pte != pte:
        # Invalidate the icache before the entry becomes executable.
        if mm_ops.icache_inval_pou is not None and stage2_pte_executable(pte) and \
                not stage2_pte_executable(ctx.old):
            mm_ops.icache_inval_pou(kvm_pte_follow(pte, mm_ops),
                                    1 << mm_ops.m.granule.granule_shifts[ctx.level + 1])

        if not stage2_try_set_pte(ctx, pte):
            return -EAGAIN

    return 0


_LEAF_ATTR_MASK = KVM_PTE_LEAF_ATTR_LO | KVM_PTE_LEAF_ATTR_HI


def stage2_update_leaf_attrs(pgt: KvmPgtable, addr: int, size: int, attr_set: int,
                             attr_clr: int, flags: int) -> tuple[int, int, int | None]:
    """``stage2_update_leaf_attrs()`` (6.12); returns ``(ret, orig_pte, level)``.

    On success ``orig_pte`` and ``level`` are those of the last valid leaf
    visited (0 and 0 if none); on failure the C leaves its out-parameters
    unwritten: ``(ret, 0, None)``.
    """
    data = Stage2AttrData(attr_set & _LEAF_ATTR_MASK, attr_clr & _LEAF_ATTR_MASK)
    walker = KvmPgtableWalker(stage2_attr_walker, data, flags | KVM_PGTABLE_WALK_LEAF)

    ret = kvm_pgtable_walk(pgt, addr, size, walker)
    if ret:
        return ret, 0, None

    return 0, data.pte, data.level


def kvm_pgtable_stage2_wrprotect(pgt: KvmPgtable, addr: int, size: int) -> int:
    """``kvm_pgtable_stage2_wrprotect()``: clear S2AP_W (an exclusive walk that goes past
    invalid entries)."""
    ret, _, _ = stage2_update_leaf_attrs(pgt, addr, size, 0, KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W, 0)
    return ret


def kvm_pgtable_stage2_mkyoung(pgt: KvmPgtable, addr: int) -> int:
    """``kvm_pgtable_stage2_mkyoung()`` (6.12): set AF in a shared fault walk; the old entry
    (0 when it was invalid)."""
    pte = 0

    ret, orig_pte, _ = stage2_update_leaf_attrs(
        pgt, addr, 1, KVM_PTE_LEAF_ATTR_LO_S2_AF, 0,
        KVM_PGTABLE_WALK_HANDLE_FAULT | KVM_PGTABLE_WALK_SHARED)
    if not ret:
        pte = orig_pte
        pgt.m.dsb("ishst")

    return pte


class Stage2AgeData:
    """``struct stage2_age_data``: clear AF as well? was any leaf young?"""

    __slots__ = ("mkold", "young")

    def __init__(self, mkold: bool) -> None:
        self.mkold = mkold
        self.young = False


def stage2_age_walker(ctx: KvmPgtableVisitCtx, visit: int) -> int:
    """``stage2_age_walker()``: note a young leaf, and make it old if asked (no TLBI:
    the MMU notifier's caller does that)."""
    new = ctx.old & ~KVM_PTE_LEAF_ATTR_LO_S2_AF
    data: Stage2AgeData = ctx.arg

    if not kvm_pte_valid(ctx.old) or new == ctx.old:
        return 0

    data.young = True

    if data.mkold and not stage2_try_set_pte(ctx, new):
        return -EAGAIN

    return 0


def kvm_pgtable_stage2_test_clear_young(pgt: KvmPgtable, addr: int, size: int,
                                        mkold: bool) -> bool:
    """``kvm_pgtable_stage2_test_clear_young()`` (6.12): was any leaf in the range young?

    With ``mkold`` the Access flags are cleared too. Replaces 6.1's mkold
    and is_young.
    """
    data = Stage2AgeData(mkold)
    walker = KvmPgtableWalker(stage2_age_walker, data, KVM_PGTABLE_WALK_LEAF)

    pgt.m.WARN_ON(bool(kvm_pgtable_walk(pgt, addr, size, walker)),
                  "kvm_pgtable_walk(pgt, addr, size, &walker)")
    return data.young


def kvm_pgtable_stage2_relax_perms(pgt: KvmPgtable, addr: int, prot: int) -> int:
    """``kvm_pgtable_stage2_relax_perms()`` (6.12): add permissions in a shared fault walk,
    then invalidate the IPA on this CPU (level unknown after ``-EAGAIN``)."""
    set_ = 0
    clr = 0

    if prot & KVM_PTE_LEAF_ATTR_HI_SW:
        return -EINVAL

    if prot & KVM_PGTABLE_PROT_R:
        set_ |= KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R

    if prot & KVM_PGTABLE_PROT_W:
        set_ |= KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W

    if prot & KVM_PGTABLE_PROT_X:
        clr |= KVM_PTE_LEAF_ATTR_HI_S2_XN

    ret, _, level = stage2_update_leaf_attrs(
        pgt, addr, 1, set_, clr, KVM_PGTABLE_WALK_HANDLE_FAULT | KVM_PGTABLE_WALK_SHARED)
    if not ret or ret == -EAGAIN:
        kvm_call_hyp(__kvm_tlb_flush_vmid_ipa_nsh, pgt.mmu, addr,
                     TLBI_TTL_UNKNOWN if ret == -EAGAIN else level)
    return ret


def stage2_flush_walker(ctx: KvmPgtableVisitCtx, visit: int) -> int:
    """``stage2_flush_walker()`` (6.12): clean every cacheable valid leaf to PoC."""
    pgt: KvmPgtable = ctx.arg
    mm_ops = pgt.mm_ops

    if not stage2_pte_cacheable(pgt, ctx.old):
        return 0

    if mm_ops.dcache_clean_inval_poc is not None:
        mm_ops.dcache_clean_inval_poc(kvm_pte_follow(ctx.old, mm_ops),
                                      1 << pgt.m.granule.granule_shifts[ctx.level + 1])
    return 0


def kvm_pgtable_stage2_flush(pgt: KvmPgtable, addr: int, size: int) -> int:
    """``kvm_pgtable_stage2_flush()``: nothing to do with FWB."""
    walker = KvmPgtableWalker(stage2_flush_walker, pgt, KVM_PGTABLE_WALK_LEAF)

    if stage2_has_fwb(pgt):
        return 0

    return kvm_pgtable_walk(pgt, addr, size, walker)


def kvm_pgtable_stage2_create_unlinked(pgt: KvmPgtable, phys: int, level: int, prot: int,
                                       mc: Any, force_pte: bool) -> int:
    """``kvm_pgtable_stage2_create_unlinked()``: a new table mapping what one ``level`` entry
    covers at ``phys``, not linked into the tree.

    The map walker runs on the new page alone (IPA range ``[0, granule)``,
    no break-before-make TLBIs, no CMOs). Returns the table's address, or a
    negative errno (``ERR_PTR``).
    """
    map_data = Stage2MapData(phys, pgt.mmu, mc, force_pte=force_pte)
    walker = KvmPgtableWalker(stage2_map_walker, map_data,
                              KVM_PGTABLE_WALK_LEAF | KVM_PGTABLE_WALK_SKIP_BBM_TLBI
                              | KVM_PGTABLE_WALK_SKIP_CMO)
    m = pgt.m
    granule = 1 << m.granule.granule_shifts[level + 1]  # kvm_granule_size(level)
    # The IPA is irrelevant for an unlinked table: an ambiguous range of one entry's size.
    data = KvmPgtableWalkData(m, walker, 0, 0, granule)
    mm_ops = pgt.mm_ops

    if phys & (granule - 1):  # !IS_ALIGNED(phys, kvm_granule_size(level))
        return -EINVAL

    ret, map_data.attr = stage2_set_prot_attr(pgt, prot)
    if ret:
        return ret

    pgtable = mm_ops.zalloc_page(mc)
    if pgtable is None:
        return -ENOMEM

    ret = __kvm_pgtable_walk(data, mm_ops, pgtable, level + 1)
    if ret:
        kvm_pgtable_stage2_free_unlinked(mm_ops, pgtable, level)
        return ret

    return pgtable


def stage2_block_get_nr_page_tables(m: Machine, level: int) -> int:
    """``stage2_block_get_nr_page_tables()``: table pages to split a ``level`` block down
    to pages."""
    if level == 1:
        return m.granule.ptrs_per_pte + 1
    if level == 2:
        return 1
    if level == 3:
        return 0
    m.WARN_ON_ONCE(level < m.granule.min_block_level or level > KVM_PGTABLE_LAST_LEVEL,
                   "level < KVM_PGTABLE_MIN_BLOCK_LEVEL || level > KVM_PGTABLE_LAST_LEVEL")
    return -EINVAL


def stage2_split_walker(ctx: KvmPgtableVisitCtx, visit: int) -> int:
    """``stage2_split_walker()``: replace a valid block by a table mapping the same.

    Down to pages when the cache holds enough pages, else one level at a
    time (the walk then descends into the new table and splits on).
    """
    mm_ops = ctx.mm_ops
    mc: KvmMmuMemoryCache = ctx.arg
    pte = ctx.old
    level = ctx.level

    # No huge pages at the last level
    if level == KVM_PGTABLE_LAST_LEVEL:
        return 0

    # Only valid block mappings are split
    if not kvm_pte_valid(pte):
        return 0

    nr_pages = stage2_block_get_nr_page_tables(mm_ops.m, level)
    if nr_pages < 0:
        return nr_pages

    if mc.nobjs >= nr_pages:
        # A tree mapped down to the PTE granularity.
        force_pte = True
    else:
        # One table page; create_unlinked maps it with blocks of the next level.
        force_pte = False
        nr_pages = 1

    if mc.nobjs < nr_pages:
        return -ENOMEM

    mmu = mc.mmu  # container_of(mc, struct kvm_s2_mmu, split_page_cache)
    phys = pte & mm_ops.m.granule.pte_addr_mask  # kvm_pte_to_phys(pte)
    prot = kvm_pgtable_stage2_pte_prot(pte)

    assert mmu.pgt is not None
    childp = kvm_pgtable_stage2_create_unlinked(mmu.pgt, phys, level, prot, mc, force_pte)
    if childp < 0:  # IS_ERR(childp)
        return childp

    if not stage2_try_break_pte(ctx, mmu):
        kvm_pgtable_stage2_free_unlinked(mm_ops, childp, level)
        return -EAGAIN

    # The table's contents are visible before the entry: stage2_make_pte()
    # publishes with smp_store_release().
    new = kvm_init_table_pte(childp, mm_ops)
    stage2_make_pte(ctx, new)
    return 0


def kvm_pgtable_stage2_split(pgt: KvmPgtable, addr: int, size: int,
                             mc: KvmMmuMemoryCache) -> int:
    """``kvm_pgtable_stage2_split()``: split the blocks in the range, pages from ``mc``
    (``&mmu->split_page_cache``)."""
    walker = KvmPgtableWalker(stage2_split_walker, mc, KVM_PGTABLE_WALK_LEAF)

    ret = kvm_pgtable_walk(pgt, addr, size, walker)
    pgt.m.dsb("ishst")
    return ret


def __kvm_pgtable_stage2_init(pgt: KvmPgtable, mmu: KvmS2Mmu, mm_ops: KvmPgtableMmOps,
                              flags: int, force_pte_cb: ForcePteCb | None) -> int:
    """``__kvm_pgtable_stage2_init()`` (6.12): geometry from ``mmu->vtcr``, zeroed pgd pages."""
    m = pgt.m
    vtcr = mmu.vtcr
    ia_bits = VTCR_EL2_IPA(vtcr)
    start_level = vtcr_start_level(vtcr, m.granule)  # VTCR_EL2_TGRAN_SL0_BASE - sl0

    pgd_sz = kvm_pgd_pages(ia_bits, start_level, m.granule) * m.granule.page_size
    pgt.pgd = mm_ops.zalloc_pages_exact(pgd_sz)
    if pgt.pgd is None:
        return -ENOMEM

    pgt.ia_bits = ia_bits
    pgt.start_level = start_level
    pgt.mm_ops = mm_ops
    pgt.mmu = mmu
    pgt.flags = flags
    pgt.force_pte_cb = force_pte_cb

    # Make the zeroed pgd visible to the hardware walker.
    m.dsb("ishst")
    return 0


def kvm_pgtable_stage2_pgd_size(m: Machine, vtcr: int) -> int:
    """``kvm_pgtable_stage2_pgd_size()``: bytes of concatenated pgd pages for ``vtcr``."""
    ia_bits = VTCR_EL2_IPA(vtcr)
    start_level = vtcr_start_level(vtcr, m.granule)

    return kvm_pgd_pages(ia_bits, start_level, m.granule) * m.granule.page_size


def stage2_free_walker(ctx: KvmPgtableVisitCtx, visit: int) -> int:
    """``stage2_free_walker()`` (6.12): drop every counted entry's reference, and tables' pages."""
    mm_ops = ctx.mm_ops

    if not stage2_pte_is_counted(ctx.old):
        return 0

    mm_ops.put_page(ctx.ptep)

    if kvm_pte_table(ctx.old, ctx.level):
        mm_ops.put_page(kvm_pte_follow(ctx.old, mm_ops))

    return 0


def kvm_pgtable_stage2_destroy(pgt: KvmPgtable) -> None:
    """``kvm_pgtable_stage2_destroy()`` (6.12): free every table page, then the pgd."""
    m = pgt.m
    walker = KvmPgtableWalker(stage2_free_walker, None,
                              KVM_PGTABLE_WALK_LEAF | KVM_PGTABLE_WALK_TABLE_POST)

    assert pgt.pgd is not None
    m.WARN_ON(bool(kvm_pgtable_walk(pgt, 0, 1 << pgt.ia_bits, walker)),
              "kvm_pgtable_walk(pgt, 0, BIT(pgt->ia_bits), &walker)")
    pgd_sz = kvm_pgd_pages(pgt.ia_bits, pgt.start_level, m.granule) * m.granule.page_size
    pgt.mm_ops.free_pages_exact(pgt.pgd, pgd_sz)  # kvm_dereference_pteref(&walker, pgt->pgd)
    pgt.pgd = None


def kvm_pgtable_stage2_free_unlinked(mm_ops: KvmPgtableMmOps, pgtable: int, level: int) -> None:
    """``kvm_pgtable_stage2_free_unlinked()``: free a table no longer in the tree, and
    everything below it (``level`` is that of the entry that pointed at it)."""
    m = mm_ops.m
    ptep = pgtable
    walker = KvmPgtableWalker(stage2_free_walker, None,
                              KVM_PGTABLE_WALK_LEAF | KVM_PGTABLE_WALK_TABLE_POST)
    # The IPA does not matter any more: a range covering the whole table.
    data = KvmPgtableWalkData(m, walker, 0, 0, 1 << m.granule.granule_shifts[level + 1])

    m.WARN_ON(bool(__kvm_pgtable_walk(data, mm_ops, ptep, level + 1)),
              "__kvm_pgtable_walk(&data, mm_ops, ptep, level + 1)")

    m.WARN_ON(mm_ops.page_count(pgtable) != 1, "mm_ops->page_count(pgtable) != 1")
    mm_ops.put_page(pgtable)
