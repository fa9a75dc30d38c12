"""The generic page-table walker of ``arch/arm64/kvm/hyp/pgtable.c`` (5.13 and 6.1).

``kvm_pgtable_walk`` visits every entry covering ``[addr, addr + size)`` depth
first and calls the walker's callback for table entries before
(``KVM_PGTABLE_WALK_TABLE_PRE``) and after (``KVM_PGTABLE_WALK_TABLE_POST``)
their children, and for leaf entries, valid or not
(``KVM_PGTABLE_WALK_LEAF``). A non-zero return from a callback stops the walk
and is returned. The functions below follow the C one for one, in its order.

The walk state lives in one :class:`KvmPgtableWalkData` (``addr`` advances as
leaves are passed), never in globals, so several walks on several roots can
be in flight at once. 6.12's walker (``struct kvm_pgtable_visit_ctx``, shared
walks under RCU, ``-EAGAIN`` retries) has a different shape: it is the sibling
module :mod:`ptreplay.model.walker612`, selected by the profile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ptreplay.model.geometry import KVM_PGTABLE_MAX_LEVELS, __kvm_pgd_page_idx
from ptreplay.model.structs import EINVAL, ERANGE, KvmPgtable

__all__ = [
    "KVM_PGTABLE_WALK_LEAF",
    "KVM_PGTABLE_WALK_TABLE_PRE",
    "KVM_PGTABLE_WALK_TABLE_POST",
    "KvmPgtableWalker",
    "KvmPgtableWalkData",
    "VisitorFn",
    "kvm_pgtable_idx",
    "kvm_pgd_page_idx",
    "kvm_pte_follow",
    "kvm_pgtable_visitor_cb",
    "__kvm_pgtable_visit",
    "__kvm_pgtable_walk",
    "_kvm_pgtable_walk",
    "kvm_pgtable_walk",
]

# enum kvm_pgtable_walk_flags
KVM_PGTABLE_WALK_LEAF = 1 << 0
KVM_PGTABLE_WALK_TABLE_PRE = 1 << 1
KVM_PGTABLE_WALK_TABLE_POST = 1 << 2

_U64 = (1 << 64) - 1

#: ``kvm_pgtable_visitor_fn_t``: ``(addr, end, level, ptep, flag, arg) -> int``.
VisitorFn = Callable[[int, int, int, int, int, Any], int]


class KvmPgtableWalker:
    """``struct kvm_pgtable_walker``: the callback, its argument, the visits wanted."""

    __slots__ = ("cb", "arg", "flags")

    def __init__(self, cb: VisitorFn, arg: Any, flags: int) -> None:
        self.cb = cb
        self.arg = arg
        self.flags = flags


class KvmPgtableWalkData:
    """``struct kvm_pgtable_walk_data``: the state of one walk.

    Besides the kernel's four fields it caches, for speed, what the walk reads
    on every entry and cannot change during it (the machine's table memory,
    the granule's shifts and masks, the walker's flags, ``mm_ops``).
    """

    __slots__ = ("pgt", "walker", "addr", "end",
                 "pages", "page_mask", "shifts", "idx_mask", "addr_mask", "flags", "mm_ops")

    def __init__(self, pgt: KvmPgtable, walker: KvmPgtableWalker, addr: int, end: int) -> None:
        self.pgt = pgt
        self.walker = walker
        self.addr = addr
        self.end = end
        g = pgt.m.granule
        self.pages = pgt.m.pages
        self.page_mask = g.page_mask
        self.shifts = g.granule_shifts  # kvm_granule_shift(level) at [level + 1]
        self.idx_mask = g.ptrs_per_pte - 1
        self.addr_mask = g.pte_addr_mask
        self.flags = walker.flags
        self.mm_ops = pgt.mm_ops


def kvm_pgtable_idx(data: KvmPgtableWalkData, level: int) -> int:
    """``kvm_pgtable_idx()``: index of ``data.addr`` in a table at ``level``."""
    return (data.addr >> data.shifts[level + 1]) & data.idx_mask


def kvm_pgd_page_idx(data: KvmPgtableWalkData) -> int:
    """``kvm_pgd_page_idx()``: which concatenated pgd page covers ``data.addr``."""
    pgt = data.pgt
    return __kvm_pgd_page_idx(pgt.ia_bits, pgt.start_level, data.addr, pgt.m.granule)


def kvm_pte_follow(pte: int, mm_ops: Any) -> int:
    """``kvm_pte_follow()``: the address (``phys_to_virt``) a descriptor points at."""
    return mm_ops.phys_to_virt(pte & mm_ops.m.granule.pte_addr_mask)


def kvm_pgtable_visitor_cb(data: KvmPgtableWalkData, addr: int, level: int, ptep: int,
                           flag: int) -> int:
    """``kvm_pgtable_visitor_cb()``: call the walker's callback."""
    walker = data.walker
    return walker.cb(addr, data.end, level, ptep, flag, walker.arg)


def __kvm_pgtable_visit(data: KvmPgtableWalkData, ptep: int, level: int) -> int:
    """``__kvm_pgtable_visit()``: visit one entry, descend if it is (or became) a table.

    A LEAF callback may turn the entry into a table (the map walker does when
    it must split or create a level); the walk then descends into it. The
    small helpers it calls (``kvm_pgtable_visitor_cb``, ``kvm_pte_table``,
    ``kvm_pte_follow``, ``kvm_granule_size``) are written out inline, as the
    compiler inlines them, with their names in comments.
    """
    ret = 0
    addr = data.addr
    mask = data.page_mask
    table_page = data.pages[ptep & ~mask]
    idx = (ptep & mask) >> 3
    pte = table_page[idx]
    # kvm_pte_table(): valid table descriptor, never at the last level
    last = level == KVM_PGTABLE_MAX_LEVELS - 1
    table = not last and (pte & 3) == 3
    flags = data.flags

    walker = data.walker
    # kvm_pgtable_visitor_cb(), inlined: walker->cb(addr, data->end, level, ptep, flag, arg)
    if table and flags & KVM_PGTABLE_WALK_TABLE_PRE:
        ret = walker.cb(addr, data.end, level, ptep, KVM_PGTABLE_WALK_TABLE_PRE, walker.arg)

    if not table and flags & KVM_PGTABLE_WALK_LEAF:
        ret = walker.cb(addr, data.end, level, ptep, KVM_PGTABLE_WALK_LEAF, walker.arg)
        pte = table_page[idx]  # the callback may have made it a table
        table = not last and (pte & 3) == 3

    if ret:
        return ret

    if not table:
        size = 1 << data.shifts[level + 1]  # kvm_granule_size(level)
        data.addr = (data.addr & ~(size - 1)) + size
        return ret

    childp = data.mm_ops.phys_to_virt(pte & data.addr_mask)  # kvm_pte_follow()
    ret = __kvm_pgtable_walk(data, childp, level + 1)
    if ret:
        return ret

    if flags & KVM_PGTABLE_WALK_TABLE_POST:
        ret = walker.cb(addr, data.end, level, ptep, KVM_PGTABLE_WALK_TABLE_POST, walker.arg)

    return ret


def __kvm_pgtable_walk(data: KvmPgtableWalkData, pgtable: int, level: int) -> int:
    """``__kvm_pgtable_walk()``: visit the entries of one table from ``data.addr`` on."""
    if level >= KVM_PGTABLE_MAX_LEVELS and \
            data.pgt.m.WARN_ON_ONCE(True, "level >= KVM_PGTABLE_MAX_LEVELS"):
        return -EINVAL

    ret = 0
    ptrs_per_pte = data.idx_mask + 1
    idx = (data.addr >> data.shifts[level + 1]) & data.idx_mask  # kvm_pgtable_idx()
    while idx < ptrs_per_pte:
        ptep = pgtable + idx * 8
        if data.addr >= data.end:
            break
        ret = __kvm_pgtable_visit(data, ptep, level)
        if ret:
            break
        idx += 1
    return ret


def _kvm_pgtable_walk(data: KvmPgtableWalkData) -> int:
    """``_kvm_pgtable_walk()``: range check, then walk each concatenated pgd page."""
    pgt = data.pgt
    limit = 1 << pgt.ia_bits

    if data.addr > limit or data.end > limit:
        return -ERANGE

    if pgt.pgd is None:
        return -EINVAL

    ret = 0
    page_size = pgt.m.granule.page_size
    idx = kvm_pgd_page_idx(data)
    while data.addr < data.end:
        ptep = pgt.pgd + idx * page_size  # &pgt->pgd[idx * PTRS_PER_PTE]
        ret = __kvm_pgtable_walk(data, ptep, pgt.start_level)
        if ret:
            break
        idx += 1
    return ret


def kvm_pgtable_walk(pgt: KvmPgtable, addr: int, size: int, walker: KvmPgtableWalker) -> int:
    """``kvm_pgtable_walk()``: walk ``[addr, addr + size)`` rounded out to pages.

    ``u64`` arithmetic: the end wraps modulo 2**64 like the kernel's.

    :param pgt: ``struct kvm_pgtable *``.
    :param addr: ``u64`` input address.
    :param size: ``u64`` size in bytes.
    :param walker: ``struct kvm_pgtable_walker *``.
    """
    page_mask = pgt.m.granule.page_mask
    start = addr & ~page_mask
    end = ((start + size + page_mask) & ~page_mask) & _U64
    return _kvm_pgtable_walk(KvmPgtableWalkData(pgt, walker, start, end))
