"""Events -> stage-2 operations, on event sequences built by hand.

Each sequence follows what the kernel code does (the order of probes inside
pgtable.c / mmu.c), with the corner cases a real trace has: traces starting
mid-call, lost returns, lost events, parallel faults on one root, RCU
callbacks running in softirq on top of another task, idle-task events.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ptreplay.effects import Alloc, AllocFail, Cmo, Free, Get, Put, Rcu, Tlbi
from ptreplay.stage2.operations import (
    CONCURRENT,
    COUNT_NOT_OBSERVED,
    LOST,
    LOST_EVENTS,
    MIGRATED,
    NO_ENTRY,
    NO_RETURN,
    ROOT_FIRST_SEEN,
    CreateUnlinked,
    Gap,
    Operation,
    OperationBuilder,
    PageCount,
    TlbFlushRange,
    TraceEvent,
    operations,
)

PGT = 0xFFFF000003756280
PGD = 0xFFFF000002D5A000
KVM = 0xFFFF800008045000
MMU = KVM + 0x9C8
MC = 0xFFFF00000FF76D20


class Trace:
    """Builds an event list: ``t.ev(name, cpu=, pid=, **fields)``."""

    def __init__(self) -> None:
        self.events: list[TraceEvent] = []

    def ev(self, name: str, cpu: int = 0, pid: int = 280, **fields: Any) -> TraceEvent:
        e = TraceEvent(len(self.events), cpu, 1000 * (len(self.events) + 1), pid, name, fields)
        self.events.append(e)
        return e

    def map_call(self, addr: int, cpu: int = 0, pid: int = 280, pgt: int = PGT, pgd: int = PGD,
                 ret: int = 0, effects: tuple[tuple[str, dict[str, Any]], ...] = ()) -> None:
        self.ev("kvm_pgtable_stage2_map", cpu, pid, __probe_ip=1, pgt=pgt, addr=addr,
                size=0x1000, phys=0x5BC00000, prot=6, mc=MC, ia_bits=40, start_level=1, pgd=pgd)
        for name, fields in effects:
            self.ev(name, cpu, pid, **fields)
        self.ev("kvm_pgtable_stage2_map__return", cpu, pid, __probe_func=1, __probe_ret_ip=2,
                ret=ret)

    def run(self, page_size: int = 4096) -> list[Operation | Gap]:
        return list(operations(self.events, page_size))


def _ops(out: list[Operation | Gap]) -> list[Operation]:
    return [o for o in out if isinstance(o, Operation)]


def test_a_map_with_its_effects() -> None:
    t = Trace()
    t.ev("kvm_guest_fault", vcpu_pc=1, hsr=0x92000006, hxfar=0x41A1C140, ipa=0x41A1C000)
    t.ev("kvm_pgtable_stage2_map", __probe_ip=1, pgt=PGT, addr=0x41A00000, size=0x200000,
         phys=0x5BC00000, prot=6, mc=MC, ia_bits=40, start_level=1, pgd=PGD)
    t.ev("stage2_memcache_zalloc_page", mc=MC)
    t.ev("stage2_memcache_zalloc_page__return", __probe_func=1, __probe_ret_ip=2,
         virt=0xFFFF00000DDDC000)
    t.ev("kvm_host_get_page", __probe_ip=1, addr=PGD + 8)
    t.ev("clean_dcache_guest_page", __probe_ip=1, va=0xFFFF00001C600000, size=0x200000)
    t.ev("kvm_host_get_page", __probe_ip=1, addr=0xFFFF00000DDDC208)
    t.ev("kvm_pgtable_stage2_map__return", __probe_func=1, __probe_ret_ip=2, ret=0)
    [op] = t.run()
    assert isinstance(op, Operation)
    assert (op.kind, op.func, op.ret, op.cpu, op.pid) == (
        "map", "kvm_pgtable_stage2_map", 0, 0, 280)
    assert (op.pgt, op.pgd, op.ia_bits, op.start_level) == (PGT, PGD, 40, 1)
    assert op.args == {"addr": 0x41A00000, "size": 0x200000, "phys": 0x5BC00000, "prot": 6,
                       "mc": MC}
    assert (op.index, op.index_return, op.ts, op.ts_return) == (1, 7, 2000, 8000)
    assert (op.context, op.context_index) == ("kvm_guest_fault", 0)
    assert [e.effect for e in op.effects] == [
        Alloc(0xFFFF00000DDDC000), Get(PGD, COUNT_NOT_OBSERVED),
        Cmo("dcache_clean_inval_poc", 0xFFFF00001C600000, 0x200000),
        Get(0xFFFF00000DDDC000, COUNT_NOT_OBSERVED)]
    assert [e.index for e in op.effects] == [3, 4, 5, 6]
    assert [e.addr for e in op.effects] == [None, PGD + 8, None, 0xFFFF00000DDDC208]
    assert op.flags == {ROOT_FIRST_SEEN} and not op.uncertain


def test_init_map_destroy_and_the_vm() -> None:
    t = Trace()
    t.ev("kvm_init_stage2_mmu", __probe_ip=1, kvm=KVM, mmu=MMU)
    t.ev("__kvm_pgtable_stage2_init", __probe_ip=1, pgt=PGT, mmu=MMU, mm_ops=5, flags=0,
         force_pte_cb=0)
    t.ev("kvm_s2_zalloc_pages_exact", __probe_ip=1, size=8192)
    t.ev("kvm_s2_zalloc_pages_exact__return", __probe_func=1, __probe_ret_ip=2, virt=PGD)
    t.ev("__kvm_pgtable_stage2_init__return", __probe_func=1, __probe_ret_ip=2, ret=0)
    t.map_call(0x1000, effects=(("kvm_host_get_page", {"addr": PGD + 16}),))
    t.ev("kvm_free_stage2_pgd", __probe_ip=1, mmu=MMU)
    t.ev("kvm_pgtable_stage2_destroy", __probe_ip=1, pgt=PGT, ia_bits=40, start_level=1, pgd=PGD)
    t.ev("kvm_s2_put_page", __probe_ip=1, addr=PGD + 16)
    t.ev("kvm_s2_free_pages_exact", __probe_ip=1, virt=PGD, size=8192)
    t.ev("kvm_pgtable_stage2_destroy__return", __probe_func=1, __probe_ret_ip=2)
    # The same pgt address reused by the next VM is a new root.
    t.ev("__kvm_pgtable_stage2_init", __probe_ip=1, pgt=PGT, mmu=MMU + 0x10000, mm_ops=5,
         flags=0, force_pte_cb=0)
    t.ev("__kvm_pgtable_stage2_init__return", __probe_func=1, __probe_ret_ip=2, ret=0)
    builder = OperationBuilder()
    for e in t.events:
        builder.feed(e)
    builder.finish()
    init, mp, destroy, init2 = _ops(builder.ready)
    assert (init.kind, init.ret, init.mmu, init.vm, init.pgd) == ("init", 0, MMU, KVM, PGD)
    assert [e.effect for e in init.effects] == [Alloc(PGD, 8192)]
    assert init.flags == set() and mp.flags == set()
    assert mp.root == init.root and mp.vm == KVM and mp.mmu == MMU
    assert (destroy.kind, destroy.ret, destroy.root, destroy.context) == (
        "destroy", None, init.root, "kvm_free_stage2_pgd")
    assert [e.effect for e in destroy.effects] == [Put(PGD, COUNT_NOT_OBSERVED), Free(PGD, 8192)]
    assert init2.root != init.root and init2.vm is None
    first, second = builder.roots[init.root], builder.roots[init2.root]
    assert first.destroy_seen and first.retired and first.init_seen
    assert (first.pgd, first.vm) == (PGD, KVM)
    assert not second.retired and second.init_seen


def test_a_failed_init_retires_its_root() -> None:
    t = Trace()
    t.ev("__kvm_pgtable_stage2_init", __probe_ip=1, pgt=PGT, mmu=MMU, mm_ops=5, flags=0,
         force_pte_cb=0)
    t.ev("kvm_s2_zalloc_pages_exact", __probe_ip=1, size=8192)
    t.ev("kvm_s2_zalloc_pages_exact__return", __probe_func=1, __probe_ret_ip=2, virt=0)
    t.ev("__kvm_pgtable_stage2_init__return", __probe_func=1, __probe_ret_ip=2, ret=-12)
    t.map_call(0x1000)
    builder = OperationBuilder()
    for e in t.events:
        builder.feed(e)
    builder.finish()
    init, mp = _ops(builder.ready)
    assert init.ret == -12 and [e.effect for e in init.effects] == [AllocFail()]
    failed = builder.roots[init.root]
    assert failed.retired and not failed.destroy_seen
    assert mp.root != init.root and ROOT_FIRST_SEEN in mp.flags


def test_both_zalloc_exact_probes_give_one_allocation() -> None:
    """kvm_s2_zalloc_pages_exact calls kvm_host_zalloc_pages_exact (6.1): one allocation."""
    t = Trace()
    t.ev("__kvm_pgtable_stage2_init", __probe_ip=1, pgt=PGT, mmu=MMU, mm_ops=5, flags=0,
         force_pte_cb=0)
    t.ev("kvm_s2_zalloc_pages_exact", __probe_ip=1, size=4096)
    t.ev("kvm_host_zalloc_pages_exact", __probe_ip=1, size=4096)
    t.ev("kvm_host_zalloc_pages_exact__return", __probe_func=1, __probe_ret_ip=2, virt=PGD)
    t.ev("kvm_s2_zalloc_pages_exact__return", __probe_func=1, __probe_ret_ip=2, virt=PGD)
    t.ev("__kvm_pgtable_stage2_init__return", __probe_func=1, __probe_ret_ip=2, ret=0)
    [init] = _ops(t.run())
    assert [e.effect for e in init.effects] == [Alloc(PGD, 4096)]


def test_a_lost_return_and_the_end_of_the_trace() -> None:
    t = Trace()
    t.ev("kvm_pgtable_stage2_unmap", __probe_ip=1, pgt=PGT, addr=0x1000, size=0x1000, pgd=PGD)
    t.ev("kvm_s2_put_page", __probe_ip=1, addr=PGD + 8)
    # No return: the task's next stage-2 call shows the first one never returned here.
    t.map_call(0x2000)
    t.ev("kvm_pgtable_stage2_wrprotect", __probe_ip=1, pgt=PGT, addr=0, size=0x1000, pgd=PGD)
    unmap, mp, wrp = _ops(t.run())
    assert unmap.flags >= {NO_RETURN} and unmap.uncertain and unmap.ret is None
    assert [e.effect for e in unmap.effects] == [Put(PGD, COUNT_NOT_OBSERVED)]
    assert not mp.uncertain and mp.root == unmap.root
    assert wrp.flags >= {NO_RETURN} and wrp.index == len(t.events) - 1


def test_a_return_without_its_call() -> None:
    """The trace began while the call ran: the return alone, flagged."""
    t = Trace()
    t.ev("kvm_host_get_page", __probe_ip=1, addr=PGD + 8)
    t.ev("kvm_pgtable_stage2_map__return", __probe_func=1, __probe_ret_ip=2, ret=-11)
    t.map_call(0x1000)
    lone, mp = _ops(t.run())
    assert (lone.kind, lone.ret, lone.flags, lone.root, lone.index) == (
        "map", -11, {NO_ENTRY}, None, None)
    assert lone.first_index == 1 and lone.effects == [] and lone.uncertain
    assert not mp.uncertain


def test_page_count_and_missing_helper_returns() -> None:
    t = Trace()
    t.ev("kvm_pgtable_stage2_unmap", __probe_ip=1, pgt=PGT, addr=0, size=0x200000, pgd=PGD)
    t.ev("kvm_host_page_count", __probe_ip=1, addr=0xFFFF00000DDDC000)
    t.ev("kvm_host_page_count__return", __probe_func=1, __probe_ret_ip=2, count=1)
    t.ev("kvm_s2_put_page", __probe_ip=1, addr=PGD + 0x20)
    t.ev("kvm_host_page_count", __probe_ip=1, addr=0xFFFF00000DDDD000)  # its return is lost
    t.ev("kvm_s2_put_page", __probe_ip=1, addr=0xFFFF00000DDDD000)
    t.ev("kvm_pgtable_stage2_unmap__return", __probe_func=1, __probe_ret_ip=2, ret=0)
    builder = OperationBuilder()
    for e in t.events:
        builder.feed(e)
    builder.finish()
    [op] = _ops(builder.ready)
    assert [e.effect for e in op.effects] == [
        PageCount(0xFFFF00000DDDC000, 1), Put(PGD, COUNT_NOT_OBSERVED),
        Put(0xFFFF00000DDDD000, COUNT_NOT_OBSERVED)]
    assert op.effects[0].index == 2 and op.effects[0].addr == 0xFFFF00000DDDC000
    assert not op.uncertain
    assert builder.stats["helper_without_return"] == 1


def test_lost_events_mark_what_ran_on_that_cpu() -> None:
    t = Trace()
    t.ev("kvm_pgtable_stage2_map", 0, 280, pgt=PGT, addr=0, size=0x1000, phys=0, prot=6, mc=MC,
         ia_bits=40, start_level=1, pgd=PGD)
    t.ev("kvm_pgtable_stage2_map", 1, 281, pgt=PGT, addr=0x1000, size=0x1000, phys=0, prot=6,
         mc=MC, ia_bits=40, start_level=1, pgd=PGD)
    t.ev(LOST_EVENTS, 0, -1, count=12)
    t.ev("kvm_pgtable_stage2_map__return", 0, 280, ret=0)
    t.ev("kvm_pgtable_stage2_map__return", 1, 281, ret=0)
    out = t.run()
    assert out[0] == Gap(2, 0, 3000, 12)
    a, b = _ops(out)
    assert a.flags >= {LOST} and a.uncertain
    assert LOST not in b.flags and not b.uncertain
    assert a.flags >= {CONCURRENT} and b.flags >= {CONCURRENT}
    builder = OperationBuilder()
    builder.lost_events(cpu=3, ts=5, index=9)
    assert builder.ready == [Gap(9, 3, 5, -1)]


def test_parallel_faults_on_one_root() -> None:
    """6.12: two vCPU threads map into one stage-2 at once; effects stay with their task."""
    t = Trace()
    t.ev("kvm_pgtable_stage2_map", 1, 750, pgt=PGT, addr=0x44E00000, size=0x200000, phys=0,
         prot=6, mc=MC, flags=0x18, ia_bits=40, start_level=1, pgd=PGD)
    t.ev("kvm_pgtable_stage2_map", 0, 751, pgt=PGT, addr=0x402EE000, size=0x1000, phys=0,
         prot=6, mc=MC, flags=0x18, ia_bits=40, start_level=1, pgd=PGD)
    t.ev("kvm_host_get_page", 0, 751, addr=0xFFF0000010A591A8)
    t.ev("clean_dcache_guest_page", 1, 750, va=0xFFF0000024200000, size=0x200000)
    t.ev("kvm_pgtable_stage2_map__return", 0, 751, ret=0)
    t.ev("kvm_host_get_page", 1, 750, addr=0xFFF0000010A591A0)
    t.ev("kvm_pgtable_stage2_map__return", 1, 750, ret=-11)
    first_done, second_done = _ops(t.run())
    assert (first_done.pid, first_done.ret, first_done.index) == (751, 0, 1)
    assert (second_done.pid, second_done.ret, second_done.index) == (750, -11, 0)
    assert [e.index for e in first_done.effects] == [2]
    assert [e.index for e in second_done.effects] == [3, 5]
    assert CONCURRENT in first_done.flags and CONCURRENT in second_done.flags
    assert first_done.root == second_done.root
    assert first_done.args["flags"] == 0x18


def test_rcu_table_free_on_top_of_another_call() -> None:
    """6.12: the RCU callback freeing an unlinked table interrupts a running map on its CPU;
    the free is its own operation, ended by page_count + put_page of the table."""
    table = 0xFFF0000010A70000
    t = Trace()
    t.ev("kvm_pgtable_stage2_map", 0, 750, pgt=PGT, addr=0x47000000, size=0x200000, phys=0,
         prot=6, mc=MC, flags=0x18, ia_bits=40, start_level=1, pgd=PGD)
    t.ev("stage2_memcache_zalloc_page", 0, 750, mc=MC)
    t.ev("stage2_memcache_zalloc_page__return", 0, 750, virt=table)
    t.ev("kvm_host_get_page", 0, 750, addr=PGD + 0x38)
    t.ev("kvm_pgtable_stage2_map__return", 0, 750, ret=0)
    # Later the table is replaced by a block: queued for RCU ...
    t.ev("kvm_pgtable_stage2_map", 0, 750, pgt=PGT, addr=0x47000000, size=0x200000, phys=0,
         prot=6, mc=MC, flags=0x18, ia_bits=40, start_level=1, pgd=PGD)
    t.ev("stage2_free_unlinked_table", 0, 750, addr=table, level=2)
    t.ev("kvm_pgtable_stage2_map__return", 0, 750, ret=0)
    # ... and freed in softirq while the task runs its next map.
    t.ev("kvm_pgtable_stage2_map", 0, 750, pgt=PGT, addr=0x48000000, size=0x1000, phys=0,
         prot=6, mc=MC, flags=0x18, ia_bits=40, start_level=1, pgd=PGD)
    t.ev("stage2_free_unlinked_table_rcu_cb", 0, 750, head=0xFFFFC1FFC0429C08)
    t.ev("kvm_pgtable_stage2_free_unlinked", 0, 750, mm_ops=5, pgtable=table, level=2)
    t.ev("kvm_s2_put_page", 0, 750, addr=table)  # entry 0 of the table
    t.ev("kvm_s2_put_page", 0, 750, addr=table + 8)
    t.ev("kvm_host_page_count", 0, 750, addr=table)
    t.ev("kvm_host_page_count__return", 0, 750, count=1)
    t.ev("kvm_s2_put_page", 0, 750, addr=table)  # the table itself: the end
    t.ev("kvm_host_get_page", 0, 750, addr=PGD + 0x40)  # the interrupted map again
    t.ev("kvm_pgtable_stage2_map__return", 0, 750, ret=0)
    # The same in an rcu kthread on the other CPU.
    t.ev("stage2_free_unlinked_table_rcu_cb", 1, 17, head=0xFFFFC1FFC0429288)
    t.ev("kvm_pgtable_stage2_free_unlinked", 1, 17, mm_ops=5, pgtable=0xFFF0000010A4A000,
         level=2)
    t.ev("kvm_s2_put_page", 1, 17, addr=0xFFF0000010A4ABE0)
    out = _ops(t.run())
    kinds = [o.kind for o in out]
    assert kinds == ["map", "map", "free_unlinked", "map", "free_unlinked"]
    block = out[1]
    assert [e.effect for e in block.effects] == [Rcu("call_rcu", "free_unlinked_table", table, 2)]
    free = out[2]
    assert free.root == block.root and free.pgt == PGT and free.args == {"pgtable": table,
                                                                          "level": 2}
    assert [e.effect for e in free.effects] == [
        Rcu("callback", "free_unlinked_table", table, 2), Put(table, COUNT_NOT_OBSERVED),
        Put(table, COUNT_NOT_OBSERVED), PageCount(table, 1), Put(table, COUNT_NOT_OBSERVED)]
    assert not free.uncertain and (free.index, free.index_return) == (9, 15)
    resumed = out[3]
    assert [e.index for e in resumed.effects] == [16]
    lone = out[4]
    assert lone.pid == 17 and lone.root is None and NO_RETURN in lone.flags  # trace ended


def test_split_with_its_nested_create_unlinked() -> None:
    table = 0xFFF0000010B00000
    t = Trace()
    t.ev("kvm_pgtable_stage2_split", pgt=PGT, addr=0x40000000, size=0x200000, mc=MC, pgd=PGD)
    t.ev("kvm_pgtable_stage2_create_unlinked", pgt=PGT, phys=0x61800000, level=2, prot=6, mc=MC,
         force_pte=1)
    t.ev("stage2_memcache_zalloc_page", mc=MC)
    t.ev("stage2_memcache_zalloc_page__return", virt=table)
    t.ev("kvm_host_get_page", addr=table)
    t.ev("kvm_pgtable_stage2_create_unlinked__return", table=table)
    t.ev("kvm_tlb_flush_vmid_range", mmu=MMU, addr=0x40000000, size=0x200000)
    t.ev("__kvm_tlb_flush_vmid_range", mmu=MMU, start=0x40000000, pages=0x200)
    t.ev("kvm_pgtable_stage2_split__return", ret=0)
    [op] = _ops(t.run())
    assert op.kind == "split" and op.ret == 0 and not op.uncertain
    assert [e.effect for e in op.effects] == [
        Alloc(table), Get(table, COUNT_NOT_OBSERVED), CreateUnlinked(table, 0x61800000, 2, 6),
        TlbFlushRange(0x40000000, 0x200000), Tlbi("vmid_range", ipa=0x40000000, pages=0x200)]
    assert op.effects[-1].mmu == MMU and op.mmu == MMU  # learnt from the invalidation


def test_tlbi_kinds_and_16k_pages() -> None:
    t = Trace()
    t.ev("kvm_pgtable_stage2_relax_perms", pgt=PGT, addr=0x41000000, prot=7, pgd=PGD)
    t.ev("invalidate_icache_guest_page", va=0xFFF0000024200000, size=0x4000)
    t.ev("__kvm_tlb_flush_vmid_ipa_nsh", mmu=MMU, ipa=0x41000000, level=3)
    t.ev("__kvm_tlb_flush_vmid_ipa", mmu=MMU, ipa=0x41000000, level=0x7FFFFFFF)
    t.ev("__kvm_tlb_flush_vmid", mmu=MMU)
    t.ev("kvm_host_get_page", addr=0xFFF0000010A5B1A0)
    t.ev("kvm_pgtable_stage2_relax_perms__return", ret=0)
    [op] = _ops(t.run(page_size=16384))
    assert [e.effect for e in op.effects] == [
        Cmo("icache_inval_pou", 0xFFF0000024200000, 0x4000),
        Tlbi("vmid_ipa_nsh", ipa=0x41000000, level=3),
        Tlbi("vmid_ipa", ipa=0x41000000, level=0x7FFFFFFF), Tlbi("vmid"),
        Get(0xFFF0000010A58000, COUNT_NOT_OBSERVED)]


def test_idle_tasks_of_two_cpus_are_distinct() -> None:
    t = Trace()
    t.map_call(0x1000, cpu=0, pid=0)
    t.ev("kvm_pgtable_stage2_map", 1, 0, pgt=PGT, addr=0x2000, size=0x1000, phys=0, prot=6,
         mc=MC, ia_bits=40, start_level=1, pgd=PGD)
    t.ev("kvm_pgtable_stage2_map__return", 1, 0, ret=0)
    assert all(not o.uncertain for o in _ops(t.run()))


def test_migration_and_late_start_attribution() -> None:
    """A trace that starts after the VM exists learns its mmu and VM from the events."""
    t = Trace()
    t.ev("kvm_unmap_gfn_range", kvm=KVM, start_gfn=0x41A00, end_gfn=0x41A01, may_block=1)
    t.ev("kvm_pgtable_stage2_unmap", pgt=PGT, addr=0x41A00000, size=0x1000, pgd=PGD)
    t.ev("kvm_s2_put_page", addr=PGD + 8)
    t.ev("__kvm_tlb_flush_vmid_ipa", mmu=MMU, ipa=0x41A00000, level=3)
    t.ev("kvm_pgtable_stage2_unmap__return", 1, ret=0)
    [op] = _ops(t.run())
    assert op.flags == {ROOT_FIRST_SEEN, MIGRATED} and not op.uncertain
    assert (op.vm, op.mmu, op.context) == (KVM, MMU, "kvm_unmap_gfn_range")


def test_a_new_pgd_under_an_old_pgt_is_a_new_root() -> None:
    t = Trace()
    t.map_call(0x1000)
    t.map_call(0x1000, pgd=PGD + 0x100000)
    a, b = _ops(t.run())
    assert a.root != b.root and ROOT_FIRST_SEEN in b.flags


def test_effects_outside_operations_and_unknown_events() -> None:
    t = Trace()
    t.ev("kvm_flush_remote_tlbs", kvm=KVM)
    t.ev("__kvm_tlb_flush_vmid", mmu=MMU)
    t.ev("kvm_host_get_page", addr=0x1234)
    t.ev("sched_switch", prev_pid=1)
    builder = OperationBuilder()
    for e in t.events:
        builder.feed(e)
    builder.finish()
    assert builder.ready == []
    assert builder.stats["effect_outside_operation"] == 2 and builder.stats["ignored"] == 1


def test_5x_names() -> None:
    """5.13 init/free/cmo names; mkold / is_young results."""
    t = Trace()
    t.ev("kvm_pgtable_stage2_init_flags", pgt=PGT, arch=MMU, mm_ops=5, flags=0)
    t.ev("kvm_host_zalloc_pages_exact", size=4096)
    t.ev("kvm_host_zalloc_pages_exact__return", virt=PGD)
    t.ev("kvm_pgtable_stage2_init_flags__return", ret=0)
    t.ev("kvm_pgtable_stage2_mkold", pgt=PGT, addr=0x1000, pgd=PGD)
    t.ev("kvm_pgtable_stage2_mkold__return", pte=0x40000000000745)
    t.ev("kvm_pgtable_stage2_unmap", pgt=PGT, addr=0x1000, size=0x1000, pgd=PGD)
    t.ev("__flush_dcache_area", va=0xFFFF000012345000, size=0x1000)
    t.ev("kvm_host_put_page", addr=PGD + 8)
    t.ev("kvm_pgtable_stage2_unmap__return", ret=0)
    t.ev("kvm_pgtable_stage2_destroy", pgt=PGT, ia_bits=40, start_level=1, pgd=PGD)
    t.ev("free_pages_exact", virt=PGD, size=4096)
    t.ev("kvm_pgtable_stage2_destroy__return")
    init, mkold, unmap, destroy = _ops(t.run())
    assert (init.kind, init.mmu, [e.effect for e in init.effects]) == (
        "init", MMU, [Alloc(PGD, 4096)])
    assert mkold.ret == 0x40000000000745
    assert [e.effect for e in unmap.effects] == [
        Cmo("__flush_dcache_area", 0xFFFF000012345000, 0x1000), Put(PGD, COUNT_NOT_OBSERVED)]
    assert [e.effect for e in destroy.effects] == [Free(PGD, 4096)]


# --- property: any interleaving of well-formed calls on several tasks -----------------------

_EFFECTS = ["kvm_host_get_page", "kvm_s2_put_page", "clean_dcache_guest_page", "page_count",
            "zalloc"]


# The events an effect is recorded at: entry-only probes, and the returns of helpers.
_SHOWN_BY = frozenset(["kvm_host_get_page", "kvm_s2_put_page", "clean_dcache_guest_page",
                       "kvm_host_page_count__return", "stage2_memcache_zalloc_page__return"])


@st.composite
def _interleaved(draw: st.DrawFn) -> tuple[list[TraceEvent], dict[tuple[int, int], list[int]]]:
    """Several tasks (each on its own CPU) make sequential calls on two roots; their events
    are merged in a random order that keeps each task's own order."""
    ntasks = draw(st.integers(1, 4))
    scripts = []
    for task in range(ntasks):
        calls = draw(st.lists(st.tuples(st.sampled_from(["map", "unmap", "wrprotect"]),
                                        st.integers(0, 1),
                                        st.lists(st.sampled_from(_EFFECTS), max_size=5)),
                              min_size=1, max_size=5))
        items: list[tuple[str, dict[str, Any], int]] = []  # (name, fields, call number)
        for n, (kind, root, effects) in enumerate(calls):
            func = f"kvm_pgtable_stage2_{kind}"
            pgt = PGT + root * 0x100
            items.append((func, {"pgt": pgt, "addr": n << 12, "size": 0x1000,
                                 "pgd": PGD + root * 0x100000}, n))
            for k, name in enumerate(effects):
                addr = PGD + (task << 16) + (n << 8) + k * 8
                if name == "page_count":
                    items.append(("kvm_host_page_count", {"addr": addr}, n))
                    items.append(("kvm_host_page_count__return", {"count": 1}, n))
                elif name == "zalloc":
                    items.append(("stage2_memcache_zalloc_page", {"mc": MC}, n))
                    items.append(("stage2_memcache_zalloc_page__return", {"virt": addr & ~0xFFF},
                                  n))
                elif name == "clean_dcache_guest_page":
                    items.append((name, {"va": addr, "size": 0x1000}, n))
                else:
                    items.append((name, {"addr": addr}, n))
            items.append((func + "__return", {"ret": 0}, n))
        scripts.append(items)
    order = draw(st.permutations([t for t, s in enumerate(scripts) for _ in s]))
    cursor = [0] * ntasks
    events: list[TraceEvent] = []
    owner: dict[tuple[int, int], list[int]] = {}
    for task in order:
        name, fields, call = scripts[task][cursor[task]]
        cursor[task] += 1
        idx = len(events)
        events.append(TraceEvent(idx, task, idx * 10, 1000 + task, name, fields))
        if name in _SHOWN_BY:
            owner.setdefault((task, call), []).append(idx)
    return events, owner


@settings(max_examples=150, deadline=None)
@given(_interleaved())
def test_interleaved_tasks_pair_and_attribute_exactly(
        case: tuple[list[TraceEvent], dict[tuple[int, int], list[int]]]) -> None:
    events, owner = case
    ops = _ops(list(operations(events)))
    calls = sum(1 for e in events if e.name.startswith("kvm_pgtable_stage2_")
                and not e.name.endswith("__return"))
    assert len(ops) == calls
    seen = set()
    for op in ops:
        assert op.index is not None and op.index_return is not None
        assert not op.uncertain and NO_RETURN not in op.flags
        task = op.pid - 1000
        call = op.args["addr"] >> 12
        assert (task, call) not in seen
        seen.add((task, call))
        assert [e.index for e in op.effects] == owner.get((task, call), [])
    # One root per pgt, whatever the interleaving.
    assert len({(o.pgt, o.root) for o in ops}) == len({o.pgt for o in ops})
