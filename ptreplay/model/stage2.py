"""The guest stage-2 operations of ``arch/arm64/kvm/hyp/pgtable.c`` (5.13 and 6.1).

One function per kernel function, under the kernel's name and in the order of
Debian 6.1.192's pgtable.c, with the 5.13 differences (see
:mod:`ptreplay.model.profiles`) decided by named profile fields at the one
place each applies. The hyp stage-1 functions (``kvm_pgtable_hyp_*``),
``kvm_pgtable_get_leaf``, ``kvm_pgtable_stage2_find_range`` (5.13) and
``kvm_pgtable_stage2_pte_prot``'s callers in mmu.c are not modelled. 6.12's
code is the sibling module :mod:`ptreplay.model.stage2_612`.

Conventions of the model (what the C gets from globals or pointers):

* ``m`` (:class:`~ptreplay.model.memory.Machine`) is the machine: memory
  (``*ptep``), ``WRITE_ONCE``/``smp_store_release``, ``dsb``/``isb``,
  ``WARN_ON``, capabilities and ``PAGE_SIZE``. Functions whose C takes a
  ``struct kvm_pgtable *`` reach it as ``pgt.m``; the others take it first.
* Pointers (``ptep``, ``childp``, ``pgd``) are ints: addresses in the
  ``mm_ops`` address space; ``NULL`` is ``None``.
* Functions that return a value through a pointer argument return it instead
  (``stage2_set_prot_attr`` returns ``(ret, attr)``).
* Return codes are the kernel's negative errno values.
"""

from __future__ import annotations

from typing import Any

from ptreplay.effects import Tlbi
from ptreplay.model.geometry import (
    KVM_PGTABLE_MAX_LEVELS,
    VTCR_EL2_IPA,
    kvm_pgd_pages,
    vtcr_start_level,
)
from ptreplay.model.memory import KvmPgtableMmOps, Machine, Memcache
from ptreplay.model.pte import (
    KVM_MAX_OWNER_ID,
    KVM_PGTABLE_PROT_DEVICE,
    KVM_PGTABLE_PROT_R,
    KVM_PGTABLE_PROT_W,
    KVM_PGTABLE_PROT_X,
    KVM_PGTABLE_S2_IDMAP,
    KVM_PGTABLE_S2_NOFWB,
    KVM_PHYS_INVALID,
    KVM_PTE_LEAF_ATTR_HI,
    KVM_PTE_LEAF_ATTR_HI_S2_XN,
    KVM_PTE_LEAF_ATTR_HI_SW,
    KVM_PTE_LEAF_ATTR_LO,
    KVM_PTE_LEAF_ATTR_LO_S2_AF,
    KVM_PTE_LEAF_ATTR_LO_S2_MEMATTR,
    KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R,
    KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W,
    KVM_PTE_LEAF_ATTR_LO_S2_SH_IS,
    KVM_PTE_TYPE_TABLE,
    KVM_PTE_VALID,
    PAGE_S2_MEMATTR,
    kvm_init_invalid_leaf_owner,
    kvm_init_valid_leaf_pte,
    kvm_pte_table,
    kvm_pte_valid,
    stage2_pte_executable,
    stage2_pte_is_counted,
    stage2_pte_needs_update,
)
from ptreplay.model.structs import (
    E2BIG,
    EAGAIN,
    EINVAL,
    ENOMEM,
    ForcePteCb,
    KvmArch,
    KvmPgtable,
    KvmS2Mmu,
)
from ptreplay.model.walker import (
    KVM_PGTABLE_WALK_LEAF,
    KVM_PGTABLE_WALK_TABLE_POST,
    KVM_PGTABLE_WALK_TABLE_PRE,
    KvmPgtableWalker,
    kvm_pgtable_walk,
    kvm_pte_follow,
)

__all__ = [
    "kvm_call_hyp",
    "__kvm_tlb_flush_vmid_ipa",
    "__kvm_tlb_flush_vmid",
    "kvm_block_mapping_supported",
    "kvm_clear_pte",
    "kvm_set_table_pte",
    "Stage2MapData",
    "stage2_has_fwb",
    "KVM_S2_MEMATTR",
    "stage2_set_prot_attr",
    "kvm_pgtable_stage2_pte_prot",
    "stage2_put_pte",
    "stage2_pte_cacheable",
    "stage2_leaf_mapping_allowed",
    "stage2_map_walker_try_leaf",
    "stage2_map_walk_table_pre",
    "stage2_map_walk_leaf",
    "stage2_map_walk_table_post",
    "stage2_map_walker",
    "kvm_pgtable_stage2_map",
    "kvm_pgtable_stage2_set_owner",
    "stage2_dcache_clean",
    "stage2_unmap_walker",
    "kvm_pgtable_stage2_unmap",
    "Stage2AttrData",
    "stage2_attr_walker",
    "stage2_update_leaf_attrs",
    "kvm_pgtable_stage2_wrprotect",
    "kvm_pgtable_stage2_mkyoung",
    "kvm_pgtable_stage2_mkold",
    "kvm_pgtable_stage2_is_young",
    "kvm_pgtable_stage2_relax_perms",
    "stage2_flush_walker",
    "kvm_pgtable_stage2_flush",
    "__kvm_pgtable_stage2_init",
    "kvm_pgtable_stage2_init_flags",
    "stage2_free_walker",
    "kvm_pgtable_stage2_destroy",
]


# -- hypercalls (arch/arm64/kvm/hyp/*/tlb.c, called through kvm_call_hyp) ----

def kvm_call_hyp(f: Any, *args: Any) -> Any:
    """``kvm_call_hyp(f, ...)``: a direct call, as on VHE."""
    return f(*args)


def __kvm_tlb_flush_vmid_ipa(mmu: KvmS2Mmu, ipa: int, level: int) -> None:
    """``__kvm_tlb_flush_vmid_ipa()``: invalidate one IPA of the VMID at a level hint.

    Recorded as one ``tlbi vmid_ipa`` effect standing for the whole sequence
    (``dsb ishst; tlbi ipas2e1is; dsb ish; tlbi vmalle1is; dsb ish; isb``).
    """
    assert mmu.pgt is not None
    mmu.pgt.m.emit(Tlbi("vmid_ipa", ipa, level))


def __kvm_tlb_flush_vmid(mmu: KvmS2Mmu) -> None:
    """``__kvm_tlb_flush_vmid()``: invalidate every stage-2 entry of the VMID."""
    assert mmu.pgt is not None
    mmu.pgt.m.emit(Tlbi("vmid"))


# -- entries ------------------------------------------------------------------

def kvm_block_mapping_supported(m: Machine, addr: int, end: int, phys: int, level: int) -> bool:
    """``kvm_block_mapping_supported()``: can ``[addr, end)`` use a leaf at ``level``?

    (as changed by the page-ownership patch: an invalid ``phys`` is not
    checked for alignment.)
    """
    g = m.granule
    granule = 1 << g.granule_shifts[level + 1]

    if level < g.min_block_level:  # !kvm_level_supports_block_mapping(level)
        return False

    if granule > end - addr:
        return False

    if phys < (1 << 48) and phys & (granule - 1):  # kvm_phys_is_valid && !IS_ALIGNED
        return False

    return not addr & (granule - 1)


def kvm_clear_pte(m: Machine, ptep: int) -> None:
    """``kvm_clear_pte()``: ``WRITE_ONCE(*ptep, 0)``."""
    m.WRITE_ONCE(ptep, 0)


def kvm_set_table_pte(m: Machine, ptep: int, childp: int, mm_ops: KvmPgtableMmOps) -> None:
    """``kvm_set_table_pte()``: point ``*ptep`` at the table page ``childp``."""
    old = m.load(ptep)
    pte = mm_ops.virt_to_phys(childp) & m.granule.pte_addr_mask
    pte |= KVM_PTE_TYPE_TABLE << 1
    pte |= KVM_PTE_VALID

    m.WARN_ON(kvm_pte_valid(old), "kvm_pte_valid(old)")
    m.smp_store_release(ptep, pte)


class Stage2MapData:
    """``struct stage2_map_data``: the state of one map / set_owner walk.

    ``m`` and ``pgt`` are the model's (the kernel reaches them as globals and
    ``data->mmu->pgt``).
    """

    __slots__ = ("phys", "attr", "owner_id", "anchor", "childp", "mmu", "memcache", "mm_ops",
                 "force_pte", "pgt", "m")

    def __init__(self, pgt: KvmPgtable, phys: int, memcache: Memcache | None, *,
                 owner_id: int = 0, force_pte: bool = False) -> None:
        self.phys = phys
        self.attr = 0
        self.owner_id = owner_id
        self.anchor: int | None = None
        self.childp: int | None = None
        self.mmu = pgt.mmu
        self.memcache = memcache
        self.mm_ops = pgt.mm_ops
        self.force_pte = force_pte
        self.pgt = pgt
        self.m = pgt.m


def stage2_has_fwb(pgt: KvmPgtable) -> bool:
    """``stage2_has_fwb()``: the FWB capability, unless the table opted out (NOFWB)."""
    if not pgt.m.platform.fwb:
        return False
    return not pgt.flags & KVM_PGTABLE_S2_NOFWB


def KVM_S2_MEMATTR(pgt: KvmPgtable, normal: bool) -> int:  # noqa: N802 - the kernel's macro
    """``KVM_S2_MEMATTR(pgt, NORMAL | DEVICE_nGnRE)``."""
    return PAGE_S2_MEMATTR(normal, stage2_has_fwb(pgt))


def stage2_set_prot_attr(pgt: KvmPgtable, prot: int) -> tuple[int, int]:
    """``stage2_set_prot_attr()``: leaf attributes for ``prot``; returns ``(ret, attr)``.

    6.1 also copies the software bits of ``prot``; 5.13 has no software prot
    bits to copy (its scenarios cannot name them), so one body serves both.
    """
    device = bool(prot & KVM_PGTABLE_PROT_DEVICE)
    attr = KVM_S2_MEMATTR(pgt, not device)
    sh = KVM_PTE_LEAF_ATTR_LO_S2_SH_IS

    if not prot & KVM_PGTABLE_PROT_X:
        attr |= KVM_PTE_LEAF_ATTR_HI_S2_XN
    elif device:
        return -EINVAL, 0

    if prot & KVM_PGTABLE_PROT_R:
        attr |= KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R

    if prot & KVM_PGTABLE_PROT_W:
        attr |= KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W

    attr |= sh << 8
    attr |= KVM_PTE_LEAF_ATTR_LO_S2_AF
    attr |= prot & KVM_PTE_LEAF_ATTR_HI_SW
    return 0, attr


def kvm_pgtable_stage2_pte_prot(pte: int) -> int:
    """``kvm_pgtable_stage2_pte_prot()`` (6.1): the ``enum kvm_pgtable_prot`` of a leaf."""
    prot = pte & KVM_PTE_LEAF_ATTR_HI_SW
    if not kvm_pte_valid(pte):
        return prot
    if pte & KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R:
        prot |= KVM_PGTABLE_PROT_R
    if pte & KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W:
        prot |= KVM_PGTABLE_PROT_W
    if not pte & KVM_PTE_LEAF_ATTR_HI_S2_XN:
        prot |= KVM_PGTABLE_PROT_X
    return prot


def stage2_put_pte(m: Machine, ptep: int, mmu: KvmS2Mmu, addr: int, level: int,
                   mm_ops: KvmPgtableMmOps) -> None:
    """``stage2_put_pte()``: clear the entry (break-before-make if valid), drop its reference.

    The TLBI level hint for a table entry is a profile fact: 6.1 uses 0
    ("unknown"), 5.13 the entry's own level.
    """
    pte = m.load(ptep)

    if pte & KVM_PTE_VALID:
        kvm_clear_pte(m, ptep)

        table_level = m.profile.table_tlbi_level
        if table_level is not None and kvm_pte_table(pte, level):
            level = table_level

        kvm_call_hyp(__kvm_tlb_flush_vmid_ipa, mmu, addr, level)

    mm_ops.put_page(ptep)


def stage2_pte_cacheable(pgt: KvmPgtable, pte: int) -> bool:
    """``stage2_pte_cacheable()``: MemAttr is Normal (as this table encodes Normal)."""
    memattr = pte & KVM_PTE_LEAF_ATTR_LO_S2_MEMATTR
    return memattr == KVM_S2_MEMATTR(pgt, True)


def stage2_leaf_mapping_allowed(addr: int, end: int, level: int, data: Stage2MapData) -> bool:
    """``stage2_leaf_mapping_allowed()`` (6.1): block mappings unless ``force_pte``.

    5.13 calls ``kvm_block_mapping_supported`` directly; its ``force_pte`` is
    always false, which makes this the same test.
    """
    if data.force_pte and level < KVM_PGTABLE_MAX_LEVELS - 1:
        return False
    return kvm_block_mapping_supported(data.m, addr, end, data.phys, level)


def stage2_map_walker_try_leaf(addr: int, end: int, level: int, ptep: int,
                               data: Stage2MapData) -> int:
    """``stage2_map_walker_try_leaf()``: install a leaf (or owner annotation) at ``level``.

    ``-E2BIG`` when a leaf does not fit here, ``-EAGAIN`` when the entry
    already maps the same thing (up to permissions).
    """
    m = data.m
    old = m.load(ptep)
    granule = 1 << m.granule.granule_shifts[level + 1]
    phys = data.phys
    pgt = data.pgt
    mm_ops = data.mm_ops

    if not stage2_leaf_mapping_allowed(addr, end, level, data):
        return -E2BIG

    phys_valid = phys < (1 << 48)  # kvm_phys_is_valid(phys)
    if phys_valid:
        new = kvm_init_valid_leaf_pte(phys, data.attr, level, m.granule)
    else:
        new = kvm_init_invalid_leaf_owner(data.owner_id, m.profile.owner_shift)

    if stage2_pte_is_counted(old):
        # Same mapping (or only a permission change): leave it to relax_perms.
        if not stage2_pte_needs_update(old, new):
            return -EAGAIN

        stage2_put_pte(m, ptep, data.mmu, addr, level, mm_ops)

    # CMOs before installing the guest entry (6.1's mm_ops callbacks; absent in 5.13)
    dcache = mm_ops.dcache_clean_inval_poc
    if dcache is not None and stage2_pte_cacheable(pgt, new):
        dcache(kvm_pte_follow(new, mm_ops), granule)

    icache = mm_ops.icache_inval_pou
    if icache is not None and stage2_pte_executable(new):
        icache(kvm_pte_follow(new, mm_ops), granule)

    m.smp_store_release(ptep, new)
    if stage2_pte_is_counted(new):
        mm_ops.get_page(ptep)
    if phys_valid:
        data.phys += granule
    return 0


def stage2_map_walk_table_pre(addr: int, end: int, level: int, ptep: int,
                              data: Stage2MapData) -> int:
    """``stage2_map_walk_table_pre()``: detach a table that a block will replace (the anchor)."""
    if data.anchor is not None:
        return 0

    if not stage2_leaf_mapping_allowed(addr, end, level, data):
        return 0

    m = data.m
    data.childp = kvm_pte_follow(m.load(ptep), data.mm_ops)
    kvm_clear_pte(m, ptep)

    # Invalidate the whole VMID rather than every leaf below.
    kvm_call_hyp(__kvm_tlb_flush_vmid, data.mmu)
    data.anchor = ptep
    return 0


def stage2_map_walk_leaf(addr: int, end: int, level: int, ptep: int,
                         data: Stage2MapData) -> int:
    """``stage2_map_walk_leaf()``: map here, or install a table and let the walk descend.

    Below an anchor it only drops the references of counted entries.
    """
    m = data.m
    mm_ops = data.mm_ops
    pte = m.load(ptep)

    if data.anchor is not None:
        if stage2_pte_is_counted(pte):
            mm_ops.put_page(ptep)
        return 0

    ret = stage2_map_walker_try_leaf(addr, end, level, ptep, data)
    if ret != -E2BIG:
        return ret

    if m.WARN_ON(level == KVM_PGTABLE_MAX_LEVELS - 1, "level == KVM_PGTABLE_MAX_LEVELS - 1"):
        return -EINVAL

    if data.memcache is None:
        return -ENOMEM

    childp = mm_ops.zalloc_page(data.memcache)
    if childp is None:
        return -ENOMEM

    # An existing block (or annotation) becomes a table; the rest of it is
    # faulted back in lazily.
    if stage2_pte_is_counted(pte):
        stage2_put_pte(m, ptep, data.mmu, addr, level, mm_ops)

    kvm_set_table_pte(m, ptep, childp, mm_ops)
    mm_ops.get_page(ptep)

    return 0


def stage2_map_walk_table_post(addr: int, end: int, level: int, ptep: int,
                               data: Stage2MapData) -> int:
    """``stage2_map_walk_table_post()``: free detached tables; install the block at the anchor."""
    mm_ops = data.mm_ops
    ret = 0

    if data.anchor is None:
        return 0

    if data.anchor == ptep:
        childp = data.childp
        assert childp is not None
        data.anchor = None
        data.childp = None
        ret = stage2_map_walk_leaf(addr, end, level, ptep, data)
    else:
        childp = kvm_pte_follow(data.m.load(ptep), mm_ops)

    mm_ops.put_page(childp)
    mm_ops.put_page(ptep)

    return ret


def stage2_map_walker(addr: int, end: int, level: int, ptep: int, flag: int,
                      arg: Stage2MapData) -> int:
    """``stage2_map_walker()``: dispatch the three visits of a map walk."""
    if flag == KVM_PGTABLE_WALK_LEAF:
        return stage2_map_walk_leaf(addr, end, level, ptep, arg)
    if flag == KVM_PGTABLE_WALK_TABLE_PRE:
        return stage2_map_walk_table_pre(addr, end, level, ptep, arg)
    if flag == KVM_PGTABLE_WALK_TABLE_POST:
        return stage2_map_walk_table_post(addr, end, level, ptep, arg)
    return -EINVAL


_MAP_WALK_FLAGS = KVM_PGTABLE_WALK_TABLE_PRE | KVM_PGTABLE_WALK_LEAF | KVM_PGTABLE_WALK_TABLE_POST


def kvm_pgtable_stage2_map(pgt: KvmPgtable, addr: int, size: int, phys: int, prot: int,
                           mc: Memcache | None) -> int:
    """``kvm_pgtable_stage2_map()``: map ``[addr, addr + size)`` to ``phys`` with ``prot``.

    :param prot: ``enum kvm_pgtable_prot`` bits.
    :param mc: the memcache (``None``: NULL, no table page may be allocated).
    """
    m = pgt.m
    page_mask = m.granule.page_mask
    force_pte = pgt.force_pte_cb is not None and pgt.force_pte_cb(addr, addr + size, prot)
    map_data = Stage2MapData(pgt, phys & ~page_mask, mc, force_pte=force_pte)
    walker = KvmPgtableWalker(stage2_map_walker, map_data, _MAP_WALK_FLAGS)

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
    """``kvm_pgtable_stage2_set_owner()``: annotate ``[addr, addr + size)`` as owned.

    The map walker with ``phys = KVM_PHYS_INVALID``: invalid entries carrying
    the ``u8`` owner id. 6.1 forces page granularity; 5.13 may annotate blocks.
    No barrier at the end (in either kernel).
    """
    map_data = Stage2MapData(pgt, KVM_PHYS_INVALID, mc, owner_id=owner_id,
                             force_pte=pgt.m.profile.set_owner_force_pte)
    walker = KvmPgtableWalker(stage2_map_walker, map_data, _MAP_WALK_FLAGS)

    if owner_id > KVM_MAX_OWNER_ID:
        return -EINVAL

    return kvm_pgtable_walk(pgt, addr, size, walker)


def stage2_dcache_clean(m: Machine, mm_ops: KvmPgtableMmOps, addr: int, size: int) -> None:
    """Clean+invalidate a guest range to PoC: the one place 5.13 and 6.1 differ in how.

    Not a kernel function: 6.1 calls ``mm_ops->dcache_clean_inval_poc`` when it
    is set; 5.13 calls ``__flush_dcache_area`` directly.
    """
    if m.profile.cmo_via_mm_ops:
        if mm_ops.dcache_clean_inval_poc is not None:
            mm_ops.dcache_clean_inval_poc(addr, size)
    else:
        m.flush_dcache_area(addr, size)


def stage2_unmap_walker(addr: int, end: int, level: int, ptep: int, flag: int,
                        arg: KvmPgtable) -> int:
    """``stage2_unmap_walker()``: clear leaves and annotations, free empty tables.

    Tables are visited after their children (TABLE_POST) and removed once
    their page count shows no entries left.
    """
    pgt = arg
    m = pgt.m
    mmu = pgt.mmu
    mm_ops = pgt.mm_ops
    pte = m.load(ptep)
    childp = None
    need_flush = False

    if not pte & KVM_PTE_VALID:
        if stage2_pte_is_counted(pte):
            kvm_clear_pte(m, ptep)
            mm_ops.put_page(ptep)
        return 0

    if kvm_pte_table(pte, level):
        childp = kvm_pte_follow(pte, mm_ops)

        if mm_ops.page_count(childp) != 1:
            return 0
    elif stage2_pte_cacheable(pgt, pte):
        need_flush = not stage2_has_fwb(pgt)

    # Like map: the whole block goes, the rest is faulted back lazily.
    stage2_put_pte(m, ptep, mmu, addr, level, mm_ops)

    if need_flush:
        stage2_dcache_clean(m, mm_ops, kvm_pte_follow(pte, mm_ops),
                            1 << m.granule.granule_shifts[level + 1])

    if childp is not None:
        mm_ops.put_page(childp)

    return 0


def kvm_pgtable_stage2_unmap(pgt: KvmPgtable, addr: int, size: int) -> int:
    """``kvm_pgtable_stage2_unmap()``: remove mappings and annotations in the range."""
    walker = KvmPgtableWalker(stage2_unmap_walker, pgt,
                              KVM_PGTABLE_WALK_LEAF | KVM_PGTABLE_WALK_TABLE_POST)
    return kvm_pgtable_walk(pgt, addr, size, walker)


class Stage2AttrData:
    """``struct stage2_attr_data``: bits to set and clear; the last valid leaf seen."""

    __slots__ = ("attr_set", "attr_clr", "pte", "level", "mm_ops", "m")

    def __init__(self, attr_set: int, attr_clr: int, mm_ops: KvmPgtableMmOps, m: Machine) -> None:
        self.attr_set = attr_set
        self.attr_clr = attr_clr
        self.pte = 0
        self.level = 0
        self.mm_ops = mm_ops
        self.m = m


def stage2_attr_walker(addr: int, end: int, level: int, ptep: int, flag: int,
                       arg: Stage2AttrData) -> int:
    """``stage2_attr_walker()``: update the attributes of each valid leaf.

    6.1 invalidates the icache first when the change makes a leaf executable
    (the ``icache_inval_pou`` callback; 5.13 has none).
    """
    data = arg
    m = data.m
    mask = m.page_mask
    page = m.pages[ptep & ~mask]
    idx = (ptep & mask) >> 3
    pte = page[idx]
    mm_ops = data.mm_ops

    if not pte & KVM_PTE_VALID:
        return 0

    data.level = level
    data.pte = pte
    pte &= ~data.attr_clr
    pte |= data.attr_set

    # A race with the CPU setting AF only loses that update (it is set again).
    if data.pte != pte:
        icache = mm_ops.icache_inval_pou
        if icache is not None and stage2_pte_executable(pte) and \
                not stage2_pte_executable(page[idx]):
            icache(kvm_pte_follow(pte, mm_ops), 1 << m.granule.granule_shifts[level + 1])
        m.WRITE_ONCE(ptep, pte)

    return 0


_LEAF_ATTR_MASK = KVM_PTE_LEAF_ATTR_LO | KVM_PTE_LEAF_ATTR_HI


def stage2_update_leaf_attrs(pgt: KvmPgtable, addr: int, size: int, attr_set: int,
                             attr_clr: int) -> tuple[int, int, int]:
    """``stage2_update_leaf_attrs()``; returns ``(ret, orig_pte, level)``.

    ``orig_pte`` and ``level`` are those of the last valid leaf visited (0 and
    0 when there was none: the C zero-initialises its ``struct``).
    """
    data = Stage2AttrData(attr_set & _LEAF_ATTR_MASK, attr_clr & _LEAF_ATTR_MASK, pgt.mm_ops,
                          pgt.m)
    walker = KvmPgtableWalker(stage2_attr_walker, data, KVM_PGTABLE_WALK_LEAF)

    ret = kvm_pgtable_walk(pgt, addr, size, walker)
    if ret:
        return ret, 0, 0
    return 0, data.pte, data.level


def kvm_pgtable_stage2_wrprotect(pgt: KvmPgtable, addr: int, size: int) -> int:
    """``kvm_pgtable_stage2_wrprotect()``: clear S2AP_W on the range (no TLBI here)."""
    ret, _, _ = stage2_update_leaf_attrs(pgt, addr, size, 0, KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W)
    return ret


def kvm_pgtable_stage2_mkyoung(pgt: KvmPgtable, addr: int) -> int:
    """``kvm_pgtable_stage2_mkyoung()``: set AF; returns the old entry."""
    _, pte, _ = stage2_update_leaf_attrs(pgt, addr, 1, KVM_PTE_LEAF_ATTR_LO_S2_AF, 0)
    pgt.m.dsb("ishst")
    return pte


def kvm_pgtable_stage2_mkold(pgt: KvmPgtable, addr: int) -> int:
    """``kvm_pgtable_stage2_mkold()``: clear AF; returns the old entry (TLBI is the caller's)."""
    _, pte, _ = stage2_update_leaf_attrs(pgt, addr, 1, 0, KVM_PTE_LEAF_ATTR_LO_S2_AF)
    return pte


def kvm_pgtable_stage2_is_young(pgt: KvmPgtable, addr: int) -> bool:
    """``kvm_pgtable_stage2_is_young()``: AF of the leaf at ``addr``."""
    _, pte, _ = stage2_update_leaf_attrs(pgt, addr, 1, 0, 0)
    return bool(pte & KVM_PTE_LEAF_ATTR_LO_S2_AF)


def kvm_pgtable_stage2_relax_perms(pgt: KvmPgtable, addr: int, prot: int) -> int:
    """``kvm_pgtable_stage2_relax_perms()``: add permissions, then TLBI the IPA.

    6.1 rejects software bits in ``prot`` (5.13 has none).
    """
    set_ = 0
    clr = 0

    if pgt.m.profile.relax_perms_rejects_sw and prot & KVM_PTE_LEAF_ATTR_HI_SW:
        return -EINVAL

    if prot & KVM_PGTABLE_PROT_R:
        set_ |= KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R

    if prot & KVM_PGTABLE_PROT_W:
        set_ |= KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W

    if prot & KVM_PGTABLE_PROT_X:
        clr |= KVM_PTE_LEAF_ATTR_HI_S2_XN

    ret, _, level = stage2_update_leaf_attrs(pgt, addr, 1, set_, clr)
    if not ret:
        assert pgt.mmu is not None
        kvm_call_hyp(__kvm_tlb_flush_vmid_ipa, pgt.mmu, addr, level)
    return ret


def stage2_flush_walker(addr: int, end: int, level: int, ptep: int, flag: int,
                        arg: KvmPgtable) -> int:
    """``stage2_flush_walker()``: clean every cacheable valid leaf to PoC."""
    pgt = arg
    m = pgt.m
    mm_ops = pgt.mm_ops
    pte = m.load(ptep)

    if not kvm_pte_valid(pte) or not stage2_pte_cacheable(pgt, pte):
        return 0

    stage2_dcache_clean(m, mm_ops, kvm_pte_follow(pte, mm_ops),
                        1 << m.granule.granule_shifts[level + 1])
    return 0


def kvm_pgtable_stage2_flush(pgt: KvmPgtable, addr: int, size: int) -> int:
    """``kvm_pgtable_stage2_flush()``: nothing to do with FWB."""
    walker = KvmPgtableWalker(stage2_flush_walker, pgt, KVM_PGTABLE_WALK_LEAF)

    if stage2_has_fwb(pgt):
        return 0

    return kvm_pgtable_walk(pgt, addr, size, walker)


def __kvm_pgtable_stage2_init(pgt: KvmPgtable, mmu: KvmS2Mmu, mm_ops: KvmPgtableMmOps,
                              flags: int, force_pte_cb: ForcePteCb | None) -> int:
    """``__kvm_pgtable_stage2_init()`` (6.1): geometry from VTCR_EL2, zeroed pgd pages."""
    assert mmu.arch is not None
    m = pgt.m
    vtcr = mmu.arch.vtcr
    ia_bits = VTCR_EL2_IPA(vtcr)
    start_level = vtcr_start_level(vtcr, m.granule)

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


def kvm_pgtable_stage2_init_flags(pgt: KvmPgtable, arch: KvmArch, mm_ops: KvmPgtableMmOps,
                                  flags: int) -> int:
    """``kvm_pgtable_stage2_init_flags()`` (5.13): as 6.1's init, ``mmu = &arch->mmu``, no
    ``force_pte_cb``."""
    m = pgt.m
    vtcr = arch.vtcr
    ia_bits = VTCR_EL2_IPA(vtcr)
    start_level = vtcr_start_level(vtcr, m.granule)

    pgd_sz = kvm_pgd_pages(ia_bits, start_level, m.granule) * m.granule.page_size
    pgt.pgd = mm_ops.zalloc_pages_exact(pgd_sz)
    if pgt.pgd is None:
        return -ENOMEM

    pgt.ia_bits = ia_bits
    pgt.start_level = start_level
    pgt.mm_ops = mm_ops
    pgt.mmu = arch.mmu
    pgt.flags = flags

    m.dsb("ishst")
    return 0


def stage2_free_walker(addr: int, end: int, level: int, ptep: int, flag: int,
                       arg: KvmPgtableMmOps) -> int:
    """``stage2_free_walker()``: drop every counted entry's reference, and tables' pages."""
    mm_ops = arg
    m = mm_ops.m
    pte = m.load(ptep)

    if not stage2_pte_is_counted(pte):
        return 0

    mm_ops.put_page(ptep)

    if kvm_pte_table(pte, level):
        mm_ops.put_page(kvm_pte_follow(pte, mm_ops))

    return 0


def kvm_pgtable_stage2_destroy(pgt: KvmPgtable) -> None:
    """``kvm_pgtable_stage2_destroy()``: free every table page, then the pgd."""
    m = pgt.m
    mm_ops = pgt.mm_ops
    assert mm_ops is not None and pgt.pgd is not None
    walker = KvmPgtableWalker(stage2_free_walker, mm_ops,
                              KVM_PGTABLE_WALK_LEAF | KVM_PGTABLE_WALK_TABLE_POST)

    m.WARN_ON(bool(kvm_pgtable_walk(pgt, 0, 1 << pgt.ia_bits, walker)),
              "kvm_pgtable_walk(pgt, 0, BIT(pgt->ia_bits), &walker)")
    pgd_sz = kvm_pgd_pages(pgt.ia_bits, pgt.start_level, m.granule) * m.granule.page_size
    mm_ops.free_pages_exact(pgt.pgd, pgd_sz)
    pgt.pgd = None
