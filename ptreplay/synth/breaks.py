"""Breaks and their TLB invalidations in one stage-2 call, for choosing where a bug is real.

An injection that removes a TLBI, changes its level hint or removes the
invalid write of a break-before-make is only a bug where the architecture
says so (DDI 0487 J.a D8.14.1, "Using break-before-make when updating
translation table entries", and the TLBI level hint rules of D8.17): a TLBI is
redundant when another one of the same call covers the same entry, and an
entry replaced valid-to-valid needs no break when only permissions or the
Access flag change. This module works that out from the model's own stores
and TLBIs, independently of the checkers:

* :class:`TableGeometry` follows where every table page of the synthetic
  host sits (its level and first IPA), from each root's pgd and the table
  entries the model stores, so each entry store has a level and an IPA range;
* :class:`CallBreaks` goes through one call's records in order, as the
  hardware would see them: each valid entry written invalid is a
  :class:`Break`; each TLBI completes the pending breaks it covers and is a
  near miss (wrong level hint) for the ones it targets but does not cover;
  then it answers which TLBI is the only cover of which breaks
  (:meth:`CallBreaks.sole_cover`), and what a changed level hint leaves
  uncovered (:meth:`CallBreaks.uncovered_by_level`);
* :func:`needs_bbm` says whether replacing one valid entry by another needs
  break-before-make at all.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from ptreplay.effects import Pte, Tlbi
from ptreplay.model.geometry import kvm_pgd_pages

__all__ = ["TableGeometry", "Break", "CallBreaks", "needs_bbm", "grants_more", "level_shift"]

PAGE_SHIFT = 12
PAGE_MASK = (1 << PAGE_SHIFT) - 1
#: output address bits of a descriptor (4 KiB granule, 48-bit OA)
OA_MASK = 0x0000_FFFF_FFFF_F000
#: MemAttr[3:0] (bits 5:2), SH[1:0] (bits 9:8), Contiguous (bit 52): changing any of them
#: on a live entry needs break-before-make (D8.14.1); S2AP, AF, DBM, XN and the software
#: bits do not.
BBM_ATTRS = (0xF << 2) | (0x3 << 8) | (1 << 52)
#: S2AP (bits 7:6: W, R) and XN (bits 54:53)
S2AP = 0x3 << 6
XN = 0x3 << 53


def level_shift(level: int) -> int:
    """log2 of the IPA size an entry at ``level`` maps (4 KiB granule)."""
    return PAGE_SHIFT + 9 * (3 - level)


def _is_table(pte: int, level: int) -> bool:
    return level < 3 and pte & 3 == 3


def needs_bbm(old: int, new: int, level: int) -> bool:
    """Whether replacing valid ``old`` by valid ``new`` at ``level`` needs break-before-make.

    D8.14.1: a change of output address, of block size (table <-> block), of memory
    type or shareability, or of the Contiguous hint does; a change of permissions, of
    the Access flag or of software bits does not.
    """
    if old == new:
        return False
    if _is_table(old, level) or _is_table(new, level):
        return not (_is_table(old, level) and _is_table(new, level)
                    and old & OA_MASK == new & OA_MASK)
    oa = OA_MASK & ~((1 << level_shift(level)) - 1)
    return bool((old ^ new) & (oa | BBM_ATTRS))


def grants_more(old: int, new: int) -> bool:
    """Whether a cached ``old`` leaf allows an access ``new`` does not (read, write or
    execute permission taken away): a stale ``old`` in a TLB is then a hole."""
    return bool(old & ~new & S2AP or new & ~old & XN)


class TableGeometry:
    """Where every table page of the synthetic host's roots sits.

    Pages are named by kernel VA (as entry stores name their entries); a page
    is (level, first IPA). A pgd is registered from its root, a table page
    when a table entry pointing at it is stored. A page freed and reused is
    registered again when it is linked again.

    :param linear_offset: ``virt - phys`` of the linear map.
    """

    def __init__(self, linear_offset: int) -> None:
        self.linear_offset = linear_offset
        self.pages: dict[int, tuple[int, int]] = {}
        self._pgds: dict[int, int] = {}

    def add_root(self, root_id: int, pgd: int, ia_bits: int, start_level: int) -> None:
        """Register the (concatenated) pgd pages of a root, once per pgd."""
        if not pgd or self._pgds.get(root_id) == pgd:
            return
        self._pgds[root_id] = pgd
        span = 512 << level_shift(start_level)
        for k in range(kvm_pgd_pages(ia_bits, start_level)):
            self.pages[pgd + (k << PAGE_SHIFT)] = (start_level, k * span)

    def store(self, ptep: int, new: int) -> tuple[int, int, int] | None:
        """The entry ``ptep`` as ``(level, first IPA, end IPA)``, or None if its page is
        not known; a table entry stored registers the table it points at."""
        info = self.pages.get(ptep & ~PAGE_MASK)
        if info is None:
            return None
        level, base = info
        shift = level_shift(level)
        lo = base + (((ptep & PAGE_MASK) >> 3) << shift)
        if _is_table(new, level):
            self.pages[(new & OA_MASK) + self.linear_offset] = (level + 1, lo)
        return level, lo, lo + (1 << shift)


class Break:
    """A valid entry written invalid in a call: pending until a TLBI covers it."""

    __slots__ = ("pos", "ptep", "old", "level", "lo", "hi", "table", "missed", "done_by")

    def __init__(self, pos: int, ptep: int, old: int, level: int, lo: int, hi: int) -> None:
        self.pos = pos
        self.ptep = ptep
        self.old = old
        self.level = level
        self.lo = lo
        self.hi = hi
        self.table = _is_table(old, level)
        #: a TLBI targeted it but did not cover it (a level hint), or hit nothing at all
        #: while it was pending
        self.missed = False
        #: position of the TLBI that completed it, or None
        self.done_by: int | None = None


class CallBreaks:
    """The breaks, TLBIs and makes of one call (see the module docstring).

    :param effects: the call's records in order (``Pte``/``Tlbi`` are looked at, the
        rest skipped; ``None`` placeholders too).
    :param geometry: the host's table geometry (updated by the call's stores).
    :param no_hint: TLBI ``level`` values that carry no level hint (the profile's).
    """

    def __init__(self, effects: Sequence[object], geometry: TableGeometry,
                 no_hint: frozenset[int]) -> None:
        self.no_hint = no_hint
        self.breaks: list[Break] = []
        #: positions of the TLBIs, and per TLBI the breaks it completed
        self.tlbis: dict[int, Tlbi] = {}
        self.completed: dict[int, list[Break]] = {}
        #: (ipa, position) of TLBIs by IPA, sorted; positions of whole-VMID/range TLBIs
        self._by_ipa: list[tuple[int, int]] = []
        self._wide: list[int] = []
        self._no_hit: list[int] = []  # TLBIs that covered no pending break
        #: (position, level, lo, hi, ptep, new) of invalid entries made valid
        self.makes: list[tuple[int, int, int, int, int, int]] = []
        #: an entry store the geometry could not place: nothing here is a candidate
        self.unknown = False
        pending: list[Break] = []
        for pos, e in enumerate(effects):
            t = type(e)
            if t is Pte:
                self._store(pos, e, geometry, pending)  # type: ignore[arg-type]
            elif t is Tlbi:
                self._tlbi(pos, e, pending)  # type: ignore[arg-type]
        self._by_ipa.sort()

    def _store(self, pos: int, e: Pte, geometry: TableGeometry, pending: list[Break]) -> None:
        where = geometry.store(e.ptep, e.new)
        if where is None:
            self.unknown = True
            return
        level, lo, hi = where
        if e.old & 1 and not e.new & 1:
            b = Break(pos, e.ptep, e.old, level, lo, hi)
            self.breaks.append(b)
            pending.append(b)
        elif e.new & 1 and not e.old & 1:
            self.makes.append((pos, level, lo, hi, e.ptep, e.new))

    def _tlbi(self, pos: int, t: Tlbi, pending: list[Break]) -> None:
        self.tlbis[pos] = t
        if t.kind in ("vmid_ipa", "vmid_ipa_nsh") and t.ipa is not None:
            self._by_ipa.append((t.ipa, pos))
        else:
            self._wide.append(pos)
        done = []
        for b in pending:
            rel = self.relation(t, b)
            if rel == "cover":
                done.append(b)
            elif rel == "near":
                b.missed = True
        if not done:
            self._no_hit.append(pos)
            for b in pending:
                b.missed = True  # a TLBI meant for none of them: a miss by address
        for b in done:
            b.done_by = pos
            pending.remove(b)
        self.completed[pos] = done

    def relation(self, t: Tlbi, b: Break) -> str | None:
        """``cover`` (``t`` invalidates what ``b``'s entry may have cached), ``near``
        (it targets ``b``'s IPA but with a level hint that need not invalidate it, or
        not broadcast), or None (it is about other addresses)."""
        if t.kind == "vmid":
            return "cover"
        if t.kind == "vmid_range":
            lo = t.ipa or 0
            hi = lo + ((t.pages or 0) << PAGE_SHIFT)
            return "cover" if lo < b.hi and hi > b.lo else None
        if t.ipa is None or not b.lo <= t.ipa < b.hi:
            return None
        if t.kind != "vmid_ipa":
            return "near"
        hint = None if t.level is None or t.level in self.no_hint else t.level
        if b.table:
            return "cover" if hint is None else "near"
        return "cover" if hint is None or hint == b.level else "near"

    def _later_related(self, b: Break, after: int, covering_only: bool) -> bool:
        """Whether a TLBI after position ``after`` covers (or targets) ``b``."""
        if self._wide and self._wide[-1] > after:
            for pos in self._wide:
                if pos > after and (not covering_only
                                    or self.relation(self.tlbis[pos], b) == "cover"):
                    return True
        i = bisect_right(self._by_ipa, (b.lo, -1))
        while i < len(self._by_ipa) and self._by_ipa[i][0] < b.hi:
            pos = self._by_ipa[i][1]
            if pos > after and (not covering_only
                                or self.relation(self.tlbis[pos], b) == "cover"):
                return True
            i += 1
        return False

    def _made_over(self, b: Break, after: int) -> bool:
        """Whether a coarser entry over ``b``'s range is made valid after ``after`` (the
        checkers would call that a make over unclean children, not a missing TLBI)."""
        return any(pos > after and level < b.level and lo < b.hi and hi > b.lo
                   for pos, level, lo, hi, _, _ in self.makes)

    def harmless(self, b: Break) -> bool:
        """Whether a stale TLB entry of ``b`` could do no harm: the call makes the same
        entry valid again with the same output and attributes, only adding permissions or
        the Access flag (the kernel broke it where D8.14.1 needs no break)."""
        for pos, _level, _lo, _hi, ptep, new in self.makes:
            if pos > b.pos and ptep == b.ptep:
                return not needs_bbm(b.old, new, b.level) and not grants_more(b.old, new)
        return False

    def sole_cover(self, pos: int) -> list[Break]:
        """The breaks left with no TLBI at all if the TLBI at ``pos`` were not issued.

        Empty unless the removal is a clean missing-TLBI bug: the TLBI completed at
        least one break; every break it completed is a leaf entry that no other TLBI
        of the call covers or targets, that no earlier TLBI missed, that no coarser
        entry is made over later, and whose stale translation would be harmful (not
        :meth:`harmless`); and no later TLBI of the call hits nothing (which would read
        as a TLBI at a wrong address).
        """
        if self.unknown:
            return []
        done = self.completed.get(pos) or []
        if not done:
            return []
        if self._no_hit and self._no_hit[-1] > pos:
            return []
        for b in done:
            if (b.table or b.missed or self.harmless(b)
                    or self._later_related(b, pos, covering_only=False)
                    or self._made_over(b, pos)):
                return []
        return done

    def uncovered_by_level(self, pos: int, level: int) -> list[Break]:
        """The breaks left uncovered if the TLBI at ``pos`` carried level hint ``level``.

        Empty unless every break it completed is a leaf entry at another level than
        ``level`` (so the hint is wrong for each), none is covered by another TLBI of
        the call, no coarser entry is made over it later, and its stale translation
        would be harmful (not :meth:`harmless`).
        """
        if self.unknown:
            return []
        t = self.tlbis[pos]
        done = self.completed.get(pos) or []
        if not done:
            return []
        wrong = Tlbi(t.kind, t.ipa, level, t.pages)
        for b in done:
            if (b.table or self.harmless(b) or self.relation(wrong, b) != "near"
                    or self._later_related(b, pos, covering_only=True)
                    or self._made_over(b, pos)):
                return []
        return done
