"""The effects <-> probe events table, both ways, against the schemas it names."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ptreplay.capture.catalog import event_schema, known_series, load_probe_set
from ptreplay.capture.probe_effects import (
    ADDR,
    BY_EVENT,
    COUNT_NOT_OBSERVED,
    EFFECT_PROBES,
    MC,
    MMU,
    PTE_STORE_EVENT,
    PageCount,
    probe_effects,
)
from ptreplay.effects import Alloc, AllocFail, Cmo, Free, Pte, Put, Tlbi
from ptreplay.stage2.operations import Operation, TraceEvent, operations

U64 = st.integers(0, 2**64 - 1)


def test_every_field_the_table_names_is_in_the_schema() -> None:
    seen = set()
    for series in known_series():
        names = {e.definition.event for e in load_probe_set(series).entries}
        for probe in EFFECT_PROBES:
            if probe.event not in names and probe.event != PTE_STORE_EVENT:
                continue
            seen.add(probe.event)
            for event, pairs in ((probe.event, probe.entry), (probe.ret_event, probe.ret)):
                if event is None:
                    continue
                fields = {f.name for f in event_schema(series, event).fields}
                for name, _ in pairs:
                    assert name in fields, (series, event, name)
    assert seen == set(BY_EVENT), set(BY_EVENT) - seen


def test_each_series_shows_the_effects_its_kernel_calls() -> None:
    p61 = probe_effects("6.1")
    assert p61.probe_for(Alloc(1, 8192)).event == "kvm_s2_zalloc_pages_exact"
    assert p61.probe_for(Free(1, 8192)).event == "kvm_s2_free_pages_exact"
    assert p61.probe_for(Put(1, -1)).event == "kvm_s2_put_page"
    assert p61.probe_for(Cmo("__flush_dcache_area", 1, 1)) is None
    p513 = probe_effects("5.13")
    assert p513.probe_for(Alloc(1, 8192)).event == "kvm_host_zalloc_pages_exact"
    assert p513.probe_for(Free(1, 8192)).event == "free_pages_exact"
    assert p513.probe_for(Put(1, -1)).event == "kvm_host_put_page"
    assert p513.probe_for(Cmo("dcache_clean_inval_poc", 1, 1)) is None
    # invisible: the free after a put reached 0
    assert p61.encode(Free(0x1000)) == []
    assert probe_effects("6.1", instrumented=False).probe_for(Pte(1, 2, 3)) is None


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(EFFECT_PROBES), U64, st.integers(0, 2**31), st.integers(-1, 3), U64,
       U64)
def test_encode_then_decode_gives_the_effect_back(probe, a, size, level, b, addr) -> None:
    values = {"pa": a & ~0xFFF or 0x1000, "size": size, "ipa": a, "level": level, "pages": size,
              "count": size, "old": a, "new": b, "ptep": a, "phys": b, "prot": size}
    const = dict(probe.const)
    sources = {src for _, src in probe.entry + probe.ret}
    defaults = probe.effect._field_defaults
    args = {}
    for k in probe.effect._fields:
        if k in const:
            args[k] = const[k]
        elif k in sources:
            args[k] = values[k]
        else:
            args[k] = defaults.get(k, COUNT_NOT_OBSERVED)
    effect = probe.effect(**args)
    uses_addr = ADDR in sources
    if uses_addr:
        effect = effect._replace(pa=addr & ~0xFFF)
    events = probe.encode(effect, addr=addr if uses_addr else None, mmu=0xABC, mc=0xDEF)
    assert [e[1] for e in events] == [probe.event] + ([probe.ret_event] if probe.ret else [])
    entry = events[0][2]
    ret = events[1][2] if probe.ret else None
    for name, src in probe.entry:
        if src == MMU:
            assert entry[name] == 0xABC
        if src == MC:
            assert entry[name] == 0xDEF
    decoded, got_addr, got_mmu = probe.decode(entry, ret, ~0xFFF)
    assert decoded == effect
    assert got_addr == (addr if uses_addr else None)
    assert got_mmu == (0xABC if any(src == MMU for _, src in probe.entry) else None)


def test_a_null_allocation_is_an_alloc_fail() -> None:
    probe = BY_EVENT["stage2_memcache_zalloc_page"]
    events = probe.encode(AllocFail(), mc=0x55)
    assert events[1][2] == {"virt": 0}
    assert probe.decode(events[0][2], events[1][2])[0] == AllocFail()
    assert PageCount(0x1000, 3).count == 3


def test_entry_stores_of_the_instrumentation_event_are_pte_effects() -> None:
    pgt, pgd = 0xFFFF000003756280, 0xFFFF000002D5A000
    evs = [
        ("kvm_pgtable_stage2_unmap", dict(__probe_ip=1, pgt=pgt, addr=0x40000000, size=0x1000,
                                          pgd=pgd)),
        (PTE_STORE_EVENT, dict(ptep=pgd + 8, old=0x4000005BA007DB, new=0)),
        ("__kvm_tlb_flush_vmid_ipa", dict(__probe_ip=1, mmu=0x99, ipa=0x40000000, level=3)),
        ("kvm_s2_put_page", dict(__probe_ip=1, addr=pgd + 8)),
        ("kvm_pgtable_stage2_unmap__return", dict(__probe_func=1, __probe_ret_ip=2, ret=0)),
    ]
    out = list(operations(TraceEvent(i, 0, 100 + i, 280, n, f) for i, (n, f) in enumerate(evs)))
    (op,) = [o for o in out if isinstance(o, Operation)]
    assert [e.effect for e in op.effects] == [
        Pte(pgd + 8, 0x4000005BA007DB, 0),
        Tlbi("vmid_ipa", 0x40000000, 3),
        Put(pgd, COUNT_NOT_OBSERVED),
    ]
    assert op.effects[0].index == 1 and op.effects[2].addr == pgd + 8
