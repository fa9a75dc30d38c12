"""linux-6.12 paths the single-threaded oracle cannot reach: lost races and locked entries.

The oracle has no concurrent writer, so its ``cmpxchg`` never fails and no
walker meets another CPU's ``KVM_INVALID_PTE_LOCKED``. Here a second "CPU"
changes an entry between the walker's read and its store (from inside an
mm_ops callback the walk makes in between), and the expected outcome is read
off 6.12's pgtable.c: ``stage2_try_break_pte`` fails, the fresh table page is
put back, the visitor returns ``-EAGAIN``, which ends a ``HANDLE_FAULT`` walk
and is ignored by any other.
"""

from __future__ import annotations

import pytest

from ptreplay.effects import Alloc, Dsb, Free, Pte, Put, Rcu, Tlbi, Warn
from ptreplay.model import (
    GRANULE_4K,
    Machine,
    Memcache,
    OracleMmOps,
    Platform,
    get_profile,
    new_stage2,
    stage2_code,
    stage2_vtcr,
)
from ptreplay.model import stage2 as s2
from ptreplay.model import stage2_612 as s612
from ptreplay.model.geometry import GRANULE_16K
from ptreplay.model.pte import (
    KVM_INVALID_PTE_LOCKED,
    KVM_PGTABLE_PROT_R,
    KVM_PGTABLE_PROT_W,
    KVM_PGTABLE_PROT_X,
    KVM_PTE_LEAF_ATTR_HI_S2_XN,
    TLBI_TTL_UNKNOWN,
)
from ptreplay.model.state import check_invariants, check_shared_walk_state, iter_leaves
from ptreplay.model.walker612 import KVM_PGTABLE_WALK_HANDLE_FAULT, KVM_PGTABLE_WALK_SHARED

RW = KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_W
FAULT = KVM_PGTABLE_WALK_SHARED | KVM_PGTABLE_WALK_HANDLE_FAULT


class RacingMmOps(OracleMmOps):
    """An mm_ops whose next ``zalloc_page`` lets "another CPU" store into one entry."""

    def __init__(self, m: Machine) -> None:
        super().__init__(m)
        self.race: tuple[int, int] | None = None  # (ptep, value) to store

    def zalloc_page(self, arg):  # type: ignore[no-untyped-def]
        page = super().zalloc_page(arg)
        if self.race is not None:
            ptep, value = self.race
            self.race = None
            entries = self.m.pages[ptep & ~self.m.page_mask]
            entries[(ptep & self.m.page_mask) >> 3] = value  # the other CPU's store
        return page


def _table(profile: str = "linux-6.12"):  # type: ignore[no-untyped-def]
    effects: list = []
    m = Machine(get_profile(profile), Platform(), effects.append)
    mm_ops = RacingMmOps(m)
    ret, pgt = new_stage2(m, mm_ops, stage2_vtcr(36))  # start level 1, one pgd page
    assert ret == 0
    effects.clear()
    return effects, m, mm_ops, pgt


@pytest.mark.parametrize(("flags", "ret"), [(FAULT, -11), (KVM_PGTABLE_WALK_SHARED, 0)])
def test_a_lost_cmpxchg_puts_the_new_table_back(flags, ret):
    effects, m, mm_ops, pgt = _table()
    pgd_entry = pgt.pgd  # the level-1 entry covering IPA 0
    other = 0x1_0000_0000 | 0x7FD  # another CPU mapped a 1 GiB block there meanwhile
    mm_ops.race = (pgd_entry, other)

    assert s612.kvm_pgtable_stage2_map(pgt, 0x1000, 0x1000, 0x1_0000_1000, RW, Memcache(),
                                       flags) == ret
    m.rcu_barrier()

    table = effects[1].pa
    assert effects[:5] == [
        Rcu("read_lock"),
        Alloc(table),
        Pte(pgd_entry, other, KVM_INVALID_PTE_LOCKED, "cmpxchg", 0, False),  # compare fails
        Put(table, 0), Free(table),  # mm_ops->put_page(childp)
    ]
    # HANDLE_FAULT: -EAGAIN ends the walk (the vCPU retries). Otherwise it is
    # ignored, the entry re-read (now the other CPU's block) and passed.
    assert effects[5:] == [Rcu("read_unlock"), Dsb("ishst")]
    assert m.load(pgd_entry) == other
    assert check_shared_walk_state(pgt) == []


def test_a_locked_entry_makes_a_shared_walk_back_off():
    effects, m, mm_ops, pgt = _table()
    m.pages[pgt.pgd][0] = KVM_INVALID_PTE_LOCKED  # another CPU is in break-before-make
    assert s612.kvm_pgtable_stage2_map(pgt, 0x1000, 0x1000, 0x1_0000_1000, RW, Memcache(),
                                       FAULT) == -11
    assert not any(type(e) in (Pte, Warn) for e in effects)
    assert s612.kvm_pgtable_stage2_relax_perms(pgt, 0x1000, KVM_PGTABLE_PROT_R) == -11


def test_a_locked_entry_in_an_exclusive_walk_warns():
    effects, m, mm_ops, pgt = _table()
    m.pages[pgt.pgd][0] = KVM_INVALID_PTE_LOCKED
    # -EAGAIN from the visitor is ignored outside a fault handler.
    assert s612.kvm_pgtable_stage2_map(pgt, 0x1000, 0x1000, 0x1_0000_1000, RW, Memcache()) == 0
    assert Warn("!kvm_pgtable_walk_shared(ctx)") in effects
    assert any("still locked" in p for p in check_shared_walk_state(pgt))


def test_a_lost_attribute_cmpxchg_is_eagain():
    effects, m, mm_ops, pgt = _table()
    assert s612.kvm_pgtable_stage2_map(pgt, 0x1000, 0x1000, 0x1_0000_1000, KVM_PGTABLE_PROT_R,
                                       Memcache()) == 0
    leaf_ptep = next(e.ptep for e in reversed(effects) if type(e) is Pte)
    seen = m.load(leaf_ptep)
    effects.clear()

    def icache_inval_pou(addr: int, size: int) -> None:
        # Between the walker's read and its cmpxchg: the Access flag is cleared.
        m.pages[leaf_ptep & ~m.page_mask][(leaf_ptep & m.page_mask) >> 3] = seen & ~(1 << 10)

    mm_ops.icache_inval_pou = icache_inval_pou
    # Adding X: the icache is invalidated first, then cmpxchg against the value read.
    assert s612.kvm_pgtable_stage2_relax_perms(pgt, 0x1000, KVM_PGTABLE_PROT_X) == -11
    assert effects == [
        Rcu("read_lock"),
        Pte(leaf_ptep, seen & ~(1 << 10), seen & ~KVM_PTE_LEAF_ATTR_HI_S2_XN, "cmpxchg", seen,
            False),
        Rcu("read_unlock"),
        Tlbi("vmid_ipa_nsh", 0x1000, TLBI_TTL_UNKNOWN),  # level unknown after -EAGAIN
    ]


def test_stage2_code_and_new_stage2_follow_the_profile():
    for name, module in (("linux-5.13", s2), ("linux-6.1", s2), ("linux-6.12", s612),
                         ("linux-6.12-16k", s612)):
        assert stage2_code(get_profile(name)) is module
    assert get_profile("linux-6.12").granule is GRANULE_4K
    assert get_profile("linux-6.12-16k").granule is GRANULE_16K

    effects: list = []
    m = Machine(get_profile("linux-6.12-16k"), Platform(granule=GRANULE_16K), effects.append)
    mm_ops = OracleMmOps(m)
    ret, pgt = new_stage2(m, mm_ops, stage2_vtcr(41, granule=GRANULE_16K))
    assert (ret, pgt.ia_bits, pgt.start_level) == (0, 41, 1)
    # A 32 MiB block at level 2, split into 2048 16 KiB pages.
    assert s612.kvm_pgtable_stage2_map(pgt, 1 << 25, 1 << 25, 0x1_0200_0000, RW, Memcache()) == 0
    mc = pgt.mmu.split_page_cache
    mc.nobjs = 1
    assert s612.kvm_pgtable_stage2_split(pgt, 1 << 25, 1 << 25, mc) == 0
    assert mc.nobjs == 0
    assert check_invariants(pgt) == []
    leaves = list(iter_leaves(pgt))
    assert len(leaves) == 2048 and {(lf.level, lf.size) for lf in leaves} == {(3, 1 << 14)}
    assert [lf.pte & ~0xFFF0_0000_0000_3FFF for lf in leaves[:2]] == [0x1_0200_0000, 0x1_0200_4000]
    s612.kvm_pgtable_stage2_destroy(pgt)
    m.rcu_barrier()
    assert mm_ops.live_pages() == {}


def test_kvm_tlb_flush_vmid_range_chunks():
    effects: list = []
    m = Machine(get_profile("linux-6.12"), Platform(tlb_range=True), effects.append)
    _, pgt = new_stage2(m, OracleMmOps(m), stage2_vtcr(48))
    effects.clear()
    s612.kvm_tlb_flush_vmid_range(pgt.mmu, 0x1000, (2 * s612.MAX_TLBI_RANGE_PAGES + 3) << 12)
    assert [(e.ipa, e.pages) for e in effects] == [
        (0x1000, 0x200000), (0x1000 + (0x200000 << 12), 0x200000),
        (0x1000 + (0x400000 << 12), 3)]
    effects.clear()
    s612.kvm_tlb_flush_vmid_range(pgt.mmu, 0x1000, 0x800)  # under a page: nothing
    assert effects == []
