"""The simulated machine under pgtable.c: memory, barriers, TLBI, CMOs, mm_ops.

``pgtable.c`` reaches a few things through globals rather than arguments:
physical memory (``*ptep``, ``WRITE_ONCE``, ``smp_store_release``), barriers
(``dsb``, ``isb``), TLB maintenance (``kvm_call_hyp(__kvm_tlb_flush_*)``),
direct cache maintenance (5.13's ``__flush_dcache_area``), ``WARN_ON`` and CPU
capabilities (``cpus_have_const_cap(ARM64_HAS_STAGE2_FWB)``). The model passes
them explicitly as one :class:`Machine` (``m``), the way drgn helpers take
``prog``. Every effect they have is emitted, in order, as a record of
:mod:`ptreplay.effects` into ``m.emit`` (any callable; ``list.append`` is the
usual sink). 6.12 adds ``cmpxchg``, the RCU read lock, ``call_rcu`` and
``system_supports_tlb_range()``.

Memory holds only table pages: a dict from the page's address (as the code
sees it: ``mm_ops`` virtual addresses) to a list of ``PTRS_PER_PTE`` ints.
Mapped (leaf) pages are never dereferenced and have no storage. Virtual and
physical addresses differ by one constant, ``Machine.linear_offset``
(``virt = phys + linear_offset``, like the arm64 linear map); the oracle
harness and the default here use 0 so a table page's "virtual" address is its
PA. Effects always carry PAs.

``struct kvm_pgtable_mm_ops`` is :class:`KvmPgtableMmOps`; :class:`OracleMmOps`
is the oracle harness's: a bump allocator from PA 0x40000000 that never reuses
freed pages, refcounts like ``struct page``, and memcaches with an optional
page limit; for 6.12 its ``free_unlinked_table`` is KVM's
``stage2_free_unlinked_table`` (``call_rcu``, the table is freed by the
callback). Several page tables (roots) may share one machine and one
``mm_ops``; nothing here is global.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ptreplay.effects import (
    Alloc,
    AllocFail,
    Cmo,
    Dsb,
    Effect,
    Free,
    Get,
    HarnessError,
    Isb,
    Pte,
    Put,
    Rcu,
    Warn,
)
from ptreplay.model.geometry import GRANULE_4K, Granule
from ptreplay.model.profiles import LINUX_6_1, Profile

__all__ = [
    "Platform",
    "Machine",
    "Memcache",
    "KvmPgtableMmOps",
    "OracleMmOps",
    "ORACLE_ARENA_BASE",
    "ORACLE_ARENA_SIZE",
    "ORACLE_ARENA_PAGES",
]

Sink = Callable[[Effect], object]

#: First PA the oracle harness hands out for table pages.
ORACLE_ARENA_BASE = 0x4000_0000
#: Pages of PA space the oracle harness has for table pages (2^18, whatever their size).
ORACLE_ARENA_PAGES = 1 << 18
#: Bytes of PA space the oracle harness has for table pages with 4 KiB pages (1 GiB).
ORACLE_ARENA_SIZE = ORACLE_ARENA_PAGES << 12

_DSB = {opt: Dsb(opt) for opt in ("ishst", "ish", "nsh", "nshst", "sy", "st")}
_ISB = Isb()


@dataclass(frozen=True)
class Platform:
    """What the CPU (and the build) provide: the PLATFORM axis, apart from the profile.

    :param granule: the build's page size (``PAGE_SHIFT``).
    :param fwb: ``cpus_have_const_cap(ARM64_HAS_STAGE2_FWB)``.
    :param hw_af: hardware Access-flag management (VTCR_EL2.HA honoured). Nothing
        in the model acts on it (there is no concurrent hardware walker); it is
        recorded for replay layers that must explain AF changes they did not cause.
    :param tlb_range: FEAT_TLBIRANGE, ``system_supports_tlb_range()`` (used from 6.12 on).
    """

    granule: Granule = GRANULE_4K
    fwb: bool = False
    hw_af: bool = True
    tlb_range: bool = False


class Machine:
    """The global state pgtable.c touches, and the sink its effects go to.

    :param profile: which kernel's pgtable.c runs (read by the stage-2 code).
    :param platform: the CPU features and granule.
    :param emit: called with each effect record, in order.
    :param linear_offset: ``virt - phys`` of table pages (0: addresses are PAs).
    """

    __slots__ = (
        "profile", "platform", "granule", "emit", "linear_offset", "pages",
        "page_mask", "warned_once", "rcu_nesting", "rcu_callbacks",
    )

    def __init__(self, profile: Profile = LINUX_6_1, platform: Platform | None = None,
                 emit: Sink | None = None, *, linear_offset: int = 0) -> None:
        self.profile = profile
        self.platform = platform or Platform()
        self.granule = self.platform.granule
        self.emit: Sink = emit if emit is not None else (lambda e: None)
        self.linear_offset = linear_offset
        #: table pages: page address -> ``PTRS_PER_PTE`` entries.
        self.pages: dict[int, list[int]] = {}
        self.page_mask = self.granule.page_mask
        #: conditions of ``WARN_ON_ONCE`` that already fired ("once per process").
        self.warned_once: set[str] = set()
        #: ``rcu_read_lock()`` nesting of the (one) CPU running the code (6.12).
        self.rcu_nesting = 0
        #: ``call_rcu()`` callbacks waiting for the end of the grace period (6.12).
        self.rcu_callbacks: list[tuple[Callable[..., object], tuple[object, ...]]] = []

    # -- physical memory ------------------------------------------------------

    def load(self, ptep: int) -> int:
        """``*ptep`` / ``READ_ONCE(*ptep)``: the entry at address ``ptep``."""
        mask = self.page_mask
        return self.pages[ptep & ~mask][(ptep & mask) >> 3]

    def WRITE_ONCE(self, ptep: int, val: int) -> None:  # noqa: N802 - the kernel's name
        """``WRITE_ONCE(*ptep, val)``: store and emit a ``pte`` effect (also if unchanged)."""
        mask = self.page_mask
        page = self.pages.get(ptep & ~mask)
        if page is None:
            self.emit(HarnessError("store to a page that is not live", ptep - self.linear_offset))
            return
        i = (ptep & mask) >> 3
        self.emit(Pte(ptep - self.linear_offset, page[i], val))
        page[i] = val

    def smp_store_release(self, ptep: int, val: int) -> None:
        """``smp_store_release(ptep, val)``: the same store, with release ordering."""
        self.WRITE_ONCE(ptep, val)

    def cmpxchg(self, ptep: int, old: int, new: int) -> int:
        """``cmpxchg(ptep, old, new)`` (6.12 shared walks): store ``new`` if ``*ptep == old``.

        Returns the value found. A successful exchange emits ``pte`` with
        ``how="cmpxchg"``; a failed one (another writer got there first) emits
        it with ``expect=old, ok=False`` and stores nothing.
        """
        mask = self.page_mask
        page = self.pages.get(ptep & ~mask)
        if page is None:
            self.emit(HarnessError("store to a page that is not live", ptep - self.linear_offset))
            return old ^ 1  # not what the caller expected: nothing was exchanged
        i = (ptep & mask) >> 3
        cur = page[i]
        if cur == old:
            self.emit(Pte(ptep - self.linear_offset, cur, new, "cmpxchg"))
            page[i] = new
        else:
            self.emit(Pte(ptep - self.linear_offset, cur, new, "cmpxchg", old, False))
        return cur

    def add_page(self, addr: int) -> None:
        """Create a zeroed table page at ``addr`` (an allocator's job)."""
        self.pages[addr] = [0] * self.granule.ptrs_per_pte

    def remove_page(self, addr: int) -> None:
        """Forget a freed page: later stores to it are harness errors."""
        self.pages.pop(addr, None)

    def virt_to_phys(self, addr: int) -> int:
        """The PA of a table-page address (the linear map)."""
        return addr - self.linear_offset

    def phys_to_virt(self, pa: int) -> int:
        """The address the code uses for PA ``pa`` (the linear map)."""
        return pa + self.linear_offset

    # -- barriers, cache maintenance, warnings --------------------------------

    def dsb(self, opt: str) -> None:
        """``dsb(opt)``."""
        self.emit(_DSB.get(opt) or Dsb(opt))

    def isb(self) -> None:
        """``isb()``."""
        self.emit(_ISB)

    def flush_dcache_area(self, addr: int, size: int) -> None:
        """5.13's ``__flush_dcache_area(addr, size)``: clean+invalidate to PoC by VA."""
        self.emit(Cmo("__flush_dcache_area", addr - self.linear_offset, size))

    def WARN_ON(self, cond: bool, text: str) -> bool:  # noqa: N802 - the kernel's name
        """``WARN_ON(cond)``: emit a ``warn`` effect with the C text if ``cond`` holds."""
        if cond:
            self.emit(Warn(text))
        return cond

    def WARN_ON_ONCE(self, cond: bool, text: str) -> bool:  # noqa: N802 - the kernel's name
        """``WARN_ON_ONCE(cond)``: like :meth:`WARN_ON`, reported the first time only."""
        if cond and text not in self.warned_once:
            self.warned_once.add(text)
            self.emit(Warn(text))
        return cond

    def cpus_have_const_cap_stage2_fwb(self) -> bool:
        """``cpus_have_const_cap(ARM64_HAS_STAGE2_FWB)``."""
        return self.platform.fwb

    def system_supports_tlb_range(self) -> bool:
        """``system_supports_tlb_range()`` (``ARM64_HAS_TLB_RANGE``, 6.12)."""
        return self.platform.tlb_range

    # -- RCU (6.12: shared walks and deferred table frees) ---------------------

    def rcu_read_lock(self) -> None:
        """``rcu_read_lock()``: enter a read-side critical section."""
        self.rcu_nesting += 1
        self.emit(Rcu("read_lock"))

    def rcu_read_unlock(self) -> None:
        """``rcu_read_unlock()``: leave it."""
        self.rcu_nesting -= 1
        self.emit(Rcu("read_unlock"))

    def rcu_read_lock_held(self) -> bool:
        """``rcu_read_lock_held()``."""
        return self.rcu_nesting > 0

    def call_rcu(self, fn: Callable[..., object], *args: object) -> None:
        """``call_rcu()``: run ``fn(*args)`` after the current grace period.

        The caller emits its own ``call_rcu`` effect (it knows what the
        callback frees); the callback emits ``callback`` when it runs.
        """
        self.rcu_callbacks.append((fn, args))

    def rcu_barrier(self) -> int:
        """End the grace period: run every queued callback, in queue order.

        What the oracle harness does when each operation returns (and
        ``rcu_barrier()`` waits for). Callbacks queued by callbacks run too.
        Returns how many ran.
        """
        n = 0
        queue = self.rcu_callbacks
        while queue:
            fn, args = queue.pop(0)
            fn(*args)
            n += 1
        return n


class Memcache:
    """The ``void *mc`` a stage-2 map passes to ``zalloc_page`` (KVM's memory cache).

    :param limit: pages it can still hand out (``None``: unlimited, a cache
        KVM topped up generously).
    """

    __slots__ = ("limit",)

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit

    def take(self) -> bool:
        """Take one page from the cache; False when it is empty."""
        if self.limit is None:
            return True
        if self.limit <= 0:
            return False
        self.limit -= 1
        return True


class KvmPgtableMmOps:
    """``struct kvm_pgtable_mm_ops``: the memory-management callbacks of pgtable.c.

    Abstract: :class:`OracleMmOps` is the implementation to use or subclass.
    ``dcache_clean_inval_poc`` and ``icache_inval_pou`` are attributes that are
    either a callable ``(addr, size)`` or ``None`` (the kernel tests the
    function pointers for NULL; 5.13's struct has no such members at all).
    """

    dcache_clean_inval_poc: Callable[[int, int], None] | None = None
    icache_inval_pou: Callable[[int, int], None] | None = None

    def __init__(self, m: Machine) -> None:
        #: the machine whose memory holds the table pages.
        self.m = m

    def zalloc_page(self, arg: Memcache | None) -> int | None:
        """Allocate one zeroed page (refcount 1); ``None`` for NULL.

        ``arg`` is the memcache: a :class:`Memcache`, or anything with its
        ``take()`` (6.12's split cache, :class:`~ptreplay.model.structs.KvmMmuMemoryCache`).
        """
        raise NotImplementedError

    def zalloc_pages_exact(self, size: int) -> int | None:
        """Allocate ``size`` bytes of contiguous zeroed pages; ``None`` for NULL."""
        raise NotImplementedError

    def free_pages_exact(self, addr: int, size: int) -> None:
        """Free pages from :meth:`zalloc_pages_exact`, whatever their refcounts."""
        raise NotImplementedError

    def free_unlinked_table(self, addr: int, level: int) -> None:
        """Free a table unlinked from the tree (6.12; ``level`` of the entry that
        pointed at it), with every page below it."""
        raise NotImplementedError

    def get_page(self, addr: int) -> None:
        """Increment the refcount of the page containing ``addr``."""
        raise NotImplementedError

    def put_page(self, addr: int) -> None:
        """Decrement the refcount of the page containing ``addr``; free it at 0."""
        raise NotImplementedError

    def page_count(self, addr: int) -> int:
        """The refcount of the page containing ``addr`` (a query, not an effect)."""
        raise NotImplementedError

    def phys_to_virt(self, phys: int) -> int:
        """Address the code uses for ``phys``."""
        raise NotImplementedError

    def virt_to_phys(self, addr: int) -> int:
        """PA of ``addr``."""
        raise NotImplementedError


class OracleMmOps(KvmPgtableMmOps):
    """The oracle harness's mm_ops: bump allocator, struct-page refcounts, memcache limits.

    Pages come from ``arena_base`` upwards (``zalloc_pages_exact`` runs are
    contiguous) and are never reused; every page starts with refcount 1;
    ``put_page`` reaching 0 frees the page. ``alloc``, ``alloc_fail``, ``free``,
    ``get`` and ``put`` effects go to the machine's sink; ``page_count``,
    ``phys_to_virt`` and ``virt_to_phys`` are silent queries.

    Subclass points (e.g. a replay layer whose table addresses come from a trace):

    * :meth:`next_pages` chooses the address of each allocation;
    * :meth:`page_count` may be overridden to record the queries (call ``super()``);
    * ``cmo=False`` leaves the CMO callbacks NULL (6.1 ``mm_cmo: false``).

    :param m: the machine whose memory the pages live in.
    :param cmo: provide 6.1's ``dcache_clean_inval_poc`` / ``icache_inval_pou``.
    """

    def __init__(self, m: Machine, *, cmo: bool = True, arena_base: int = ORACLE_ARENA_BASE,
                 arena_size: int = ORACLE_ARENA_SIZE) -> None:
        super().__init__(m)
        self.page_size = m.granule.page_size
        self.page_mask = m.granule.page_mask
        self.next_pa = arena_base
        self.arena_end = arena_base + arena_size
        #: refcount of every live table page, by page address.
        self.refcount: dict[int, int] = {}
        if cmo:
            self.dcache_clean_inval_poc = self._dcache_clean_inval_poc
            self.icache_inval_pou = self._icache_inval_pou

    # -- allocation ------------------------------------------------------------

    def next_pages(self, npages: int) -> int | None:
        """Address of a fresh run of ``npages`` pages, or None when the arena is full."""
        pa = self.next_pa
        end = pa + npages * self.page_size
        if end > self.arena_end:
            return None
        self.next_pa = end
        return self.m.phys_to_virt(pa)

    def _new_pages(self, addr: int, npages: int) -> None:
        m = self.m
        for i in range(npages):
            page = addr + i * self.page_size
            m.add_page(page)
            self.refcount[page] = 1

    def zalloc_page(self, arg: Memcache | None) -> int | None:
        """``mm_ops->zalloc_page(mc)``: one page from the memcache's budget."""
        m = self.m
        if arg is not None and not arg.take():
            m.emit(AllocFail())
            return None
        addr = self.next_pages(1)
        if addr is None:
            m.emit(AllocFail())
            return None
        self._new_pages(addr, 1)
        m.emit(Alloc(m.virt_to_phys(addr)))
        return addr

    def zalloc_pages_exact(self, size: int) -> int | None:
        """``mm_ops->zalloc_pages_exact(size)``: contiguous pages (the pgd)."""
        m = self.m
        npages = (size + self.page_mask) // self.page_size
        addr = self.next_pages(npages)
        if addr is None:
            m.emit(AllocFail())
            return None
        self._new_pages(addr, npages)
        m.emit(Alloc(m.virt_to_phys(addr), size))
        return addr

    def free_pages_exact(self, addr: int, size: int) -> None:
        """``mm_ops->free_pages_exact(addr, size)``: free whatever the refcounts."""
        m = self.m
        npages = (size + self.page_mask) // self.page_size
        for i in range(npages):
            page = addr + i * self.page_size
            if self.refcount.pop(page, None) is None:
                m.emit(HarnessError("double free", m.virt_to_phys(page)))
            m.remove_page(page)
        m.emit(Free(m.virt_to_phys(addr), size))

    def free_unlinked_table(self, addr: int, level: int) -> None:
        """``mm_ops->free_unlinked_table``: KVM's ``stage2_free_unlinked_table()`` (mmu.c, 6.12).

        Queues :meth:`stage2_free_unlinked_table_rcu_cb` with ``call_rcu()``;
        the table is not touched until the grace period ends.
        """
        m = self.m
        m.emit(Rcu("call_rcu", "free_unlinked_table", m.virt_to_phys(addr), level))
        m.call_rcu(self.stage2_free_unlinked_table_rcu_cb, addr, level)

    def stage2_free_unlinked_table_rcu_cb(self, addr: int, level: int) -> None:
        """KVM's ``stage2_free_unlinked_table_rcu_cb()`` (mmu.c, 6.12): the deferred free,
        ``kvm_pgtable_stage2_free_unlinked(mm_ops, pgtable, level)``."""
        from ptreplay.model.stage2_612 import kvm_pgtable_stage2_free_unlinked

        m = self.m
        m.emit(Rcu("callback", "free_unlinked_table", m.virt_to_phys(addr), level))
        kvm_pgtable_stage2_free_unlinked(self, addr, level)

    # -- struct page refcounts -------------------------------------------------

    def get_page(self, addr: int) -> None:
        """``mm_ops->get_page(addr)``."""
        page = addr & ~self.page_mask
        refcount = self.refcount
        count = refcount.get(page)
        m = self.m
        if count is None:
            m.emit(HarnessError("get_page on a page that is not live", m.virt_to_phys(page)))
            return
        count += 1
        refcount[page] = count
        m.emit(Get(page - m.linear_offset, count))

    def put_page(self, addr: int) -> None:
        """``mm_ops->put_page(addr)``: the page is freed when its count reaches 0."""
        page = addr & ~self.page_mask
        refcount = self.refcount
        count = refcount.get(page)
        m = self.m
        if count is None:
            m.emit(HarnessError("put_page on a page that is not live", m.virt_to_phys(page)))
            return
        count -= 1
        pa = page - m.linear_offset
        m.emit(Put(pa, count))
        if count == 0:
            del refcount[page]
            m.remove_page(page)
            m.emit(Free(pa))
        else:
            refcount[page] = count

    def page_count(self, addr: int) -> int:
        """``mm_ops->page_count(addr)`` (not an effect)."""
        count = self.refcount.get(addr & ~self.page_mask)
        if count is None:
            self.m.emit(HarnessError("page_count on a page that is not live",
                                     self.m.virt_to_phys(addr & ~self.page_mask)))
            return 0
        return count

    def phys_to_virt(self, phys: int) -> int:
        """``mm_ops->phys_to_virt``: the machine's linear map."""
        return phys + self.m.linear_offset

    def virt_to_phys(self, addr: int) -> int:
        """``mm_ops->virt_to_phys``: the machine's linear map."""
        return addr - self.m.linear_offset

    # -- 6.1 cache-maintenance callbacks --------------------------------------

    def _dcache_clean_inval_poc(self, addr: int, size: int) -> None:
        self.m.emit(Cmo("dcache_clean_inval_poc", addr - self.m.linear_offset, size))

    def _icache_inval_pou(self, addr: int, size: int) -> None:
        self.m.emit(Cmo("icache_inval_pou", addr - self.m.linear_offset, size))

    def live_pages(self) -> dict[int, int]:
        """Every allocated, not yet freed page and its refcount (a copy)."""
        return dict(self.refcount)
