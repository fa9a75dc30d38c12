"""Several stage-2 roots at once, and an mm_ops whose addresses come from elsewhere."""

from __future__ import annotations

from ptreplay.effects import Alloc
from ptreplay.model import (
    Machine,
    Memcache,
    OracleMmOps,
    Platform,
    get_profile,
    new_stage2,
    stage2_vtcr,
)
from ptreplay.model import stage2 as s2
from ptreplay.model.pte import KVM_PGTABLE_PROT_R, KVM_PGTABLE_PROT_W
from ptreplay.model.state import check_invariants, iter_leaves

RW = KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_W
OPS = [
    ("map", 0x1000, 0x1000), ("map", 0x200000, 0x200000), ("set_owner", 0x5000, 0x1000),
    ("map", 0x40000000, 0x3000), ("unmap", 0x1000, 0x1000), ("wrprotect", 0x0, 0x400000),
    ("map", 0x201000, 0x1000), ("unmap", 0x0, 0x80000000),
]


def _step(pgt, op):
    kind, addr, size = op
    if kind == "map":
        return s2.kvm_pgtable_stage2_map(pgt, addr, size, 0x1_0000_0000 + addr, RW, Memcache())
    if kind == "set_owner":
        return s2.kvm_pgtable_stage2_set_owner(pgt, addr, size, Memcache(), 1)
    return getattr(s2, f"kvm_pgtable_stage2_{kind}")(pgt, addr, size)


def test_interleaved_roots_behave_as_if_alone():
    alone = []
    for base in (0x4000_0000, 0x5000_0000):
        effects: list = []
        m = Machine(get_profile("linux-6.1"), Platform(), effects.append)
        _, pgt = new_stage2(m, OracleMmOps(m, arena_base=base), stage2_vtcr(40))
        per_op = []
        for op in OPS:
            effects.clear()
            _step(pgt, op)
            per_op.append(list(effects))
        alone.append(per_op)

    effects = []
    m = Machine(get_profile("linux-6.1"), Platform(), effects.append)  # one machine, two roots
    roots = [new_stage2(m, OracleMmOps(m, arena_base=base), stage2_vtcr(40))[1]
             for base in (0x4000_0000, 0x5000_0000)]
    for i, op in enumerate(OPS):
        for r, pgt in enumerate(roots):
            effects.clear()
            _step(pgt, op)
            assert effects == alone[r][i]
            assert check_invariants(pgt) == []
    assert m.pages  # both roots' tables live in one memory


class FromTraceMmOps(OracleMmOps):
    """An allocator handing out addresses decided elsewhere (as a replay layer would)."""

    def __init__(self, m, addresses):
        super().__init__(m)
        self.addresses = list(addresses)

    def next_pages(self, npages):
        return self.addresses.pop(0) if self.addresses else None


def test_mm_ops_subclass_chooses_the_table_addresses():
    offset = 0xFFFF_0000_0000_0000  # kernel-VA-like linear map
    effects: list = []
    m = Machine(get_profile("linux-6.1"), Platform(), effects.append, linear_offset=offset)
    pas = [0x8_1234_0000, 0x8_0000_7000, 0x8_0000_3000]
    mm_ops = FromTraceMmOps(m, [offset + pa for pa in pas])
    ret, pgt = new_stage2(m, mm_ops, stage2_vtcr(36))
    assert ret == 0
    assert s2.kvm_pgtable_stage2_map(pgt, 0x1000, 0x1000, 0x1_0000_1000, RW, Memcache()) == 0
    assert [e.pa for e in effects if type(e) is Alloc] == pas
    (leaf,) = iter_leaves(pgt)
    assert leaf.ipa == 0x1000 and leaf.ptep_pa == 0x8_0000_3000 + 8
    assert check_invariants(pgt) == []
    # no address left: zalloc_page returns NULL and the map fails with -ENOMEM
    assert s2.kvm_pgtable_stage2_map(pgt, 0x4000_0000, 0x1000, 0, RW, Memcache()) == -12
