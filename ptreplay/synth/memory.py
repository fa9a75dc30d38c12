"""Physical memory of the synthetic host: where table pages and guest pages come from.

The kernel's page allocator hands KVM table pages from anywhere in RAM and
reuses freed pages; :class:`PageAllocator` does the same from a pool of PA
space, deterministically for a seed (a freed page goes back to the pool and
may be handed out again, as on a real kernel, so a trace shows table-page
addresses being reused). Contiguous runs (``zalloc_pages_exact``: the pgd,
up to 16 pages) are aligned to their power-of-two size like the buddy
allocator's.

Memory is proportional to the live pages (a set of PAs), not to how many
were ever allocated.
"""

from __future__ import annotations

import random

__all__ = ["PageAllocator", "BumpAllocator", "SlabAllocator", "RAM_BASE", "TABLE_POOL",
           "GUEST_POOL", "OBJECT_POOL",
           "DONATION_POOL"]

#: PHYS_OFFSET of the synthetic machine (as the recordings' QEMU virt machine).
RAM_BASE = 0x4000_0000
#: PA range table pages come from.
TABLE_POOL = (0x4200_0000, 0x5000_0000)
#: PA range guest memory is backed by (2 MiB chunks).
GUEST_POOL = (0x5000_0000, 0xC000_0000)
#: PA range the pKVM-style host stage-2 donates pages from (``set_owner`` to another
#: owner): host RAM below :data:`GUEST_POOL`, which no guest stage-2 ever maps (guest
#: memory, KSM pages and 2 MiB blocks all come from GUEST_POOL). pKVM gives a donated
#: page to its new owner only, so a correct workload never lets a guest map one.
DONATION_POOL = (RAM_BASE, GUEST_POOL[0])
#: PA range of kernel objects (struct kvm_pgtable, memory caches, memslots).
OBJECT_POOL = (0x4100_0000, 0x4200_0000)


class PageAllocator:
    """Random, reusing page allocator over ``[lo, hi)`` (see the module docstring).

    :param rng: the random source (seeded by the caller).
    :param lo: first PA of the pool.
    :param hi: end of the pool.
    :param page_size: PAGE_SIZE.
    """

    def __init__(self, rng: random.Random, lo: int = TABLE_POOL[0], hi: int = TABLE_POOL[1],
                 page_size: int = 4096) -> None:
        self.rng = rng
        self.page_size = page_size
        self.first = lo // page_size
        self.count = (hi - lo) // page_size
        self.live: set[int] = set()  # page frame numbers

    def alloc(self, npages: int = 1) -> int | None:
        """PA of ``npages`` free contiguous pages (aligned to the run's power of two)."""
        align = 1
        while align < npages:
            align <<= 1
        slots = self.count // align
        if len(self.live) + npages > self.count:
            return None
        randrange = self.rng.randrange
        live = self.live
        for _ in range(64):
            pfn = self.first + randrange(slots) * align
            if all(pfn + i not in live for i in range(npages)):
                break
        else:
            # Crowded pool: first fit from a random start.
            start = randrange(slots)
            for k in range(slots):
                pfn = self.first + ((start + k) % slots) * align
                if all(pfn + i not in live for i in range(npages)):
                    break
            else:
                return None
        for i in range(npages):
            live.add(pfn + i)
        return pfn * self.page_size

    def free(self, pa: int, npages: int = 1) -> None:
        """Give pages back to the pool."""
        pfn = pa // self.page_size
        for i in range(npages):
            self.live.discard(pfn + i)

    def is_live(self, pa: int) -> bool:
        """Whether the page at ``pa`` is allocated."""
        return pa // self.page_size in self.live


class BumpAllocator:
    """The oracle harness's allocator: pages from ``base`` upwards, never reused.

    With it, the driver's table pages are the ones ``ptreplay model run`` prints (tests
    compare the two).
    """

    def __init__(self, base: int = RAM_BASE, page_size: int = 4096) -> None:
        self.next = base
        self.page_size = page_size
        self.live: set[int] = set()

    def alloc(self, npages: int = 1) -> int | None:
        """PA of the next ``npages`` pages."""
        pa = self.next
        self.next += npages * self.page_size
        self.live.update(range(pa // self.page_size, pa // self.page_size + npages))
        return pa

    def free(self, pa: int, npages: int = 1) -> None:
        """Forget the pages (they are never handed out again)."""
        for i in range(npages):
            self.live.discard(pa // self.page_size + i)

    def is_live(self, pa: int) -> bool:
        """Whether the page at ``pa`` is allocated."""
        return pa // self.page_size in self.live


class SlabAllocator:
    """Addresses of small kernel objects (``struct kvm_pgtable``, a vCPU's memory cache,
    ``struct kvm_memory_slot``): ``align``-aligned, never reused, from a PA range."""

    def __init__(self, rng: random.Random, lo: int = OBJECT_POOL[0],
                 hi: int = OBJECT_POOL[1]) -> None:
        self.rng = rng
        self.lo = lo
        self.hi = hi
        self.used: set[int] = set()

    def alloc(self, align: int = 0x80) -> int:
        """PA of a fresh object slot."""
        slots = (self.hi - self.lo) // align
        if len(self.used) >= (self.hi - self.lo) // 0x1000 // 2:
            raise RuntimeError("synthetic kernel object pool exhausted")
        while True:
            pa = self.lo + self.rng.randrange(slots) * align
            if pa // 0x1000 not in self.used:
                self.used.add(pa // 0x1000)  # one object per page: never two alike
                return pa
