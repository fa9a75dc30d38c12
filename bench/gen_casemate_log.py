"""Generate a casemate log of a realistic, correct stage-2 workload.

The log is what an instrumented pKVM-style hypervisor would emit: it builds a
stage-2 (root at level 0, one level-1 table, level-2 tables, level-3 tables),
loads it on four CPUs (VTTBR_EL2, VMID 1), then runs many map/unmap cycles
under the root's lock:

* map: the new entries are stored with release semantics, then ``dsb ishst``;
* unmap: for each entry, a plain store of 0, then the sequence
  ``__kvm_tlb_flush_vmid_ipa`` issues: ``dsb ish; tlbi ipas2e1is (IPA, level
  hint); dsb ish; tlbi vmalle1is; dsb ish``;
* 2 MiB blocks mapped and unmapped the same way at level 2;
* now and then a level-3 table allocated (``mem-init``), linked, used, unlinked
  with break-before-make (``tlbi vmalls12e1is``) and freed (``mem-free``).

Every update follows break-before-make and the locking rules, so both
casemate-check and ``ptreplay check`` must find it clean. The log has exactly
the requested number of records (the last ones are ``dsb ish`` filler).

Usage: ``python bench/gen_casemate_log.py OUT.log [--events N] [--seed S]``
"""

from __future__ import annotations

import argparse
import random
import sys
from typing import IO

BASE = 0x40000000          # table pages
LOCK = 0x3F000000
VMID = 1
N_L2 = 4                   # level-2 tables under L1 entries 0..3
N_L3 = 48                  # level-3 tables per level-2 table (entries 0..47)
SPARE_L3 = 32              # level-3 tables allocated and freed on the way
CPUS = 4
_SRC = "arch/arm64/kvm/hyp/pgtable.c"
_PAGE_ATTRS = 0x7FF       # page: AF, SH=inner, S2AP=RW, MemAttr=normal write-back
_BLOCK_ATTRS = 0x7FD      # the same as a level-2 block


class _Log:
    def __init__(self, out: IO[str], limit: int):
        self.out = out
        self.limit = limit
        self.n = 0
        self.buf: list[str] = []

    def room(self, records: int) -> bool:
        return self.n + records <= self.limit

    def rec(self, body: str, line: int) -> None:
        self.buf.append(f'({body[:body.index(" ")]} (id {self.n}) (tid {self.tid})'
                        f'{body[body.index(" "):]} (src "{_SRC}:{line}"))\n')
        self.n += 1
        if len(self.buf) >= 4096:
            self.flush()

    def flush(self) -> None:
        self.out.write("".join(self.buf))
        self.buf.clear()

    tid = 0

    def write(self, addr: int, value: int, release: bool, line: int) -> None:
        order = "release" if release else "plain"
        self.rec(f"mem-write (mem-order {order}) (address {addr:#x}) (value {value:#x})", line)

    def dsb(self, kind: str, line: int) -> None:
        self.rec(f"barrier dsb (kind {kind})", line)

    def tlbi(self, op: str, value: int | None, line: int) -> None:
        tail = f" (value {value:#x})" if value is not None else ""
        self.rec(f"tlbi {op}{tail}", line)


def generate(out: IO[str], events: int, seed: int = 1) -> int:
    """Write a log of exactly ``events`` records to ``out``; return the count."""
    rng = random.Random(seed)
    log = _Log(out, events)
    root, l1 = BASE, BASE + 0x1000
    l2 = [BASE + 0x2000 + i * 0x1000 for i in range(N_L2)]
    l3 = [[BASE + 0x10000 + (i * N_L3 + j) * 0x1000 for j in range(N_L3)] for i in range(N_L2)]
    spare = [BASE + 0x200000 + k * 0x1000 for k in range(SPARE_L3)]
    # --- the tables, built before the stage-2 goes live ---
    for page in [root, l1, *l2, *(p for row in l3 for p in row)]:
        log.rec(f"mem-init (address {page:#x}) (size 0x1000)", 100)
    log.rec(f"hint (kind set_root_lock) (location {root:#x}) (value {LOCK:#x})", 101)
    for page in [l1, *l2, *(p for row in l3 for p in row)]:
        log.rec(f"hint (kind set_owner_root) (location {page:#x}) (value {root:#x})", 102)
    log.write(root, l1 | 3, False, 110)
    for i, page in enumerate(l2):
        log.write(l1 + 8 * i, page | 3, False, 111)
        for j, leaf in enumerate(l3[i]):
            log.write(page + 8 * j, leaf | 3, False, 112)
    for cpu in range(CPUS):
        log.tid = cpu
        log.rec(f"sysreg-write (sysreg vttbr_el2) (value {VMID << 48 | root:#x})", 120)
    mapped: dict[int, int] = {}            # entry address -> IPA of what is mapped there
    free_spare = list(spare)
    live_spare: list[tuple[int, int]] = []  # (page, L2 entry that links it)
    pa = 0x100000000

    def lock(cpu: int) -> None:
        log.tid = cpu
        log.rec(f"lock (address {LOCK:#x})", 200)

    def unlock() -> None:
        log.rec(f"unlock (address {LOCK:#x})", 201)

    def unmap(entry: int, ipa: int, level: int) -> None:
        log.write(entry, 0, False, 300)
        log.dsb("ish", 301)
        log.tlbi("ipas2e1is", (0b0100 | level) << 44 | ipa >> 12, 302)
        log.dsb("ish", 303)
        log.tlbi("vmalle1is", None, 304)
        log.dsb("ish", 305)

    while True:
        cpu = rng.randrange(CPUS)
        choice = rng.random()
        if choice < 0.85:
            # map a run of pages in one level-3 table, then unmap some of what is mapped
            i, j = rng.randrange(N_L2), rng.randrange(N_L3)
            table = l3[i][j]
            base_ipa = (i << 30) | (j << 21)
            first = rng.randrange(0, 512 - 16)
            count = rng.randrange(4, 16)
            todo = [(table + 8 * k, base_ipa | k << 12) for k in range(first, first + count)
                    if table + 8 * k not in mapped]
            drop = rng.sample(sorted(mapped), min(len(mapped), rng.randrange(4, 16)))
            need = 3 + len(todo) + 2 + 6 * len(drop)
            if not log.room(need):
                break
            lock(cpu)
            for entry, ipa in todo:
                log.write(entry, pa | _PAGE_ATTRS, True, 400)
                mapped[entry] = ipa
                pa += 0x1000
            log.dsb("ishst", 401)
            unlock()
            lock(cpu)
            for entry in drop:
                unmap(entry, mapped.pop(entry), 3)
            unlock()
        elif choice < 0.95:
            # a 2 MiB block in a level-2 entry that has no table
            i = rng.randrange(N_L2)
            j = rng.randrange(N_L3, 512)
            entry = l2[i] + 8 * j
            if entry in mapped or not log.room(14):
                if not log.room(14):
                    break
                continue
            lock(cpu)
            log.write(entry, (pa + 0x1FFFFF) & ~0x1FFFFF | _BLOCK_ATTRS, True, 500)
            pa = ((pa + 0x1FFFFF) & ~0x1FFFFF) + 0x200000
            log.dsb("ishst", 501)
            unlock()
            lock(cpu)
            unmap(entry, (i << 30) | (j << 21), 2)
            unlock()
        else:
            # allocate a level-3 table, use it, unlink and free it again
            if not free_spare or not log.room(40):
                if not log.room(40):
                    break
                continue
            page = free_spare.pop()
            i = rng.randrange(N_L2)
            j = rng.randrange(N_L3, 512)
            entry = l2[i] + 8 * j
            if entry in mapped or any(e == entry for _p, e in live_spare):
                free_spare.append(page)
                continue
            lock(cpu)
            log.rec(f"mem-init (address {page:#x}) (size 0x1000)", 600)
            log.write(entry, page | 3, True, 601)
            for k in range(2):
                log.write(page + 8 * k, pa | _PAGE_ATTRS, True, 602)
                pa += 0x1000
            log.dsb("ishst", 603)
            unlock()
            lock(cpu)
            base_ipa = (i << 30) | (j << 21)
            for k in range(2):
                unmap(page + 8 * k, base_ipa | k << 12, 3)
            log.write(entry, 0, False, 610)
            log.dsb("ish", 611)
            log.tlbi("vmalls12e1is", None, 612)
            log.dsb("ish", 613)
            log.rec(f"mem-free (address {page:#x}) (size 0x1000)", 614)
            unlock()
            free_spare.append(page)
    # filler to the exact count
    log.tid = 0
    while log.n < events:
        log.dsb("ish", 900)
    log.flush()
    return log.n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="where to write the log (- for stdout)")
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.out == "-":
        n = generate(sys.stdout, args.events, args.seed)
    else:
        with open(args.out, "w", buffering=1 << 20) as f:
            n = generate(f, args.events, args.seed)
    print(f"{n} records", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
