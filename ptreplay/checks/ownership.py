"""Ownership checker: owner annotations in a (pKVM host) stage-2.

``kvm_pgtable_stage2_set_owner()`` marks IPA ranges as owned by a non-host
entity with invalid entries that carry an owner id
(``KVM_INVALID_PTE_OWNER_MASK``, see :mod:`ptreplay.model.profiles`); the
host (owner 0) owns everything else. pKVM ends an ownership only by giving
the range back with ``set_owner(..., 0)``. The checker reports, with the
operation that did it:

* ``owned-page-mapped`` -- a valid mapping written over an owner annotation
  (the host's stage-2 maps a page another owner holds), or a valid mapping in
  another stage-2 of a page some stage-2 annotates as owned by a different
  owner (when that stage-2's owner id is known; uncertain otherwise);
* ``owner-annotation-lost`` -- an annotation cleared by anything but
  ``set_owner(..., 0)`` (``unmap`` clears counted invalid entries), replaced
  by another owner's annotation without being given back, or dropped with the
  table that held it (a block mapping collapsing the table, a table entry
  replacing an annotated block).
"""

from __future__ import annotations

from typing import NamedTuple

from ptreplay.checks.context import Context
from ptreplay.checks.pte import granule_shift, leaf_oa, pte_is_table
from ptreplay.checks.shadow import Page, Shadow
from ptreplay.checks.stream import Operation, op_int
from ptreplay.model.profiles import Profile

__all__ = ["OwnershipChecker"]


class _Pending(NamedTuple):
    """A finding waiting for the end of its operation (contiguous ones are merged)."""

    kind: str
    owner: int
    root: int | None
    lo: int
    hi: int
    what: str
    entries: int
    table: int
    entry: int
    pa: tuple[int, int] | None
    level: int | None
    index: int | None  # type: ignore[assignment]  # (shadows tuple.index)
    line: int | None
    op: Operation | None


class OwnershipChecker:
    """Reports owner annotations that are mapped over or lost."""

    def __init__(self, shadow: Shadow, ctx: Context, profile: Profile):
        self.shadow = shadow
        self.ctx = ctx
        self.profile = profile
        # page frame (IPA >> page_shift, the PA in an identity-mapped host stage-2)
        # -> (owner, root pgd) for level-3 annotations; block annotations separately.
        self._owned_frames: dict[int, tuple[int, int]] = {}
        self._owned_blocks: dict[tuple[int, int], tuple[int, int]] = {}
        self._locked: dict[int, int] = {}
        self._pending: list[_Pending] = []
        self._dropped: list[tuple] = []

    def _owner(self, pte: int) -> int:
        if pte & 1 or pte == 0:
            return 0
        return self.profile.owner_of(pte)

    def on_store(self, page: Page, idx: int, ptep: int, old: int, new: int,
                 op: Operation | None) -> None:
        """An entry store in the live table page ``page`` (before it is applied)."""
        level = page.level
        root = page.root
        assert level is not None and root is not None
        old_owner = self._owner(old)
        new_owner = self._owner(new)
        locked = self.profile.locked_pte
        if locked is not None:
            # 6.12 breaks every entry to KVM_INVALID_PTE_LOCKED before the make:
            # carry the annotation across the locked window.
            if old == locked:
                old_owner = self._locked.pop(ptep, 0)
            if new == locked:
                if old_owner:
                    self._locked[ptep] = old_owner
                return
        lo, hi = self.shadow.entry_range(page, idx)
        if old_owner:
            self._forget(lo, hi, level)
            by = op.name if op is not None else "a store"
            if new & 1:
                if pte_is_table(new, level):
                    self._note("owner-annotation-lost", old_owner, page, idx, ptep, lo, hi,
                               f"was replaced by a table entry by {by} (the new table starts "
                               f"empty, so the range reverts to the host)")
                else:
                    oa = leaf_oa(new, level, self.shadow.page_shift)
                    self._note("owned-page-mapped", old_owner, page, idx, ptep, lo, hi,
                               f"was mapped by {by} without being given back first",
                               pa=(oa, oa + (hi - lo)))
            elif new == 0:
                if not (op is not None and op.name == "set_owner"
                        and op_int(op.args, "owner_id") == 0):
                    self._note("owner-annotation-lost", old_owner, page, idx, ptep, lo, hi,
                               f"was cleared by {by}, not given back with set_owner(0)")
            elif new_owner and new_owner != old_owner:
                self._note("owner-annotation-lost", old_owner, page, idx, ptep, lo, hi,
                           f"passed to owner {new_owner} by {by} without being given back to "
                           f"the host first")
        elif old & 3 == 3 and level < 3 and not new & 1:
            self._table_dropped(page, idx, ptep, old, op)
        if new_owner:
            self._remember(lo, hi, level, new_owner, root.pgd)
        elif new & 1 and not pte_is_table(new, level) and len(self.shadow.roots) > 1:
            self._check_cross_root(page, idx, ptep, new, lo, hi, level)

    def _note(self, kind: str, owner: int, page: Page, idx: int, ptep: int, lo: int, hi: int,
              what: str, pa: tuple[int, int] | None = None) -> None:
        """Queue a finding; :meth:`flush` reports runs of contiguous ones as one."""
        root = page.root.pgd if page.root else None
        self._pending.append(_Pending(kind, owner, root, lo, hi, what, 1, page.pa, ptep, pa,
                                      page.level, self.ctx.index, self.ctx.line, self.ctx.op))
        if len(self._pending) > 1:
            self._merge_last()

    def _merge_last(self) -> None:
        last = self._pending[-1]
        prev = self._pending[-2]
        if (prev.kind, prev.owner, prev.root, prev.hi, prev.what) != \
                (last.kind, last.owner, last.root, last.lo, last.what):
            return
        pa = None
        if prev.pa is not None and last.pa is not None and prev.pa[1] == last.pa[0]:
            pa = (prev.pa[0], last.pa[1])
        self._pending[-2:] = [prev._replace(hi=last.hi, entries=prev.entries + last.entries,
                                            pa=pa)]

    def _merge_pending(self) -> None:
        items = self._pending
        self._pending = []
        for item in items:
            self._pending.append(item)
            if len(self._pending) > 1:
                self._merge_last()

    def flush(self) -> None:
        """Report the queued findings (at the end of each operation)."""
        if self._dropped:
            self._judge_dropped()
            self._pending.sort(key=lambda p: (p.index or 0, p.lo))
            self._merge_pending()
        for p in self._pending:
            count = f" ({p.entries} entries)" if p.entries > 1 else ""
            self.ctx.report(p.kind, f"owner {p.owner}'s IPA {p.lo:#x}-{p.hi:#x}{count} {p.what}",
                            index=p.index, line=p.line, op=p.op, root=p.root, ipa=(p.lo, p.hi),
                            pa=p.pa, table=p.table, entry=p.entry, level=p.level)
        self._pending.clear()

    def _table_dropped(self, page: Page, idx: int, ptep: int, old: int,
                       op: Operation | None) -> None:
        """A table entry is being cleared: annotations below it go with it.

        Whether they are lost is decided when the operation ends: a set_owner
        that collapses the table into a block annotation of the same owner
        keeps them.
        """
        child = self.shadow.child_of(old)
        if child.parent != ptep or page.root is None:
            return
        for node in (child, *self.shadow.descendants(child)):
            for cidx, val in sorted(node.vals.items()):
                owner = self._owner(val)
                if owner:
                    lo, hi = self.shadow.entry_range(node, cidx)
                    self._dropped.append((page.root, lo, hi, owner, node.pa, node.pa + cidx * 8,
                                          node.level, child.pa, self.ctx.index, self.ctx.line))
                    self._forget(lo, hi, node.level or 3)

    def _judge_dropped(self) -> None:
        op = self.ctx.op
        by = op.name if op is not None else "a store"
        give_back = None
        if op is not None and op.name == "set_owner" and op_int(op.args, "owner_id") == 0:
            start = op_int(op.args, "addr", 0) or 0
            give_back = (start, start + (op_int(op.args, "size", 0) or 0))
        for root, lo, hi, owner, table, ptep, level, child, index, line in self._dropped:
            if give_back is not None and give_back[0] <= lo and hi <= give_back[1]:
                continue
            found = self.shadow.lookup(root, lo) if root.live else None
            val = found[2] if found is not None else 0
            if self._owner(val) == owner:
                continue
            now = found[0] if found is not None else None
            if val & 1 and now is not None and now.level is not None \
                    and not pte_is_table(val, now.level):
                kind = "owned-page-mapped"
                what = (f"was mapped by {by} after the table {child:#x} holding its annotation "
                        f"was unlinked")
            else:
                kind = "owner-annotation-lost"
                what = f"was dropped with the table {child:#x} that {by} unlinked"
            self._pending.append(_Pending(kind, owner, root.pgd, lo, hi, what, 1, table, ptep,
                                          None, level, index, line, op))
        self._dropped.clear()

    def _remember(self, lo: int, hi: int, level: int, owner: int, root: int) -> None:
        if hi - lo == self.shadow.page_size:
            self._owned_frames[lo >> self.shadow.page_shift] = (owner, root)
        else:
            self._owned_blocks[(lo, hi)] = (owner, root)

    def _forget(self, lo: int, hi: int, level: int) -> None:
        if hi - lo == self.shadow.page_size:
            self._owned_frames.pop(lo >> self.shadow.page_shift, None)
        else:
            self._owned_blocks.pop((lo, hi), None)

    def _check_cross_root(self, page: Page, idx: int, ptep: int, new: int, lo: int, hi: int,
                          level: int) -> None:
        root = page.root
        assert root is not None
        shift = self.shadow.page_shift
        oa = leaf_oa(new, level, shift)
        size = 1 << granule_shift(level, shift)
        hit: tuple[int, int, int] | None = None
        if size >> shift <= 512:
            for frame in range(oa >> shift, (oa + size) >> shift):
                owned = self._owned_frames.get(frame)
                if owned is not None and owned[1] != root.pgd:
                    hit = (frame << shift, *owned)
                    break
        if hit is None:
            for (a, b), owned in self._owned_blocks.items():
                if owned[1] != root.pgd and a < oa + size and oa < b:
                    hit = (max(a, oa), *owned)
                    break
        if hit is None:
            return
        pa, owner, other = hit
        if root.owner_id is not None and root.owner_id == owner:
            return
        self.ctx.report("owned-page-mapped",
                        f"PA {pa:#x}, annotated as owned by owner {owner} in the stage-2 at "
                        f"{other:#x}, was mapped at IPA {lo:#x} in the stage-2 at {root.pgd:#x}",
                        root=root.pgd, ipa=(lo, hi), pa=(oa, oa + size), table=page.pa,
                        entry=ptep, level=level, uncertain=root.owner_id is None)
