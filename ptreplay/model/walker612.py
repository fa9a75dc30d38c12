"""The generic part of Linux 6.12's ``pgtable.c``: walk flags, visit contexts, the walker.

Debian 6.12.117's pgtable.c from its first line to ``kvm_pgtable_walk``, plus
the inline helpers of ``asm/kvm_pgtable.h`` the walker calls, one Python
function per C function in the file's order. The hyp stage-1 code that
follows in the C (``kvm_pgtable_get_leaf``, ``hyp_*``) is not modelled.

What changed since 6.1 (:mod:`ptreplay.model.walker`):

* a visitor gets a ``struct kvm_pgtable_visit_ctx`` (the entry's address and
  the value read, the walk's ``start``/``addr``/``end``, level, flags, mm_ops)
  and a ``visit`` kind, instead of six arguments;
* walk flags beyond the visit kinds: ``SHARED`` (other walkers may run at
  the same time: the walk holds the RCU read lock, stores are ``cmpxchg``),
  ``HANDLE_FAULT`` (a visitor's ``-EAGAIN`` ends the walk; otherwise it is
  ignored, :func:`kvm_pgtable_walk_continue`), ``SKIP_BBM_TLBI``, ``SKIP_CMO``;
* ``kvm_pgtable_walk`` brackets the walk with :func:`kvm_pgtable_walk_begin`
  / :func:`kvm_pgtable_walk_end` (``rcu_read_lock`` / ``rcu_read_unlock`` for
  a shared walk, as in the host object the oracle compiles);
* the entry is re-read after a TABLE_PRE visit too, so a visitor that turns
  a table into a block is not descended into.

Pure entry helpers that are the same in 6.1 and 6.12 are shared with
:mod:`ptreplay.model.pte` (``kvm_phys_is_valid``, ``kvm_pte_table``,
``kvm_init_valid_leaf_pte``, ``kvm_init_invalid_leaf_owner``); they are
imported here under their names, at their place in the file's order.

Resumable and concurrent walks: all walk state is in the
:class:`KvmPgtableWalkData` and each visit's :class:`KvmPgtableVisitCtx`
(plus Python's call stack for the levels being walked); nothing is global.
The machine (``mm_ops.m``) is shared, and its RCU nesting counts for one CPU.
A replay that interleaves two CPUs' walks on one table (6.12's parallel
faults) needs, besides this: a per-CPU RCU nesting and callback queue on the
machine, and a way to suspend a walk between two memory accesses (a thread
per walk, or a generator version of :func:`__kvm_pgtable_visit`); the
``cmpxchg`` of a ``SHARED`` walk then fails as on hardware when the other
CPU changed the entry since ``ctx.old`` was read, and the visitors' ``-EAGAIN``
paths run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ptreplay.model.geometry import PA_BITS, __kvm_pgd_page_idx, kvm_pgd_pages
from ptreplay.model.pte import (
    kvm_init_invalid_leaf_owner,
    kvm_init_valid_leaf_pte,
    kvm_phys_is_valid,
    kvm_pte_table,
)
from ptreplay.model.structs import EINVAL, ERANGE, KvmPgtable

if TYPE_CHECKING:
    from ptreplay.model.memory import KvmPgtableMmOps, Machine

__all__ = [
    "KVM_PGTABLE_FIRST_LEVEL",
    "KVM_PGTABLE_LAST_LEVEL",
    "KVM_PGTABLE_WALK_LEAF",
    "KVM_PGTABLE_WALK_TABLE_PRE",
    "KVM_PGTABLE_WALK_TABLE_POST",
    "KVM_PGTABLE_WALK_SHARED",
    "KVM_PGTABLE_WALK_HANDLE_FAULT",
    "KVM_PGTABLE_WALK_SKIP_BBM_TLBI",
    "KVM_PGTABLE_WALK_SKIP_CMO",
    "KvmPgtableVisitCtx",
    "KvmPgtableWalker",
    "KvmPgtableWalkData",
    "VisitorFn",
    "kvm_pgtable_walk_shared",
    "kvm_dereference_pteref",
    "kvm_pgtable_walk_begin",
    "kvm_pgtable_walk_end",
    "kvm_pgtable_walk_lock_held",
    "kvm_pgtable_walk_skip_bbm_tlbi",
    "kvm_pgtable_walk_skip_cmo",
    "kvm_phys_is_valid",
    "kvm_block_mapping_supported",
    "kvm_pgtable_idx",
    "kvm_pgd_page_idx",
    "kvm_pgd_pages",
    "kvm_pte_table",
    "kvm_pte_follow",
    "kvm_clear_pte",
    "kvm_init_table_pte",
    "kvm_init_valid_leaf_pte",
    "kvm_init_invalid_leaf_owner",
    "kvm_pgtable_visitor_cb",
    "kvm_pgtable_walk_continue",
    "__kvm_pgtable_visit",
    "__kvm_pgtable_walk",
    "_kvm_pgtable_walk",
    "kvm_pgtable_walk",
]

#: ``KVM_PGTABLE_FIRST_LEVEL`` (-1 with LPA2; no stage-2 walk starts there without it).
KVM_PGTABLE_FIRST_LEVEL = -1
#: ``KVM_PGTABLE_LAST_LEVEL``.
KVM_PGTABLE_LAST_LEVEL = 3

# enum kvm_pgtable_walk_flags
KVM_PGTABLE_WALK_LEAF = 1 << 0
KVM_PGTABLE_WALK_TABLE_PRE = 1 << 1
KVM_PGTABLE_WALK_TABLE_POST = 1 << 2
KVM_PGTABLE_WALK_SHARED = 1 << 3
KVM_PGTABLE_WALK_HANDLE_FAULT = 1 << 4
KVM_PGTABLE_WALK_SKIP_BBM_TLBI = 1 << 5
KVM_PGTABLE_WALK_SKIP_CMO = 1 << 6

_EAGAIN = -11
_U64 = (1 << 64) - 1


class KvmPgtableVisitCtx:
    """``struct kvm_pgtable_visit_ctx``: what a visitor knows about the entry it visits.

    ``ptep`` is the entry's address, ``old`` the value read before the visit
    (the walker re-reads it after LEAF and TABLE_PRE visits).
    """

    __slots__ = ("ptep", "old", "arg", "mm_ops", "start", "addr", "end", "level", "flags")

    def __init__(self, ptep: int, old: int, arg: Any, mm_ops: KvmPgtableMmOps, start: int,
                 addr: int, end: int, level: int, flags: int) -> None:
        self.ptep = ptep
        self.old = old
        self.arg = arg
        self.mm_ops = mm_ops
        self.start = start
        self.addr = addr
        self.end = end
        self.level = level
        self.flags = flags


#: ``kvm_pgtable_visitor_fn_t``: ``(ctx, visit) -> int``.
VisitorFn = Callable[[KvmPgtableVisitCtx, int], int]


class KvmPgtableWalker:
    """``struct kvm_pgtable_walker``: the callback, its argument, the walk flags."""

    __slots__ = ("cb", "arg", "flags")

    def __init__(self, cb: VisitorFn, arg: Any, flags: int) -> None:
        self.cb = cb
        self.arg = arg
        self.flags = flags


class KvmPgtableWalkData:
    """``struct kvm_pgtable_walk_data``: the walker, ``start``, ``addr`` (advancing), ``end``.

    ``m`` is the machine whose memory holds the tables (the model's; the C
    dereferences pointers), with its table memory and granule cached.
    """

    __slots__ = ("walker", "start", "addr", "end", "m", "pages", "page_mask", "shifts",
                 "idx_mask", "addr_mask")

    def __init__(self, m: Machine, walker: KvmPgtableWalker, start: int, addr: int,
                 end: int) -> None:
        self.walker = walker
        self.start = start
        self.addr = addr
        self.end = end
        self.m = m
        g = m.granule
        self.pages = m.pages
        self.page_mask = g.page_mask
        self.shifts = g.granule_shifts  # kvm_granule_shift(level) at [level + 1]
        self.idx_mask = g.ptrs_per_pte - 1
        self.addr_mask = g.pte_addr_mask


# -- asm/kvm_pgtable.h (host object: kvm_pteref_t is __rcu) ---------------------

def kvm_pgtable_walk_shared(ctx: KvmPgtableVisitCtx) -> bool:
    """``kvm_pgtable_walk_shared()``: the walk may run alongside other walkers."""
    return bool(ctx.flags & KVM_PGTABLE_WALK_SHARED)


def kvm_dereference_pteref(walker: KvmPgtableWalker, pteref: int) -> int:
    """``kvm_dereference_pteref()``: ``rcu_dereference_check()``, a plain load here."""
    return pteref


def kvm_pgtable_walk_begin(m: Machine, walker: KvmPgtableWalker) -> int:
    """``kvm_pgtable_walk_begin()``: a shared walk takes the RCU read lock."""
    if walker.flags & KVM_PGTABLE_WALK_SHARED:
        m.rcu_read_lock()
    return 0


def kvm_pgtable_walk_end(m: Machine, walker: KvmPgtableWalker) -> None:
    """``kvm_pgtable_walk_end()``: ... and drops it."""
    if walker.flags & KVM_PGTABLE_WALK_SHARED:
        m.rcu_read_unlock()


def kvm_pgtable_walk_lock_held(m: Machine) -> bool:
    """``kvm_pgtable_walk_lock_held()``: ``rcu_read_lock_held()``."""
    return m.rcu_read_lock_held()


# -- pgtable.c ----------------------------------------------------------------

def kvm_pgtable_walk_skip_bbm_tlbi(ctx: KvmPgtableVisitCtx) -> bool:
    """``kvm_pgtable_walk_skip_bbm_tlbi()`` (6.12)."""
    return bool(ctx.flags & KVM_PGTABLE_WALK_SKIP_BBM_TLBI)


def kvm_pgtable_walk_skip_cmo(ctx: KvmPgtableVisitCtx) -> bool:
    """``kvm_pgtable_walk_skip_cmo()`` (6.12)."""
    return bool(ctx.flags & KVM_PGTABLE_WALK_SKIP_CMO)


# kvm_phys_is_valid(): pte.kvm_phys_is_valid (no LPA2: pa < 2**48).


def kvm_block_mapping_supported(ctx: KvmPgtableVisitCtx, phys: int) -> bool:
    """``kvm_block_mapping_supported()`` (6.12): can the visited entry be a leaf for ``phys``?"""
    g = ctx.mm_ops.m.granule
    level = ctx.level
    granule = 1 << g.granule_shifts[level + 1]  # kvm_granule_size(ctx->level)

    if not g.kvm_level_supports_block_mapping(level):
        return False

    if granule > ctx.end - ctx.addr:
        return False

    if phys < (1 << PA_BITS) and phys & (granule - 1):  # kvm_phys_is_valid && !IS_ALIGNED
        return False

    return not ctx.addr & (granule - 1)


def kvm_pgtable_idx(data: KvmPgtableWalkData, level: int) -> int:
    """``kvm_pgtable_idx()``: index of ``data.addr`` in a table at ``level``."""
    return (data.addr >> data.shifts[level + 1]) & data.idx_mask


def kvm_pgd_page_idx(pgt: KvmPgtable, addr: int) -> int:
    """``kvm_pgd_page_idx()`` (6.12 takes the table and an address)."""
    return __kvm_pgd_page_idx(pgt.ia_bits, pgt.start_level, addr, pgt.m.granule)


# kvm_pgd_pages(ia_bits, start_level): geometry.kvm_pgd_pages (with the granule).
# kvm_pte_table(): pte.kvm_pte_table.


def kvm_pte_follow(pte: int, mm_ops: KvmPgtableMmOps) -> int:
    """``kvm_pte_follow()``: the address (``phys_to_virt``) a descriptor points at."""
    return mm_ops.phys_to_virt(pte & mm_ops.m.granule.pte_addr_mask)


def kvm_clear_pte(m: Machine, ptep: int) -> None:
    """``kvm_clear_pte()``: ``WRITE_ONCE(*ptep, 0)``."""
    m.WRITE_ONCE(ptep, 0)


def kvm_init_table_pte(childp: int, mm_ops: KvmPgtableMmOps) -> int:
    """``kvm_init_table_pte()`` (6.12): a table descriptor pointing at ``childp``."""
    pte = mm_ops.virt_to_phys(childp) & mm_ops.m.granule.pte_addr_mask  # kvm_phys_to_pte()
    pte |= 1 << 1  # FIELD_PREP(KVM_PTE_TYPE, KVM_PTE_TYPE_TABLE)
    pte |= 1  # KVM_PTE_VALID
    return pte


# kvm_init_valid_leaf_pte(pa, attr, level): pte.kvm_init_valid_leaf_pte (with the granule).
# kvm_init_invalid_leaf_owner(owner_id): pte.kvm_init_invalid_leaf_owner (bits 9:2).


def kvm_pgtable_visitor_cb(data: KvmPgtableWalkData, ctx: KvmPgtableVisitCtx,
                           visit: int) -> int:
    """``kvm_pgtable_visitor_cb()``: call the walker's callback (a shared walk must hold RCU)."""
    walker = data.walker
    m = data.m

    # Ensure the appropriate lock is held (the RCU read lock for a shared walk).
    if ctx.flags & KVM_PGTABLE_WALK_SHARED and not m.rcu_read_lock_held():
        m.WARN_ON_ONCE(True, "kvm_pgtable_walk_shared(ctx) && !kvm_pgtable_walk_lock_held()")
    return walker.cb(ctx, visit)


def kvm_pgtable_walk_continue(walker: KvmPgtableWalker, r: int) -> bool:
    """``kvm_pgtable_walk_continue()``: go on after ``r``?

    ``-EAGAIN`` (a visitor lost a race, or found the entry already as wanted)
    ends the walk only in a fault handler (``HANDLE_FAULT``); any other error
    ends it always.
    """
    if r == _EAGAIN:
        return not walker.flags & KVM_PGTABLE_WALK_HANDLE_FAULT
    return not r


def __kvm_pgtable_visit(data: KvmPgtableWalkData, mm_ops: KvmPgtableMmOps, pteref: int,
                        level: int) -> int:
    """``__kvm_pgtable_visit()`` (6.12): visit one entry through a context; descend into tables.

    After a LEAF or TABLE_PRE visit the entry is read again, so the walk
    descends into a table a LEAF visit installed and not into one a
    TABLE_PRE visit replaced. The C's ``goto out`` is the fall-through to
    the last test. The helpers it calls for every entry
    (``kvm_pgtable_visitor_cb``, ``kvm_pgtable_walk_continue``,
    ``kvm_pte_table``, ``kvm_pte_follow``, ``kvm_granule_size``) are written
    out inline, as the compiler inlines them, with their names in comments.
    """
    walker = data.walker
    flags = walker.flags
    ptep = pteref  # kvm_dereference_pteref(walker, pteref)
    mask = data.page_mask
    table_page = data.pages[ptep & ~mask]
    idx = (ptep & mask) >> 3
    ctx = KvmPgtableVisitCtx(ptep, table_page[idx], walker.arg, mm_ops, data.start, data.addr,
                             data.end, level, flags)
    ret = 0
    reload = False
    last = level == KVM_PGTABLE_LAST_LEVEL
    table = not last and (ctx.old & 3) == 3  # kvm_pte_table(ctx.old, level)
    # kvm_pgtable_visitor_cb(): a shared walk must hold the RCU read lock, then walker->cb
    shared = flags & KVM_PGTABLE_WALK_SHARED
    # kvm_pgtable_walk_continue(): go on if ret is 0, or -EAGAIN outside a fault handler
    eagain_stops = flags & KVM_PGTABLE_WALK_HANDLE_FAULT

    if table and flags & KVM_PGTABLE_WALK_TABLE_PRE:
        if shared and not data.m.rcu_nesting:
            _warn_unlocked(data.m)
        ret = walker.cb(ctx, KVM_PGTABLE_WALK_TABLE_PRE)
        reload = True

    if not table and flags & KVM_PGTABLE_WALK_LEAF:
        if shared and not data.m.rcu_nesting:
            _warn_unlocked(data.m)
        ret = walker.cb(ctx, KVM_PGTABLE_WALK_LEAF)
        reload = True

    # Re-read after the callback: it may have installed or replaced a table.
    if reload:
        ctx.old = table_page[idx]  # READ_ONCE(*ptep)
        table = not last and (ctx.old & 3) == 3

    if not ret or (ret == _EAGAIN and not eagain_stops):
        if not table:
            size = 1 << data.shifts[level + 1]  # kvm_granule_size(level)
            data.addr = (data.addr & ~(size - 1)) + size
        else:
            childp = mm_ops.phys_to_virt(ctx.old & data.addr_mask)  # kvm_pte_follow()
            ret = __kvm_pgtable_walk(data, mm_ops, childp, level + 1)
            if (not ret or (ret == _EAGAIN and not eagain_stops)) and \
                    ctx.flags & KVM_PGTABLE_WALK_TABLE_POST:
                if shared and not data.m.rcu_nesting:
                    _warn_unlocked(data.m)
                ret = walker.cb(ctx, KVM_PGTABLE_WALK_TABLE_POST)

    # out:
    if not ret or (ret == _EAGAIN and not eagain_stops):
        return 0
    return ret


def _warn_unlocked(m: Machine) -> None:
    """The ``WARN_ON_ONCE`` of ``kvm_pgtable_visitor_cb`` that fired."""
    m.WARN_ON_ONCE(True, "kvm_pgtable_walk_shared(ctx) && !kvm_pgtable_walk_lock_held()")


def __kvm_pgtable_walk(data: KvmPgtableWalkData, mm_ops: KvmPgtableMmOps, pgtable: int,
                       level: int) -> int:
    """``__kvm_pgtable_walk()`` (6.12): visit a table's entries from ``data.addr`` on."""
    if data.m.WARN_ON_ONCE(level < KVM_PGTABLE_FIRST_LEVEL or level > KVM_PGTABLE_LAST_LEVEL,
                           "level < KVM_PGTABLE_FIRST_LEVEL || level > KVM_PGTABLE_LAST_LEVEL"):
        return -EINVAL

    ret = 0
    ptrs_per_pte = data.idx_mask + 1
    idx = (data.addr >> data.shifts[level + 1]) & data.idx_mask  # kvm_pgtable_idx()
    while idx < ptrs_per_pte:
        pteref = pgtable + idx * 8  # &pgtable[idx]
        if data.addr >= data.end:
            break
        ret = __kvm_pgtable_visit(data, mm_ops, pteref, level)
        if ret:
            break
        idx += 1
    return ret


def _kvm_pgtable_walk(pgt: KvmPgtable, data: KvmPgtableWalkData) -> int:
    """``_kvm_pgtable_walk()``: range check, then each concatenated pgd page."""
    limit = 1 << pgt.ia_bits

    if data.addr > limit or data.end > limit:
        return -ERANGE

    if pgt.pgd is None:
        return -EINVAL

    ret = 0
    page_size = pgt.m.granule.page_size
    idx = kvm_pgd_page_idx(pgt, data.addr)
    while data.addr < data.end:
        pteref = pgt.pgd + idx * page_size  # &pgt->pgd[idx * PTRS_PER_PTE]
        ret = __kvm_pgtable_walk(data, pgt.mm_ops, pteref, pgt.start_level)
        if ret:
            break
        idx += 1
    return ret


def kvm_pgtable_walk(pgt: KvmPgtable, addr: int, size: int, walker: KvmPgtableWalker) -> int:
    """``kvm_pgtable_walk()`` (6.12): walk ``[addr, addr + size)`` rounded out to pages.

    ``start`` is kept (``stage2_map_walker_phys_addr`` offsets from it); a
    shared walk runs inside ``kvm_pgtable_walk_begin`` / ``_end``.

    :param pgt: ``struct kvm_pgtable *``.
    :param addr: ``u64`` input address.
    :param size: ``u64`` size in bytes (the end wraps modulo 2**64 like the C's).
    :param walker: ``struct kvm_pgtable_walker *``.
    """
    m = pgt.m
    page_mask = m.granule.page_mask
    start = addr & ~page_mask  # ALIGN_DOWN(addr, PAGE_SIZE)
    end = ((start + size + page_mask) & ~page_mask) & _U64  # PAGE_ALIGN(walk_data.addr + size)
    walk_data = KvmPgtableWalkData(m, walker, start, start, end)

    r = kvm_pgtable_walk_begin(m, walker)
    if r:
        return r

    r = _kvm_pgtable_walk(pgt, walk_data)
    kvm_pgtable_walk_end(m, walker)

    return r

