"""Benchmark: 1,000,000 mixed single-page stage-2 operations through the model.

Operations (map, unmap, set_owner, wrprotect, relax_perms, mkyoung, mkold,
is_young, flush of single 4 KiB pages) on a 40-bit IPA space (start level 1,
two concatenated pgd pages, linux-6.1 profile by default), spread over a
fixed working set of IPAs in 64 regions of 2 MiB scattered across the space,
so the live state stays constant while the operation count grows. Effects
are produced as records into a list (``list.append`` sink, cleared after each
operation, like the scenario runner); ``--format`` also turns each one into
its oracle JSON line.

With ``--profile linux-6.12`` the same stream runs through 6.12's code:
maps are KVM fault-path maps (``SHARED | HANDLE_FAULT`` walks), mkold and
is_young are ``test_clear_young`` of the page, and every operation ends
with the RCU grace period (``m.rcu_barrier()``), as in the oracle.
``linux-6.12-16k`` uses 16 KiB pages (regions of 32 MiB).

Prints operations per second, the ratio to the 100,000 ops/s target, a
yardstick in the same run (the same operation stream applied to a flat dict
of IPA -> entry, no tables and no effects: the cost floor of Python
bookkeeping) and the ratio to it, and RSS at checkpoints to show memory
follows the live tables, not the operation count.

    python bench/bench_model.py [--ops 1000000] [--profile linux-6.1] [--format] [--cprofile]
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from typing import Any

from ptreplay.effects import effect_to_json
from ptreplay.model import (
    Machine,
    Memcache,
    OracleMmOps,
    Platform,
    get_profile,
    new_stage2,
    stage2_code,
    stage2_vtcr,
)
from ptreplay.model.pte import KVM_PGTABLE_PROT_R, KVM_PGTABLE_PROT_W, KVM_PGTABLE_PROT_X
from ptreplay.model.walker612 import KVM_PGTABLE_WALK_HANDLE_FAULT, KVM_PGTABLE_WALK_SHARED

TARGET = 100_000
KINDS = ("map", "map", "map", "unmap", "unmap", "set_owner", "wrprotect", "relax_perms",
         "mkyoung", "mkold", "is_young", "flush")


def make_ops(n: int, seed: int, page_shift: int = 12) -> list[tuple[str, int, int]]:
    """A block of ``n`` random single-page operations over the working set."""
    rng = random.Random(seed)
    block_shift = 2 * page_shift - 3  # a level-2 entry
    regions = [rng.randrange(0, 1 << (40 - block_shift)) << block_shift for _ in range(64)]
    ops = []
    for _ in range(n):
        ipa = rng.choice(regions) + (rng.randrange(512) << page_shift)
        ops.append((rng.choice(KINDS), ipa, rng.randrange(8)))
    return ops


def rss_kib() -> int:
    """Current resident set size, KiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (resource.getpagesize() // 1024)


def run_model(ops: list[tuple[str, int, int]], total: int, profile: str, fmt: bool,
              checkpoints: set[int]) -> tuple[float, list[str]]:
    effects: list = []
    prof = get_profile(profile)
    g = prof.granule
    page = g.page_size
    s2: Any = stage2_code(prof)
    m = Machine(prof, Platform(granule=g), effects.append)
    mm_ops = OracleMmOps(m, arena_size=1 << 44)  # the harness's 1 GiB would run out
    ret, pgt = new_stage2(m, mm_ops, stage2_vtcr(40, granule=g))
    assert ret == 0
    mc = Memcache()
    prots = [KVM_PGTABLE_PROT_R, KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_W,
             KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_W | KVM_PGTABLE_PROT_X]
    stage2_map = s2.kvm_pgtable_stage2_map
    unmap = s2.kvm_pgtable_stage2_unmap
    set_owner = s2.kvm_pgtable_stage2_set_owner
    wrprotect = s2.kvm_pgtable_stage2_wrprotect
    relax = s2.kvm_pgtable_stage2_relax_perms
    mkyoung = s2.kvm_pgtable_stage2_mkyoung
    flush = s2.kvm_pgtable_stage2_flush
    if prof.shared_walks:  # 6.12: fault-path maps, test_clear_young, RCU grace periods
        fault = KVM_PGTABLE_WALK_SHARED | KVM_PGTABLE_WALK_HANDLE_FAULT
        young = s2.kvm_pgtable_stage2_test_clear_young
        map612 = s2.kvm_pgtable_stage2_map

        def stage2_map(pgt, addr, size, phys, prot, mc):  # type: ignore[no-untyped-def]
            return map612(pgt, addr, size, phys, prot, mc, fault)

        def mkold(pgt, addr):  # type: ignore[no-untyped-def]
            return young(pgt, addr, 1, True)

        def is_young(pgt, addr):  # type: ignore[no-untyped-def]
            return young(pgt, addr, 1, False)

        rcu_barrier = m.rcu_barrier
    else:
        mkold = s2.kvm_pgtable_stage2_mkold
        is_young = s2.kvm_pgtable_stage2_is_young
        rcu_barrier = None
    notes = []
    nblock = len(ops)
    lines = 0
    t0 = time.perf_counter()
    for i in range(total):
        kind, ipa, r = ops[i % nblock]
        if kind == "map":
            stage2_map(pgt, ipa, page, 0x80_0000_0000 + ipa, prots[r % 3], mc)
        elif kind == "unmap":
            unmap(pgt, ipa, page)
        elif kind == "set_owner":
            set_owner(pgt, ipa, page, mc, r & 1)
        elif kind == "wrprotect":
            wrprotect(pgt, ipa, page)
        elif kind == "relax_perms":
            relax(pgt, ipa, prots[r % 3])
        elif kind == "mkyoung":
            mkyoung(pgt, ipa)
        elif kind == "mkold":
            mkold(pgt, ipa)
        elif kind == "is_young":
            is_young(pgt, ipa)
        else:
            flush(pgt, ipa, page)
        if rcu_barrier is not None:
            rcu_barrier()
        if fmt:
            for e in effects:
                effect_to_json(e)
        lines += len(effects)
        effects.clear()
        if i + 1 in checkpoints:
            notes.append(f"  after {i + 1:>9,} ops: {len(m.pages):5} live table pages, "
                         f"RSS {rss_kib() / 1024:6.1f} MiB, {lines:,} effects so far")
    elapsed = time.perf_counter() - t0
    s2.kvm_pgtable_stage2_destroy(pgt)
    m.rcu_barrier()
    assert not mm_ops.live_pages()
    return elapsed, notes


def run_yardstick(ops: list[tuple[str, int, int]], total: int) -> float:
    """The same stream on a flat dict: the floor of per-operation Python cost."""
    table: dict[int, int] = {}
    nblock = len(ops)
    t0 = time.perf_counter()
    for i in range(total):
        kind, ipa, r = ops[i % nblock]
        if kind == "map":
            table[ipa] = (0x80_0000_0000 + ipa) | 0x7FF
        elif kind == "unmap" or kind == "set_owner":
            table.pop(ipa, None)
        elif kind == "wrprotect":
            if ipa in table:
                table[ipa] &= ~0x80
        elif kind == "relax_perms" or kind == "mkyoung":
            if ipa in table:
                table[ipa] |= 0x400
        elif kind == "mkold":
            if ipa in table:
                table[ipa] &= ~0x400
        else:
            table.get(ipa)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ops", type=int, default=1_000_000)
    ap.add_argument("--profile", default="linux-6.1")
    ap.add_argument("--format", action="store_true", help="also format every effect as JSON")
    ap.add_argument("--cprofile", action="store_true", help="run under cProfile, print top 25")
    args = ap.parse_args()

    ops = make_ops(1 << 16, seed=4, page_shift=get_profile(args.profile).granule.page_shift)
    checkpoints = {args.ops // 10, args.ops // 2, args.ops}
    print(f"model: {args.ops:,} single-page ops, {args.profile}, 40-bit IPA, sink list.append"
          f"{' + JSON formatting' if args.format else ''}")
    if args.cprofile:
        import cProfile
        import pstats
        prof = cProfile.Profile()
        prof.enable()
        run_model(ops, args.ops, args.profile, args.format, set())
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return
    elapsed, notes = run_model(ops, args.ops, args.profile, args.format, checkpoints)
    print("\n".join(notes))
    rate = args.ops / elapsed
    yard = run_yardstick(ops, args.ops)
    print(f"model:     {elapsed:7.2f} s  {rate:12,.0f} ops/s  ({rate / TARGET:.2f}x the "
          f"{TARGET:,} ops/s target)")
    print(f"yardstick: {yard:7.2f} s  {args.ops / yard:12,.0f} ops/s  (flat dict, no effects; "
          f"model/yardstick time ratio {elapsed / yard:.1f})")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS: {peak / 1024:.1f} MiB")
    sys.exit(0 if rate >= TARGET else 1)


if __name__ == "__main__":
    main()
