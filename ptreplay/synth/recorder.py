"""What a probe could see of the model: the effects of one operation in observed form.

The model emits :mod:`ptreplay.effects` records with physical addresses, and
does not report ``page_count()`` (a query) nor the exact address passed to
``get_page``/``put_page``. A real trace shows mm_ops calls with kernel
virtual addresses, including those. :class:`RecordingMmOps` (an
:class:`~ptreplay.model.memory.OracleMmOps` subclass, through its documented
subclass points) and :class:`Recorder` (the machine's effect sink) together
produce, in the order the kernel code makes them, the :class:`Seen` records
of one operation: each effect in the observed form of
:mod:`ptreplay.capture.probe_effects` (kernel VAs; get/put with the exact
address and :data:`~ptreplay.capture.probe_effects.COUNT_NOT_OBSERVED`),
``page_count`` queries as :class:`~ptreplay.capture.probe_effects.PageCount`,
and every entry store, TLB invalidation and cache maintenance call. Which of
them a trace shows (TLB helpers only on VHE, entry stores only with the
instrumentation tracepoint) is decided when the events are written.

Table pages come from a :class:`~ptreplay.synth.memory.PageAllocator`
(:meth:`RecordingMmOps.next_pages`) and go back to it when freed.

``hooks`` lets an injection change what the kernel does at one mm_ops call
(skip a ``put_page``, repeat a ``get_page``): see :mod:`ptreplay.synth.inject`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from ptreplay.capture.probe_effects import COUNT_NOT_OBSERVED, PageCount
from ptreplay.effects import Alloc, AllocFail, Cmo, Free, Get, HarnessError, Pte, Put, Tlbi, Warn
from ptreplay.model.memory import Machine, Memcache, OracleMmOps
from ptreplay.synth.memory import PageAllocator

__all__ = ["Seen", "Recorder", "RecordingMmOps", "MmHooks"]


class Seen(NamedTuple):
    """One effect of an operation as a probe would see it.

    :param effect: the observed-form effect, or ``None`` for a placeholder where an
        injection removed what the kernel would have done (see ``planted``).
    :param addr: the exact address of a get/put/page_count call.
    :param sized: for an :class:`~ptreplay.effects.AllocFail`: whether
        ``zalloc_pages_exact`` failed (else ``zalloc_page``).
    :param planted: this record is the injected bug (added, changed, or the placeholder
        of a removed one).
    """

    effect: Any
    addr: int | None = None
    sized: bool | None = None
    planted: bool = False


class MmHooks(Protocol):
    """How an injection changes mm_ops calls (how many times the call really happens)."""

    def on_get(self, addr: int, page: int, refcount: int, is_pgd: bool) -> int:
        """``get_page(addr)``: how many times the kernel calls it (normally 1)."""
        ...

    def on_put(self, addr: int, page: int, refcount: int, is_pgd: bool) -> int:
        """``put_page(addr)``: how many times the kernel calls it (normally 1, 0: never)."""
        ...


class Recorder:
    """The effect sink of the machines: collects one operation's :class:`Seen` records.

    :param linear_offset: ``virt - phys`` of the kernel's linear map.
    """

    def __init__(self, linear_offset: int) -> None:
        self.linear_offset = linear_offset
        #: the current operation's records (the driver resets it per operation).
        self.seen: list[Seen] = []
        #: WARN_ONs and harness-detected misuse, with how often they happened.
        self.warnings: dict[str, int] = {}
        #: called with :attr:`seen` when it holds :attr:`spill_at` records (it must consume
        #: and clear them): a long operation's records then go out while it runs.
        self.spill: Callable[[list[Seen]], None] | None = None
        self.spill_at = 4096

    def check(self) -> None:
        """Hand the records so far to :attr:`spill` when there are many."""
        if self.spill is not None and len(self.seen) >= self.spill_at:
            self.spill(self.seen)

    def model_effect(self, e: Any) -> None:
        """``Machine.emit``: keep stores, TLBIs and CMOs (in observed form)."""
        t = type(e)
        if t is Pte:
            self.seen.append(Seen(Pte(e.ptep + self.linear_offset, e.old, e.new)))
        elif t is Tlbi:
            self.seen.append(Seen(e))
        elif t is Cmo:
            self.seen.append(Seen(Cmo(e.kind, e.pa + self.linear_offset, e.size)))
        elif t is Warn:
            self.warnings[e.cond] = self.warnings.get(e.cond, 0) + 1
        elif t is HarnessError:
            self.warnings[e.what] = self.warnings.get(e.what, 0) + 1
        if self.spill is not None and len(self.seen) >= self.spill_at:
            self.spill(self.seen)
        # Alloc/Free/Get/Put come from RecordingMmOps with the addresses probes see;
        # barriers and harness information have no probe.


class RecordingMmOps(OracleMmOps):
    """KVM's stage-2 mm_ops as the probes see them (see the module docstring).

    :param m: the machine (its ``emit`` must be ``recorder.model_effect``).
    :param recorder: where the observed records go.
    :param pages: the page allocator table pages come from.
    :param cmo: provide 6.1's CMO callbacks (``clean_dcache_guest_page`` ...).
    :param hooks: an injection's mm_ops hooks, or ``None``.
    """

    def __init__(self, m: Machine, recorder: Recorder, pages: PageAllocator, *,
                 cmo: bool = True, hooks: MmHooks | None = None) -> None:
        super().__init__(m, cmo=cmo)
        self.recorder = recorder
        self.pages = pages
        self.hooks = hooks
        #: first pages of the pgd runs this mm_ops allocated (VA), for the hooks.
        self.pgd_pages: set[int] = set()

    # -- allocation: the synthetic kernel's page allocator ------------------------

    def next_pages(self, npages: int) -> int | None:
        """A fresh run of pages from the allocator, as a linear-map address."""
        pa = self.pages.alloc(npages)
        return None if pa is None else self.m.phys_to_virt(pa)

    def zalloc_page(self, arg: Memcache | None) -> int | None:
        """``stage2_memcache_zalloc_page(mc)``."""
        va = super().zalloc_page(arg)
        self.recorder.seen.append(Seen(Alloc(va) if va else AllocFail(), sized=False))
        return va

    def zalloc_pages_exact(self, size: int) -> int | None:
        """``kvm_s2_zalloc_pages_exact(size)`` (5.13: ``kvm_host_zalloc_pages_exact``)."""
        va = super().zalloc_pages_exact(size)
        self.recorder.seen.append(Seen(Alloc(va, size) if va else AllocFail(), sized=True))
        if va:
            npages = (size + self.page_mask) // self.page_size
            self.pgd_pages.update(va + i * self.page_size for i in range(npages))
        return va

    def free_pages_exact(self, addr: int, size: int) -> None:
        """``kvm_s2_free_pages_exact(virt, size)`` (5.13: ``free_pages_exact``)."""
        self.recorder.seen.append(Seen(Free(addr, size)))
        super().free_pages_exact(addr, size)
        npages = (size + self.page_mask) // self.page_size
        self.pages.free(self.m.virt_to_phys(addr), npages)
        for i in range(npages):
            self.pgd_pages.discard(addr + i * self.page_size)

    # -- refcounts --------------------------------------------------------------

    def get_page(self, addr: int) -> None:
        """``kvm_host_get_page(addr)``."""
        page = addr & ~self.page_mask
        times = 1
        if self.hooks is not None:
            times = self.hooks.on_get(addr, page, self.refcount.get(page, 0),
                                      page in self.pgd_pages)
        seen = self.recorder.seen
        for i in range(times):
            seen.append(Seen(Get(page, COUNT_NOT_OBSERVED), addr, planted=i > 0))
            super().get_page(addr)
        self.recorder.check()

    def put_page(self, addr: int) -> None:
        """``kvm_s2_put_page(addr)`` (5.13: ``kvm_host_put_page``)."""
        page = addr & ~self.page_mask
        times = 1
        if self.hooks is not None:
            times = self.hooks.on_put(addr, page, self.refcount.get(page, 0),
                                      page in self.pgd_pages)
        seen = self.recorder.seen
        if times == 0:
            seen.append(Seen(None, addr, planted=True))
        for i in range(times):
            seen.append(Seen(Put(page, COUNT_NOT_OBSERVED), addr, planted=i > 0))
            live = page in self.refcount
            super().put_page(addr)
            if live and page not in self.refcount:
                self.pages.free(self.m.virt_to_phys(page))
        self.recorder.check()

    def page_count(self, addr: int) -> int:
        """``kvm_host_page_count(addr)``: recorded, as a probe on it sees it."""
        count = super().page_count(addr)
        self.recorder.seen.append(Seen(PageCount(addr & ~self.page_mask, count), addr))
        self.recorder.check()
        return count
