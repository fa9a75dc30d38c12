"""Read-only views of a model page table: dumps, leaves, the oracle harness's checks.

Nothing here emits effects or changes state. :func:`dump_tables` is the
oracle's ``dump`` (every table page reachable from the pgd, depth first in
entry order, pgd pages in address order); :func:`iter_leaves` lists what is
mapped or annotated; :func:`check_invariants` runs the checks the oracle
harness runs after every operation (FORMAT.md "Checks");
:func:`check_shared_walk_state` the ones its 6.12 harness adds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from ptreplay.effects import Table
from ptreplay.model.geometry import KVM_PGTABLE_MAX_LEVELS, kvm_pgd_pages
from ptreplay.model.pte import kvm_pte_table, stage2_pte_is_counted
from ptreplay.model.structs import KvmPgtable

__all__ = ["TablePage", "Leaf", "iter_tables", "dump_tables", "iter_leaves", "check_invariants",
           "check_shared_walk_state"]


class TablePage(NamedTuple):
    """One table page: its address (as the code sees it), PA, level, base IPA, refcount."""

    addr: int
    pa: int
    level: int
    ipa: int
    refcount: int
    entries: list[int]


class Leaf(NamedTuple):
    """A non-zero, non-table entry: a valid page/block, or an owner annotation."""

    ipa: int
    level: int
    size: int
    pte: int
    ptep_pa: int


def _pgd_pages(pgt: KvmPgtable) -> Iterator[tuple[int, int]]:
    """(address, first IPA) of each concatenated pgd page."""
    g = pgt.m.granule
    if pgt.pgd is None:
        return
    span = 1 << g.kvm_granule_shift(pgt.start_level - 1)
    for i in range(kvm_pgd_pages(pgt.ia_bits, pgt.start_level, g)):
        yield pgt.pgd + i * g.page_size, i * span


def iter_tables(pgt: KvmPgtable) -> Iterator[TablePage]:
    """Every table page reachable from the pgd, depth first in entry order."""
    m = pgt.m
    g = m.granule
    mm_ops = pgt.mm_ops
    assert mm_ops is not None

    def walk(addr: int, level: int, ipa: int) -> Iterator[TablePage]:
        entries = m.pages.get(addr)
        if entries is None:  # not live: reported by check_invariants
            return
        yield TablePage(addr, m.virt_to_phys(addr), level, ipa,
                        mm_ops.page_count(addr), entries)
        shift = g.kvm_granule_shift(level)
        for idx, pte in enumerate(entries):
            if pte and kvm_pte_table(pte, level):
                child = mm_ops.phys_to_virt(pte & g.pte_addr_mask)
                yield from walk(child, level + 1, ipa + (idx << shift))

    for addr, ipa in _pgd_pages(pgt):
        yield from walk(addr, pgt.start_level, ipa)


def dump_tables(pgt: KvmPgtable) -> list[Table]:
    """The oracle's ``dump``: one :class:`~ptreplay.effects.Table` per reachable table page."""
    return [Table(t.pa, t.level, t.refcount, tuple((i, v) for i, v in enumerate(t.entries) if v))
            for t in iter_tables(pgt)]


def iter_leaves(pgt: KvmPgtable) -> Iterator[Leaf]:
    """Every valid leaf and owner annotation, in IPA order."""
    g = pgt.m.granule
    for t in iter_tables(pgt):
        shift = g.kvm_granule_shift(t.level)
        for idx, pte in enumerate(t.entries):
            if pte and not kvm_pte_table(pte, t.level):
                yield Leaf(t.ipa + (idx << shift), t.level, 1 << shift, pte, t.pa + idx * 8)


def check_invariants(pgt: KvmPgtable, live: dict[int, int] | None = None) -> list[str]:
    """The oracle harness's checks after an operation; returns the violations found.

    * each table page's refcount is 1 + its counted (non-zero) entries;
    * no table page is reachable twice, and every reachable page is live;
    * every live page is reachable (no leak); with no pgd, no page may be live.

    :param live: the allocator's live pages (address -> refcount); taken from
        ``pgt.mm_ops.live_pages()`` when omitted.
    """
    problems: list[str] = []
    mm_ops = pgt.mm_ops
    if live is None:
        live = mm_ops.live_pages() if mm_ops is not None else {}  # type: ignore[attr-defined]
    seen: set[int] = set()
    if pgt.pgd is not None:
        m = pgt.m
        g = m.granule
        assert mm_ops is not None

        def walk(addr: int, level: int) -> None:
            pa = m.virt_to_phys(addr)
            if addr in seen:
                problems.append(f"table page {pa:#x} reachable twice")
                return
            seen.add(addr)
            entries = m.pages.get(addr)
            if entries is None or addr not in live:
                problems.append(f"table page {pa:#x} (level {level}) is not live")
                return
            counted = sum(1 for pte in entries if stage2_pte_is_counted(pte))
            if live[addr] != 1 + counted:
                problems.append(f"table page {pa:#x} (level {level}): refcount {live[addr]}"
                                f" != 1 + {counted} counted entries")
            if level >= KVM_PGTABLE_MAX_LEVELS - 1:
                return
            for pte in entries:
                if kvm_pte_table(pte, level):
                    walk(mm_ops.phys_to_virt(pte & g.pte_addr_mask), level + 1)

        for addr, _ in _pgd_pages(pgt):
            walk(addr, pgt.start_level)
    for addr in sorted(set(live) - seen):
        problems.append(f"page {pgt.m.virt_to_phys(addr):#x} is allocated but not reachable"
                        " (leak)")
    return problems


def check_shared_walk_state(pgt: KvmPgtable) -> list[str]:
    """The checks the 6.12 oracle harness adds after an operation (and its RCU callbacks).

    * no entry still holds ``KVM_INVALID_PTE_LOCKED`` (an invalid entry with
      the profile's ``locked_pte`` bit: a break-before-make left unfinished);
    * no RCU read-side section is open;
    * no ``call_rcu`` callback is still queued (the grace period ended).

    Profiles without a locked-entry marker only get the RCU checks.
    """
    m = pgt.m
    problems: list[str] = []
    locked = m.profile.locked_pte
    if locked is not None:
        for t in iter_tables(pgt):
            for idx, pte in enumerate(t.entries):
                if not pte & 1 and pte & locked:
                    problems.append(f"entry {t.pa + idx * 8:#x} (level {t.level}) is still"
                                    f" locked: {pte:#x}")
    if m.rcu_nesting:
        problems.append(f"RCU read-side section still open (nesting {m.rcu_nesting})")
    if m.rcu_callbacks:
        problems.append(f"{len(m.rcu_callbacks)} RCU callbacks still queued")
    return problems
