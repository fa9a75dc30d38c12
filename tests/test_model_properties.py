"""Properties of random operation sequences: the kernel's invariants hold throughout.

* every table page's refcount is 1 + its counted entries, every reachable page
  is live and reached once, nothing allocated is unreachable (the oracle
  harness's checks);
* no valid entry is replaced by a different valid one except by a
  permission/access-flag update of a leaf, and an entry made invalid is not
  made valid again before a TLB invalidation covering it (break-before-make);
* every ``pte`` effect's ``old`` is what the previous store left there;
* destroy returns every page that was allocated;
* the effects are a function of the operations only: a second run, with the
  table pages at other virtual addresses (another linear-map offset), emits
  the same records.

The linux-6.12 profiles (4 KiB and 16 KiB granules) are run the same way,
with their own operations (walk flags on map, split, test_clear_young) and
the oracle's 6.12 checks after each operation's RCU grace period: no entry
left ``KVM_INVALID_PTE_LOCKED``, no RCU read section open, no callback
pending, the leak check after the callbacks; a table handed to
``free_unlinked_table`` is freed only by its RCU callback.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptreplay.effects import Alloc, Free, Pte, Rcu, Tlbi
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
from ptreplay.model.geometry import GRANULE_16K, Granule
from ptreplay.model.pte import (
    KVM_PGTABLE_PROT_DEVICE,
    KVM_PGTABLE_PROT_R,
    KVM_PGTABLE_PROT_W,
    KVM_PGTABLE_PROT_X,
    KVM_PTE_LEAF_ATTR_HI_S2_XN,
    KVM_PTE_LEAF_ATTR_LO_S2_AF,
    KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R,
    KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W,
)
from ptreplay.model.state import check_invariants, check_shared_walk_state, iter_tables
from ptreplay.model.structs import KvmMmuMemoryCache
from ptreplay.model.walker612 import (
    KVM_PGTABLE_WALK_HANDLE_FAULT,
    KVM_PGTABLE_WALK_SHARED,
    KVM_PGTABLE_WALK_SKIP_CMO,
)

PAGE, BLOCK_2M, BLOCK_1G = 1 << 12, 1 << 21, 1 << 30
_ATTR_ONLY = (KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R | KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W
              | KVM_PTE_LEAF_ATTR_HI_S2_XN | KVM_PTE_LEAF_ATTR_LO_S2_AF)

addresses = st.builds(lambda unit, i, off: unit * i + off * PAGE,
                      st.sampled_from([PAGE, BLOCK_2M, BLOCK_2M, BLOCK_1G]), st.integers(0, 1),
                      st.sampled_from([0, 0, 1]))
sizes = st.sampled_from([PAGE, 2 * PAGE, BLOCK_2M, BLOCK_2M, BLOCK_2M + PAGE, 2 * BLOCK_2M,
                         BLOCK_1G, 0])
prots = st.sampled_from([KVM_PGTABLE_PROT_R, KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_W,
                         KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_X,
                         KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_W | KVM_PGTABLE_PROT_DEVICE])
memcaches = st.sampled_from([None, 0, 1, 2, -1])  # -1: unlimited

def _bounded(op: tuple, block: int, big: int) -> bool:
    """Whether ``op`` writes a bounded number of entries: a map or set_owner of a whole
    level-1 range with an unlimited memory cache that cannot use blocks (misaligned)
    would write every page entry of it (262,144 with 4K pages: seconds and hundreds of
    MB per operation), and so would splitting such a range down to pages."""
    kind, addr, size, *rest = op
    if kind == "map":
        skew, mc = rest[0], rest[2]
        return not (mc == -1 and size >= big and (addr % block or skew))
    if kind == "set_owner":
        return not (rest[1] == -1 and size >= big and addr % block)
    if kind == "split":
        return not (rest[0] >= 1 << 20 and size >= big)
    return True


operations = st.one_of(
    st.tuples(st.just("map"), addresses, sizes, st.sampled_from([0, 0, 1]), prots, memcaches
              ).filter(lambda op: _bounded(op, BLOCK_2M, BLOCK_1G)),
    st.tuples(st.just("set_owner"), addresses, sizes, st.integers(0, 2), memcaches
              ).filter(lambda op: _bounded(op, BLOCK_2M, BLOCK_1G)),
    st.tuples(st.just("unmap"), addresses, sizes),
    st.tuples(st.just("wrprotect"), addresses, sizes),
    st.tuples(st.just("relax_perms"), addresses, prots),
    st.tuples(st.just("mkyoung"), addresses),
    st.tuples(st.just("mkold"), addresses),
    st.tuples(st.just("is_young"), addresses),
    st.tuples(st.just("flush"), addresses, sizes),
)


def _mc(n: int | None) -> Memcache | None:
    return None if n is None else Memcache(None if n < 0 else n)


def _apply(pgt: Any, op: tuple) -> Any:
    kind, *args = op
    if kind == "map":
        addr, size, skew, prot, mc = args
        return s2.kvm_pgtable_stage2_map(pgt, addr, size, 0x1_0000_0000 + addr + skew * PAGE,
                                         prot, _mc(mc))
    if kind == "set_owner":
        addr, size, owner, mc = args
        return s2.kvm_pgtable_stage2_set_owner(pgt, addr, size, _mc(mc), owner)
    fn = getattr(s2, f"kvm_pgtable_stage2_{kind}")
    return fn(pgt, *args)


class BreakBeforeMake:
    """Shadow of every entry written, and entries broken but not yet invalidated."""

    def __init__(self) -> None:
        self.value: dict[int, int] = {}
        self.pending: dict[int, tuple[int, int]] = {}  # ptep PA -> (ipa, size)

    def run(self, pgt: Any, effects: list) -> list[str]:
        g = pgt.m.granule
        where = {t.pa: (t.level, t.ipa) for t in iter_tables(pgt)}
        problems = []
        for e in effects:
            if type(e) is Tlbi:
                if e.kind == "vmid":
                    self.pending.clear()
                elif e.kind == "vmid_range":
                    end = e.ipa + (e.pages << g.page_shift)
                    self.pending = {p: r for p, r in self.pending.items()
                                    if r[0] + r[1] <= e.ipa or end <= r[0]}
                else:
                    self.pending = {p: r for p, r in self.pending.items()
                                    if not r[0] <= e.ipa < r[0] + r[1]}
            elif type(e) is Pte:
                old, new, ptep = e.old, e.new, e.ptep
                if old != self.value.get(ptep, 0):
                    problems.append(f"{ptep:#x}: old {old:#x} is not what was stored")
                if old & 1 and new & 1 and old != new and (old ^ new) & ~_ATTR_ONLY:
                    problems.append(f"{ptep:#x}: valid {old:#x} -> valid {new:#x} without break")
                if new & 1 and ptep in self.pending:
                    problems.append(f"{ptep:#x}: made valid ({new:#x}) before a TLBI")
                if old & 1 and not new & 1:
                    level, ipa = where.get(ptep & ~g.page_mask, (None, None))
                    if level is not None:
                        shift = g.kvm_granule_shift(level)
                        idx = (ptep & g.page_mask) >> 3
                        self.pending[ptep] = (ipa + (idx << shift), 1 << shift)
                self.value[ptep] = new
        return problems


def _destroy_freed_everything(mm_ops: Any, log: list, page: int) -> list[str]:
    """After destroy: no page is live, and every page allocated was freed."""
    problems = []
    if mm_ops.live_pages():
        problems.append(f"pages still live after destroy: {sorted(mm_ops.live_pages())}")
    allocated, freed = set(), set()
    for e in log:
        if type(e) is Alloc:
            allocated.update(range(e.pa, e.pa + (e.size or page), page))
        elif type(e) is Free:
            freed.update(range(e.pa, e.pa + (e.size or page), page))
    if allocated != freed:
        problems.append(f"allocated but never freed: {sorted(allocated - freed)}")
    return problems


def _run(profile: str, fwb: bool, ops: list, linear_offset: int = 0) -> tuple[list, list[str]]:
    effects: list = []
    m = Machine(get_profile(profile), Platform(fwb=fwb), effects.append,
                linear_offset=linear_offset)
    mm_ops = OracleMmOps(m)
    ret, pgt = new_stage2(m, mm_ops, stage2_vtcr(36))
    assert ret == 0
    bbm = BreakBeforeMake()
    problems = bbm.run(pgt, effects)
    log = list(effects)
    for op in ops:
        effects.clear()
        _apply(pgt, op)
        problems += [f"{op}: {p}" for p in bbm.run(pgt, effects)]
        problems += [f"{op}: {p}" for p in check_invariants(pgt)]
        log += effects
    effects.clear()
    s2.kvm_pgtable_stage2_destroy(pgt)
    log += effects
    return log, problems + _destroy_freed_everything(mm_ops, log, PAGE)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profile=st.sampled_from(["linux-5.13", "linux-6.1"]), fwb=st.booleans(),
       ops=st.lists(operations, max_size=30))
def test_random_sequences_keep_the_kernel_invariants(profile, fwb, ops):
    log, problems = _run(profile, fwb, ops)
    assert problems == []
    again, _ = _run(profile, fwb, ops, linear_offset=0xFFFF_0000_0000_0000 - 0x4000_0000)
    assert again == log


def test_the_checks_can_fail():
    """The invariant checks see a refcount that is off, and an unfreed page."""
    effects: list = []
    m = Machine(get_profile("linux-6.1"), Platform(), effects.append)
    mm_ops = OracleMmOps(m)
    _, pgt = new_stage2(m, mm_ops, stage2_vtcr(36))
    s2.kvm_pgtable_stage2_map(pgt, 0x1000, 0x1000, 0x1_0000_1000, KVM_PGTABLE_PROT_R, Memcache())
    assert check_invariants(pgt) == []
    mm_ops.get_page(pgt.pgd)
    assert any("refcount 3 != 1 + 1" in p for p in check_invariants(pgt))
    mm_ops.put_page(pgt.pgd)
    stray = mm_ops.zalloc_page(None)
    assert any("leak" in p and f"{stray:#x}" in p for p in check_invariants(pgt))
    bbm = BreakBeforeMake()
    leaf = next(t for t in iter_tables(pgt) if t.level == 3)
    ptep = leaf.pa + 8
    bbm.value[ptep] = 0x400001000017FF
    assert bbm.run(pgt, [Pte(ptep, 0x400001000017FF, 0x400001000027FF)])


# -- linux-6.12 and linux-6.12-16k ----------------------------------------------

_MAP_FLAGS_612 = [0, 0, KVM_PGTABLE_WALK_SHARED | KVM_PGTABLE_WALK_HANDLE_FAULT,
                  KVM_PGTABLE_WALK_SHARED, KVM_PGTABLE_WALK_SKIP_CMO]
#: IPA size of the random 6.12 tables: start level 1, one pgd page, for either granule.
_IA_BITS_612 = {GRANULE_4K: 36, GRANULE_16K: 41}


def _ops_612(g: Granule) -> st.SearchStrategy:
    page = g.page_size
    block = g.kvm_granule_size(2)
    big = g.kvm_granule_size(1)
    addrs = st.builds(lambda unit, i, off: unit * i + off * page,
                      st.sampled_from([page, block, block, big]), st.integers(0, 1),
                      st.sampled_from([0, 0, 1]))
    sizes_612 = st.sampled_from([page, 2 * page, block, block, block + page, 2 * block, big, 0])
    prots_612 = st.sampled_from([KVM_PGTABLE_PROT_R, KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_W,
                                 KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_X,
                                 KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_W
                                 | KVM_PGTABLE_PROT_DEVICE])
    return st.one_of(
        st.tuples(st.just("map"), addrs, sizes_612, st.sampled_from([0, 0, 1]), prots_612,
                  memcaches, st.sampled_from(_MAP_FLAGS_612)
                  ).filter(lambda op: _bounded(op, block, big)),
        st.tuples(st.just("set_owner"), addrs, sizes_612, st.integers(0, 2), memcaches
                  ).filter(lambda op: _bounded(op, block, big)),
        st.tuples(st.just("unmap"), addrs, sizes_612),
        st.tuples(st.just("wrprotect"), addrs, sizes_612),
        st.tuples(st.just("relax_perms"), addrs, prots_612),
        st.tuples(st.just("mkyoung"), addrs),
        st.tuples(st.just("test_clear_young"), addrs, sizes_612, st.booleans()),
        st.tuples(st.just("flush"), addrs, sizes_612),
        st.tuples(st.just("split"), addrs, sizes_612, st.sampled_from([0, 1, 2, 3, 1 << 20])
                  ).filter(lambda op: _bounded(op, block, big)),
    )


def _apply_612(pgt: Any, op: tuple) -> Any:
    kind, *args = op
    page = pgt.m.granule.page_size
    if kind == "map":
        addr, size, skew, prot, mc, flags = args
        return s612.kvm_pgtable_stage2_map(pgt, addr, size, 0x1_0000_0000 + addr + skew * page,
                                           prot, _mc(mc), flags)
    if kind == "set_owner":
        addr, size, owner, mc = args
        return s612.kvm_pgtable_stage2_set_owner(pgt, addr, size, _mc(mc), owner)
    if kind == "split":
        addr, size, nobjs = args
        mc: KvmMmuMemoryCache = pgt.mmu.split_page_cache
        mc.nobjs = nobjs
        ret = s612.kvm_pgtable_stage2_split(pgt, addr, size, mc)
        mc.nobjs = 0
        return ret
    fn = getattr(s612, f"kvm_pgtable_stage2_{kind}")
    return fn(pgt, *args)


def _deferred_frees_wait_for_their_callback(effects: list) -> list[str]:
    """A table given to ``free_unlinked_table`` is freed after its RCU callback ran."""
    problems = []
    waiting: set[int] = set()
    for e in effects:
        if type(e) is Rcu and e.kind == "call_rcu":
            waiting.add(e.pa)
        elif type(e) is Rcu and e.kind == "callback":
            waiting.discard(e.pa)
        elif type(e) is Free and e.pa in waiting:
            problems.append(f"table {e.pa:#x} freed before its RCU callback")
    if waiting:
        problems.append(f"RCU callbacks never ran for {sorted(waiting)}")
    return problems


def _run_612(profile: str, fwb: bool, tlb_range: bool, ops: list,
             linear_offset: int = 0) -> tuple[list, list[str]]:
    effects: list = []
    prof = get_profile(profile)
    g = prof.granule
    m = Machine(prof, Platform(granule=g, fwb=fwb, tlb_range=tlb_range), effects.append,
                linear_offset=linear_offset)
    mm_ops = OracleMmOps(m)
    ret, pgt = new_stage2(m, mm_ops, stage2_vtcr(_IA_BITS_612[g], granule=g))
    assert ret == 0 and stage2_code(prof) is s612
    bbm = BreakBeforeMake()
    problems = bbm.run(pgt, effects)
    log = list(effects)
    for op in ops:
        effects.clear()
        _apply_612(pgt, op)
        m.rcu_barrier()  # the oracle's grace period at the end of each operation
        problems += [f"{op}: {p}" for p in bbm.run(pgt, effects)]
        problems += [f"{op}: {p}" for p in check_invariants(pgt)]
        problems += [f"{op}: {p}" for p in check_shared_walk_state(pgt)]
        problems += [f"{op}: {p}" for p in _deferred_frees_wait_for_their_callback(effects)]
        log += effects
    effects.clear()
    s612.kvm_pgtable_stage2_destroy(pgt)
    m.rcu_barrier()
    log += effects
    problems += check_shared_walk_state(pgt)
    return log, problems + _destroy_freed_everything(mm_ops, log, g.page_size)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), profile=st.sampled_from(["linux-6.12", "linux-6.12-16k"]),
       fwb=st.booleans(), tlb_range=st.booleans())
def test_random_612_sequences_keep_the_kernel_invariants(data, profile, fwb, tlb_range):
    ops = data.draw(st.lists(_ops_612(get_profile(profile).granule), max_size=25), label="ops")
    log, problems = _run_612(profile, fwb, tlb_range, ops)
    assert problems == []
    again, _ = _run_612(profile, fwb, tlb_range, ops,
                        linear_offset=0xFFFF_0000_0000_0000 - 0x4000_0000)
    assert again == log


def test_the_612_checks_can_fail():
    """A locked entry, an open RCU section, a pending callback and an early free are seen."""
    effects: list = []
    m = Machine(get_profile("linux-6.12"), Platform(), effects.append)
    mm_ops = OracleMmOps(m)
    _, pgt = new_stage2(m, mm_ops, stage2_vtcr(36))
    assert s612.kvm_pgtable_stage2_map(pgt, 0x200000, 0x200000, 0x1_0020_0000,
                                       KVM_PGTABLE_PROT_R, Memcache()) == 0
    assert check_shared_walk_state(pgt) == []
    m.WRITE_ONCE(pgt.pgd + 8, 0x400)  # KVM_INVALID_PTE_LOCKED left behind
    m.rcu_read_lock()
    m.call_rcu(lambda: None)
    found = check_shared_walk_state(pgt)
    assert any("still locked" in p for p in found)
    assert any("RCU read-side section still open" in p for p in found)
    assert any("RCU callbacks still queued" in p for p in found)
    assert _deferred_frees_wait_for_their_callback(
        [Rcu("call_rcu", "free_unlinked_table", 0x4000_2000, 2), Free(0x4000_2000)])
