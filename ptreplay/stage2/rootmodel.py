"""One stage-2 root of a trace, replayed through the model of pgtable.c.

:class:`RootModel` holds the model of one page table (a
:class:`~ptreplay.model.memory.Machine` and a :class:`ReplayMmOps`) and
replays the trace's operations on it, one :class:`Operation` at a time,
returning the model's effects and return value.

What the model cannot decide comes from the trace, as the kernel's
environment: which page ``zalloc_page`` / ``zalloc_pages_exact`` returned
(its kernel virtual address, or NULL) is taken from the operation's observed
allocations (:class:`ReplayMmOps`). Table pages live in the model at the
kernel's own virtual addresses; the model's physical address of a table page
is ``VA - linear_offset``: the replay uses the top 16 bits of the kernel's virtual
addresses (the linear map's base), so the model's address of a table page is its
kernel virtual address without them (``0xffff00000dddc000`` -> ``0xdddc000``).

Two kinds of state the model does not know:

* **Unknown IPA ranges** (:class:`Regions`): a root first seen after its
  init (the trace began later), or any root after events were lost, may hold
  entries the model never saw. An operation touching an unknown range may
  diverge because of them: its results are *uncertain*. An unmap that
  covers whole pgd entries makes them known (the kernel then holds nothing
  there, like the model: each table fully inside an unmapped range is freed
  and its parent entry cleared, see ``stage2_unmap_walker``); destroy ends
  the root.
* **Access flags set by the hardware** (FEAT_HAFDBS, ``VTCR_EL2.HA``): after
  ``mkold`` cleared a leaf's AF, the CPU may set it again on the guest's next
  access, behind the kernel's back. With hardware AF management the model
  marks such leaves and, when a later operation reveals the leaf's AF
  (``mkold``/``mkyoung`` return the old entry, ``is_young`` the flag, a
  ``map`` of the same page returns -EAGAIN only if AF was set), adopts the
  observed AF before replaying it (:meth:`RootModel.adopt_af`), and records
  that store as a hardware one. Without it, nothing is adopted and a
  difference is a divergence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ptreplay.effects import Pte
from ptreplay.errors import InputError
from ptreplay.model import stage2
from ptreplay.model.geometry import (
    ID_AA64MMFR0_EL1_PARANGE_48,
    ID_AA64MMFR1_EL1_VMIDBITS_16,
    VTCR_EL2_SL0_MASK,
    VTCR_EL2_SL0_SHIFT,
    Granule,
    kvm_get_vtcr,
    kvm_pgd_pages,
)
from ptreplay.model.memory import Machine, Memcache, OracleMmOps, Platform
from ptreplay.model.profiles import Profile
from ptreplay.model.pte import KVM_PGTABLE_S2_IDMAP
from ptreplay.model.structs import EAGAIN, KvmArch, KvmPgtable
from ptreplay.stage2.compare import PageCount

__all__ = ["ReplayMmOps", "Regions", "RootModel", "geometry_for_pgd_size", "AF"]

#: ``KVM_PTE_LEAF_ATTR_LO_S2_AF``.
AF = 1 << 10
_U64 = (1 << 64) - 1

def _always(addr: int, end: int, prot: int) -> bool:
    """A ``force_pte_cb`` that forces page mappings everywhere."""
    return True


def _mc(value: int) -> Memcache | None:
    """The ``mc`` argument: a memory cache (its contents are the trace's allocations),
    or NULL."""
    return Memcache() if value else None


#: The model's call per operation kind, from the probe's arguments.
_OPS: dict[str, Callable[[KvmPgtable, dict[str, Any]], Any]] = {
    "map": lambda pgt, a: stage2.kvm_pgtable_stage2_map(
        pgt, a["addr"], a["size"], a["phys"], a["prot"], _mc(a["mc"])),
    "set_owner": lambda pgt, a: stage2.kvm_pgtable_stage2_set_owner(
        pgt, a["addr"], a["size"], _mc(a["mc"]), a["owner_id"]),
    "unmap": lambda pgt, a: stage2.kvm_pgtable_stage2_unmap(pgt, a["addr"], a["size"]),
    "wrprotect": lambda pgt, a: stage2.kvm_pgtable_stage2_wrprotect(pgt, a["addr"], a["size"]),
    "relax_perms": lambda pgt, a: stage2.kvm_pgtable_stage2_relax_perms(
        pgt, a["addr"], a["prot"]),
    "mkyoung": lambda pgt, a: stage2.kvm_pgtable_stage2_mkyoung(pgt, a["addr"]),
    "mkold": lambda pgt, a: stage2.kvm_pgtable_stage2_mkold(pgt, a["addr"]),
    "is_young": lambda pgt, a: int(stage2.kvm_pgtable_stage2_is_young(pgt, a["addr"])),
    "flush": lambda pgt, a: stage2.kvm_pgtable_stage2_flush(pgt, a["addr"], a["size"]),
}


class ReplayMmOps(OracleMmOps):
    """The oracle's mm_ops, with the kernel's allocations and recorded page counts.

    :meth:`next_pages` hands out the pages the trace shows the kernel
    allocated during the running operation (set with :meth:`begin`), in order;
    ``None`` in that list is an allocation that failed. When the model
    allocates more than the kernel did, the extra pages come from ``fresh``
    (addresses no kernel page has). :meth:`page_count` records each query as a
    :class:`~ptreplay.stage2.compare.PageCount` in the effect stream.
    """

    def __init__(self, m: Machine, fresh: Callable[[int], int], *, cmo: bool = True) -> None:
        super().__init__(m, cmo=cmo)
        self.fresh = fresh
        self._allocs: list[int | None] = []
        self._next = 0
        #: allocations the model made that the trace did not show.
        self.extra_allocs = 0

    def begin(self, allocs: list[int | None]) -> None:
        """Start an operation whose observed allocations returned ``allocs``."""
        self._allocs = allocs
        self._next = 0

    def next_pages(self, npages: int) -> int | None:
        """The address the kernel's allocator returned next (None: it failed)."""
        if self._next < len(self._allocs):
            addr = self._allocs[self._next]
            self._next += 1
            if addr is not None and not 0 <= addr - self.m.linear_offset < 1 << 48:
                raise InputError(f"table page at {addr:#x} is not in the linear map of the "
                                 f"others ({self.m.linear_offset:#x} + 48 bits)")
            return addr
        self.extra_allocs += 1
        return self.fresh(npages)

    def page_count(self, addr: int) -> int:
        """``mm_ops->page_count()``, recorded in the effect stream."""
        count = super().page_count(addr)
        m = self.m
        m.emit(PageCount((addr & ~self.page_mask) - m.linear_offset, count))  # type: ignore[arg-type]
        return count


class Regions:
    """A set of IPA ranges (half-open, disjoint, sorted): here, the unknown ones."""

    __slots__ = ("ranges",)

    def __init__(self, ranges: list[tuple[int, int]] | None = None) -> None:
        self.ranges: list[tuple[int, int]] = ranges or []

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def overlaps(self, lo: int, hi: int) -> bool:
        """Whether ``[lo, hi)`` meets any range."""
        for a, b in self.ranges:
            if a < hi and lo < b:
                return True
        return False

    def add(self, lo: int, hi: int) -> None:
        """Add ``[lo, hi)``."""
        out = []
        for a, b in self.ranges:
            if b < lo or a > hi:
                out.append((a, b))
            else:
                lo, hi = min(a, lo), max(b, hi)
        out.append((lo, hi))
        out.sort()
        self.ranges = out

    def remove(self, lo: int, hi: int) -> None:
        """Remove ``[lo, hi)``."""
        out = []
        for a, b in self.ranges:
            if b <= lo or a >= hi:
                out.append((a, b))
                continue
            if a < lo:
                out.append((a, lo))
            if b > hi:
                out.append((hi, b))
        self.ranges = out


def geometry_for_pgd_size(size: int, granule: Granule) -> tuple[int, int] | None:
    """``(ia_bits, start_level)`` of the smallest IPA size whose pgd is ``size`` bytes.

    What ``kvm_get_vtcr()`` would choose (at least two levels, up to 16
    concatenated pgd pages); used until an operation's probe shows the table's
    own ``ia_bits`` / ``start_level``.
    """
    for ia_bits in range(32, 49):
        vtcr = kvm_get_vtcr(ID_AA64MMFR0_EL1_PARANGE_48, ID_AA64MMFR1_EL1_VMIDBITS_16 << 4,
                            ia_bits, granule)
        start = granule.tgran_sl0_base - ((vtcr & VTCR_EL2_SL0_MASK) >> VTCR_EL2_SL0_SHIFT)
        if kvm_pgd_pages(ia_bits, start, granule) * granule.page_size == size:
            return ia_bits, start
    return None


def _vtcr(ia_bits: int, start_level: int, granule: Granule) -> int:
    vtcr = kvm_get_vtcr(ID_AA64MMFR0_EL1_PARANGE_48, ID_AA64MMFR1_EL1_VMIDBITS_16 << 4,
                        ia_bits, granule)
    return (vtcr & ~VTCR_EL2_SL0_MASK) | (
        (granule.tgran_sl0_base - start_level) << VTCR_EL2_SL0_SHIFT)


class RootModel:
    """The model of one stage-2 root, fed the trace's operations on it.

    :param root_id: the operations layer's :attr:`Root.id`.
    :param profile: the kernel profile.
    :param platform: the platform features (granule, fwb, hw_af).
    :param linear_offset: ``VA - PA`` of table pages.
    :param fresh: source of addresses for pages the model allocates beyond the trace's.
    :param known: whether the root's whole state is known (its init is in the trace).
    """

    def __init__(self, root_id: int, profile: Profile, platform: Platform, linear_offset: int,
                 fresh: Callable[[int], int], known: bool) -> None:
        self.root_id = root_id
        self.effects: list[Any] = []
        m = Machine(profile, platform, self.effects.append, linear_offset=linear_offset)
        self.m = m
        self.granule = platform.granule
        self.mm_ops = ReplayMmOps(m, fresh, cmo=profile.cmo_via_mm_ops)
        self.pgt: KvmPgtable | None = None
        self.arch: KvmArch | None = None
        self.unknown = Regions() if known else Regions([(0, 1 << 64)])
        #: geometry decided from the pgd's size only (an operation's probe may correct it).
        self.provisional = False
        self.walked = False
        #: model addresses of leaf entries whose AF the hardware may have set.
        self.af_unknown: set[int] = set()
        self.destroyed = False
        #: the pgd's address in the model (kernel virtual address - linear offset).
        self.pgd_pa: int | None = None
        #: the root was first seen after its init (its earlier state is unknown).
        self.adopted_root = False
        #: events were lost while it was live.
        self.lost = False

    # --- lifecycle --------------------------------------------------------------------

    def init(self, flags: int, pgd: int | None, size: int | None, ia_bits: int | None,
             start_level: int | None, allocs: list[int | None],
             force_pte_cb: int = 0) -> int:
        """``__kvm_pgtable_stage2_init()`` with the pgd the kernel allocated.

        :param flags: ``enum kvm_pgtable_stage2_flags`` as the caller passed them. With
            ``KVM_PGTABLE_S2_IDMAP`` the table is pKVM's host stage-2, whose mm_ops have
            no cache-maintenance callbacks (6.1: arch/arm64/kvm/hyp/nvhe/mem_protect.c,
            ``host_kvm.mm_ops`` at line 93, initialised with ``KVM_HOST_S2_FLAGS``, line
            22 and 134); every other caller passes ``kvm_s2_mm_ops``, which has them.
        :param size: the pgd's size from ``zalloc_pages_exact``, when observed.
        :param ia_bits: / ``start_level``: the table's geometry when known.
        :param force_pte_cb: the callback's address (0: none). The trace cannot show what
            the callback decides; a non-zero one is taken to force page mappings always
            (the oracle harness's ``force_pte``, which ``ptreplay gen`` follows).
        """
        if flags & KVM_PGTABLE_S2_IDMAP:
            self.mm_ops.dcache_clean_inval_poc = None
            self.mm_ops.icache_inval_pou = None
        g = self.granule
        if ia_bits is None or start_level is None:
            geo = geometry_for_pgd_size(size, g) if size else None
            ia_bits, start_level = geo if geo else (40, 1)
            self.provisional = True
        self.arch = KvmArch(_vtcr(ia_bits, start_level, g))
        pgt = KvmPgtable(self.m)
        self.arch.mmu.pgt = pgt
        self.mm_ops.begin(allocs)
        if self.m.profile.has_force_pte_cb:
            cb = _always if force_pte_cb else None
            ret = getattr(stage2, "__kvm_pgtable_stage2_init")(pgt, self.arch.mmu, self.mm_ops,
                                                               flags, cb)
        else:
            ret = stage2.kvm_pgtable_stage2_init_flags(pgt, self.arch, self.mm_ops, flags)
        if ret == 0:
            self.pgt = pgt
            assert pgt.pgd is not None
            self.pgd_pa = pgt.pgd - self.m.linear_offset
        return int(ret)

    def adopt(self, pgd: int, ia_bits: int | None, start_level: int | None) -> None:
        """Start from a root whose init the trace does not hold: an empty pgd at ``pgd``
        whose contents are unknown."""
        self.adopted_root = True
        g = self.granule
        if ia_bits is None or start_level is None:
            ia_bits, start_level = 40, 1
            self.provisional = True
        self.arch = KvmArch(_vtcr(ia_bits, start_level, g))
        pgt = KvmPgtable(self.m)
        self.arch.mmu.pgt = pgt
        npages = kvm_pgd_pages(ia_bits, start_level, g)
        for i in range(npages):
            page = pgd + i * g.page_size
            self.m.add_page(page)
            self.mm_ops.refcount[page] = 1
        pgt.pgd = pgd
        self.pgd_pa = pgd - self.m.linear_offset
        pgt.ia_bits = ia_bits
        pgt.start_level = start_level
        pgt.mm_ops = self.mm_ops
        pgt.mmu = self.arch.mmu
        self.pgt = pgt

    def geometry(self, ia_bits: int, start_level: int) -> bool:
        """The probe shows the table's ``ia_bits``/``start_level``; False if the model
        already walked it with another geometry (its state is then unknown)."""
        pgt = self.pgt
        if pgt is None or (pgt.ia_bits, pgt.start_level) == (ia_bits, start_level):
            self.provisional = False
            return True
        g = self.granule
        same_pgd = kvm_pgd_pages(ia_bits, start_level, g) == kvm_pgd_pages(
            pgt.ia_bits, pgt.start_level, g)
        ok = same_pgd and (not self.walked or pgt.start_level == start_level)
        pgt.ia_bits = ia_bits
        pgt.start_level = start_level
        if self.arch is not None:
            self.arch.vtcr = _vtcr(ia_bits, start_level, g)
        self.provisional = False
        if not ok:
            self.unknown = Regions([(0, 1 << 64)])
        return ok

    # --- operations -------------------------------------------------------------------

    def run(self, kind: str, args: dict[str, Any], allocs: list[int | None]) -> Any:
        """Replay one operation; returns the model's return value (effects in
        :attr:`effects`).

        :param allocs: what the kernel's allocations returned during the call, in order
            (kernel virtual addresses; None for a failed one).
        """
        pgt = self.pgt
        assert pgt is not None
        if allocs:
            self.mm_ops.begin(allocs)
        elif self.mm_ops._allocs:
            self.mm_ops.begin(allocs)
        self.walked = True
        if kind == "destroy":
            stage2.kvm_pgtable_stage2_destroy(pgt)
            self.pgt = None
            self.destroyed = True
            return None
        return _OPS[kind](pgt, args)

    def take_effects(self) -> list[Any]:
        """The effects of the last operation (the list is handed over)."""
        effects = self.effects
        self.effects = []
        self.m.emit = self.effects.append
        return effects

    # --- unknown state ----------------------------------------------------------------

    def touches_unknown(self, lo: int, hi: int) -> bool:
        """Whether ``[lo, hi)`` meets IPA space whose state is unknown."""
        return bool(self.unknown) and self.unknown.overlaps(lo, hi)

    def learn_unmapped(self, lo: int, hi: int) -> None:
        """An unmap of ``[lo, hi)`` completed: whole pgd entries inside it are now known."""
        pgt = self.pgt
        if pgt is None or not self.unknown:
            return
        span = 1 << self.granule.granule_shifts[pgt.start_level + 1]
        a = (lo + span - 1) & ~(span - 1)
        b = hi & ~(span - 1)
        if a < b:
            self.unknown.remove(a, b)

    def forget(self) -> None:
        """Events were lost: anything may have happened to this root."""
        self.unknown = Regions([(0, 1 << 64)])
        self.lost = True

    # --- hardware access flag ---------------------------------------------------------

    def lookup(self, addr: int) -> tuple[int, int, int] | None:
        """``(entry address, level, value)`` of the entry that maps ``addr``, if any."""
        pgt = self.pgt
        if pgt is None or pgt.pgd is None or addr >> pgt.ia_bits:
            return None
        g = self.granule
        shifts = g.granule_shifts
        pages = self.m.pages
        mask = g.ptrs_per_pte - 1
        level = pgt.start_level
        table = pgt.pgd + ((addr & ((1 << pgt.ia_bits) - 1)) >> shifts[level]) * g.page_size
        while True:
            ptep = table + ((addr >> shifts[level + 1]) & mask) * 8
            entries = pages.get(table)
            if entries is None:
                return None
            pte = entries[(ptep - table) >> 3]
            if level < 3 and pte & 3 == 3:
                table = self.mm_ops.phys_to_virt(pte & g.pte_addr_mask)
                level += 1
                continue
            return ptep, level, pte

    def note_stores(self, kind: str, effects: list[Any]) -> None:
        """After an operation: which leaves' AF the hardware may set from now on."""
        unknown = self.af_unknown
        for e in effects:
            if type(e) is Pte:
                if kind == "mkold" and e.new & 1 and not e.new & AF and e.old & AF:
                    unknown.add(e.ptep)
                elif unknown:
                    unknown.discard(e.ptep)

    def adopt_af(self, kind: str, addr: int, ret: Any, index: int) -> Pte | None:
        """Before replaying ``kind`` at ``addr``: adopt the AF the hardware set, if the
        observed return value ``ret`` shows it. Returns the adopted store."""
        found = self.lookup(addr)
        if found is None:
            return None
        ptep, _level, pte = found
        pa = ptep - self.m.linear_offset
        if pa not in self.af_unknown or not pte & 1 or pte & AF:
            return None
        if kind in ("mkold", "mkyoung"):
            if ret is None or (ret & _U64) != pte | AF:
                return None
        elif kind == "is_young":
            if ret != 1:
                return None
        elif kind == "map":
            if ret != -EAGAIN:
                return None
        else:
            return None
        page = ptep & ~(self.granule.page_size - 1)
        self.m.pages[page][(ptep - page) >> 3] = pte | AF
        self.af_unknown.discard(pa)
        return Pte(pa, pte, pte | AF, "hw")
