"""Break-before-make checker.

Follows DDI 0487 J.a D8.14.1 ("Using break-before-make when updating
translation table entries"). A live valid entry may be replaced by a
different valid one only when the change needs no break (permissions, Access
flag, DBM, software bits: :func:`ptreplay.checks.pte.bbm_reason`). Otherwise
the sequence is: write an invalid entry; DSB (makes it visible to walkers);
TLBI covering the entry's IPA (and, for stage 2, the combined stage-1
entries) for its VMID, at its level or with no level hint; DSB ISH
(completes the invalidation); only then the new entry. Until the final DSB
the entry is *unclean*: its old translation may still be cached, and a table
page it pointed at may still be walked, so that page must not be freed,
reused or modified.

Per-CPU ordering: the sequence counts only when the CPU that wrote the
invalid entry issues the barriers and the TLBI (another CPU's DSB does not
order this CPU's store). Non-broadcast maintenance (local TLBI, DSB NSH)
does not complete a break for the other CPUs.

Effect logs carry whole TLB-flush hypercalls (one ``{"ev":"tlbi",...}``
line stands for ``dsb ishst; tlbi ipas2e1is; dsb ish; tlbi vmalle1is; dsb
ish; isb``): :meth:`BbmChecker.on_tlbi_sequence` treats them as invalidated
and completed. Casemate logs carry single instructions:
:meth:`BbmChecker.on_barrier` and :meth:`BbmChecker.on_tlbi` step the
sequence like casemate does.

A break that is not completed is reported where it matters: when the entry is
made valid again, when a table page it unlinked is freed or reused, or (for
effect streams, whose operations must leave every entry clean) when its
operation returns. The finding's kind says what was wrong with the TLBIs the
CPU did issue (wrong VMID, IPA or level hint; before the break; before the
DSB; not broadcast) or that there was none.
"""

from __future__ import annotations

from typing import NamedTuple

from ptreplay.checks.context import Context
from ptreplay.checks.pte import (
    STAGE2,
    bbm_reason,
    describe_pte,
    granule_shift,
    pte_bad_encoding,
    pte_is_table,
    table_addr,
)
from ptreplay.checks.shadow import Page, Root, Shadow
from ptreplay.checks.stream import Operation

__all__ = ["TlbiOp", "BbmChecker", "Unclean"]

BROKEN, DSBED, TLBI_S2, TLBI_S2_DSB, TLBI_ALL = range(5)
_DSB_SHAPES: dict[str, tuple[bool, bool, bool]] = {}     # opt -> (local, store-only, load-only)

_MISS_PRIORITY = ("tlbi-wrong-vmid", "tlbi-wrong-level", "tlbi-wrong-ipa", "tlbi-not-broadcast",
                  "bbm-missing-dsb")


class TlbiOp(NamedTuple):
    """One TLB invalidation, decoded.

    :param scope: ``all`` (every VMID), ``vmid`` (one VMID/ASID), ``ipa`` (one
        address), ``range`` (``[ipa, end)``).
    :param regime: ``el1`` (EL1&0: stage-2 tables) or ``el2`` (EL2 stage 1).
    :param stage: ``s2`` (stage-2-only entries), ``s1`` (stage-1 and combined
        entries only), ``both``.
    :param root: the stage-2 it targets, when the input says so by root.
    :param vmid: the VMID (or ASID) it targets, when the input says so by id.
    :param level: TTL level hint, None when there is none.
    :param last_level: a last-level-only variant (``*le*``).
    :param broadcast: an Inner Shareable (``*is``) variant.
    :param index: event index of the TLBI.
    :param text: how to name it in explanations.
    """

    scope: str
    regime: str = "el1"
    stage: str = "both"
    root: Root | None = None
    vmid: int | None = None
    ipa: int | None = None
    end: int | None = None
    level: int | None = None
    last_level: bool = False
    broadcast: bool = True
    index: int | None = None  # type: ignore[assignment]  # (shadows tuple.index)
    text: str = "TLBI"


class Unclean:
    """An entry written invalid whose break is not complete yet."""

    __slots__ = ("ptep", "page", "idx", "cpu", "root", "level", "ipa_lo", "ipa_hi", "old",
                 "was_table", "subtree_live", "index", "line", "op", "stage", "misses", "child",
                 "moved_on")

    def __init__(self, ptep: int, page: Page, idx: int, cpu: int, root: Root, level: int,
                 ipa_lo: int, ipa_hi: int, old: int, was_table: bool, index: int | None):
        self.ptep = ptep
        self.page = page
        self.idx = idx
        self.cpu = cpu
        self.root = root
        self.level = level
        self.ipa_lo = ipa_lo
        self.ipa_hi = ipa_hi
        self.old = old
        self.was_table = was_table
        self.subtree_live = False
        self.index = index
        self.line: int | None = None
        self.op: Operation | None = None
        self.stage = BROKEN
        self.misses: list[tuple[str, int | None, str]] = []
        self.child: Page | None = None
        self.moved_on = False     # its CPU released a lock after the break


class BbmChecker:
    """Tracks unclean entries and reports break-before-make violations.

    :param shadow: the shadow tables (read before each store is applied).
    :param ctx: where findings go.
    :param op_scoped: True for effect streams: every break must be complete
        when its operation returns.
    """

    def __init__(self, shadow: Shadow, ctx: Context, op_scoped: bool):
        self.shadow = shadow
        self.ctx = ctx
        self.op_scoped = op_scoped
        self.page_shift = shadow.page_shift
        self.unclean: dict[int, Unclean] = {}
        self._op_tlbis: list[tuple[int, TlbiOp]] = []
        self._op_breaks: list[Unclean] = []

    # --- stores ---------------------------------------------------------------------------
    def on_store(self, page: Page, idx: int, ptep: int, old: int, new: int, cpu: int) -> None:
        """A store of ``new`` over ``old`` into the live table page ``page``."""
        level = page.level
        assert level is not None and page.root is not None
        if new & 1 and pte_bad_encoding(new, level, self.page_shift):
            lo, hi = self.shadow.entry_range(page, idx)
            self.ctx.report("invalid-descriptor",
                            f"{new:#x} written at level {level} is a reserved encoding "
                            f"(translates as a fault on some CPUs, UNPREDICTABLE on others)",
                            root=page.root.pgd, ipa=(lo, hi), table=page.pa, entry=ptep,
                            level=level)
        unclean = self.unclean
        if unclean and new != old:
            broken = self.broken_ancestor(page)
            if broken is not None and (old & 1 or new & 1):
                self._report_frozen(page, idx, ptep, old, new, broken)
        if old & 1:
            if new & 1:
                reason = bbm_reason(old, new, level, page.root.stage, self.page_shift)
                if reason is not None:
                    lo, hi = self.shadow.entry_range(page, idx)
                    stage = page.root.stage
                    self.ctx.report(
                        "bbm-valid-to-valid",
                        f"live entry {describe_pte(old, level, stage, self.page_shift)} replaced "
                        f"by {describe_pte(new, level, stage, self.page_shift)} without "
                        f"break-before-make: {reason}",
                        root=page.root.pgd, ipa=(lo, hi), pa=self._pa_range(old, level),
                        table=page.pa, entry=ptep, level=level)
                return
            self._break(page, idx, ptep, old, level, cpu)
            return
        if new & 1:
            u = unclean.get(ptep)
            if u is not None:
                self._drop(u)
                made = describe_pte(new, level, page.root.stage, self.page_shift)
                self._report_unclean(u, "bbm-missing-tlbi",
                                     f"made valid ({made}) at event {self.ctx.index}",
                                     at_current=True)
            if unclean:
                self._check_overlap(page, idx, ptep, new, level)

    def _check_overlap(self, page: Page, idx: int, ptep: int, new: int, level: int) -> None:
        """A valid entry is made: no other break of its IPA range may be pending."""
        lo, hi = self.shadow.entry_range(page, idx)
        root = page.root
        for v in list(self.unclean.values()):
            if v.root is not root or v.ipa_hi <= lo or v.ipa_lo >= hi or v.level < level:
                continue
            self._drop(v)
            what = (f"entry {ptep:#x} covering IPA {lo:#x}-{hi:#x} was made valid "
                    f"({describe_pte(new, level, root.stage, self.page_shift)}) at event "
                    f"{self.ctx.index}")
            if v.level > level:
                self._report_unclean(v, "bbm-unclean-children", what, at_current=True,
                                     kind_forced=True)
            else:
                self._report_unclean(v, "bbm-missing-tlbi", what, at_current=True)

    def _break(self, page: Page, idx: int, ptep: int, old: int, level: int, cpu: int) -> None:
        lo, hi = self.shadow.entry_range(page, idx)
        was_table = pte_is_table(old, level)
        u = Unclean(ptep, page, idx, cpu, page.root, level, lo, hi, old,  # type: ignore[arg-type]
                    was_table, self.ctx.index)
        u.op = self.ctx.op
        u.line = self.ctx.line
        if was_table:
            child = self.shadow.child_of(old)
            u.child = child
            u.subtree_live = self.shadow.live_leaves_below(child)
        self.unclean[ptep] = u
        if self.op_scoped:
            self._op_breaks.append(u)

    def apply_store(self, page: Page, idx: int, ptep: int, old: int, new: int) -> Page | None:
        """Write ``new`` into the shadow and follow table links; return an unlinked table.

        Clearing or replacing a table descriptor unlinks its table: it stays
        reachable by stale walks (``detached_by``) while the break is unclean,
        and stops being a table page otherwise. Storing a table descriptor links
        the table it points at, unless that page is still in use elsewhere
        (:meth:`on_link` reports it).
        """
        shadow = self.shadow
        if new:
            page.vals[idx] = new
        else:
            page.vals.pop(idx, None)
        unlinked = None
        if page.root is None and not page.known and old != new:
            # a table of unknown place (the stream began after it was linked): follow its
            # links without knowing levels, so its children are not taken for leaks
            if old & 3 == 3:
                child = shadow.pages.get(table_addr(old, shadow.page_shift) >> shadow.page_shift)
                if child is not None and child.parent == ptep:
                    child.parent = None
                    unlinked = child
            if new & 3 == 3:
                # 0b11 is a table at levels 0-2 and a page at level 3: only a page the
                # stream allocated (a table page) can be the target of a table entry
                child = shadow.pages.get(table_addr(new, shadow.page_shift) >> shadow.page_shift)
                if child is not None and child.known and child.live:
                    child.parent = ptep
            return unlinked
        if page.root is not None and page.level is not None and page.level < 3 and old != new:
            if old & 3 == 3:
                child = shadow.child_of(old)
                if child.parent == ptep:
                    child.parent = None
                    u = self.unclean.get(ptep)
                    if u is not None and u.child is child:
                        child.detached_by = ptep
                    else:
                        shadow.release_subtree(child)
                    unlinked = child
            if new & 3 == 3:
                child = shadow.child_of(new)
                if self.on_link(page, idx, ptep, child):
                    shadow.link(page, idx, child, ptep)
        return unlinked

    def broken_ancestor(self, page: Page) -> Unclean | None:
        """The unclean break that unlinked ``page`` or one of the tables above it."""
        pages = self.shadow.pages
        shift = self.page_shift
        node: Page | None = page
        depth = 0
        while node is not None and depth < 8:
            if node.detached_by is not None:
                u = self.unclean.get(node.detached_by)
                if u is not None:
                    return u
            if node.parent is None:
                return None
            node = pages.get(node.parent >> shift)
            depth += 1
        return None

    def _report_frozen(self, page: Page, idx: int, ptep: int, old: int, new: int,
                       broken: Unclean) -> None:
        level = page.level
        lo, hi = self.shadow.entry_range(page, idx)
        self.ctx.report(
            "write-under-broken-table",
            f"entry {ptep:#x} changed from {old:#x} to {new:#x} while the table entry "
            f"{broken.ptep:#x} that unlinked its table (event {broken.index}) was not TLB-clean",
            root=page.root.pgd if page.root else None, ipa=(lo, hi), table=page.pa, entry=ptep,
            level=level, related=_idx(broken.index))

    # --- table pages ----------------------------------------------------------------------
    def on_link(self, page: Page, idx: int, ptep: int, child: Page) -> bool:
        """A table descriptor pointing at ``child`` is being stored; False if it is in use.

        A table still reachable from the not-yet-clean break that unlinked it
        is reported and then linked anyway (that break counts as reported).
        """
        reuse = None
        if child.is_pgd:
            why = f"it is a pgd page of the stage-2 at {child.root.pgd:#x}" if child.root \
                else "it is a pgd page"
        elif child.parent is not None and child.parent != ptep:
            why = f"it is still linked from entry {child.parent:#x}"
        elif child.detached_by is not None and child.detached_by != ptep \
                and child.detached_by in self.unclean:
            reuse = self.unclean[child.detached_by]
            why = (f"entry {child.detached_by:#x} unlinked it at event {reuse.index} but that "
                   f"break is not TLB-clean yet")
        else:
            return True
        lo, hi = self.shadow.entry_range(page, idx)
        self.ctx.report("table-double-use",
                        f"table page {child.pa:#x} linked at entry {ptep:#x} while {why}",
                        root=page.root.pgd if page.root else None, ipa=(lo, hi),
                        table=child.pa, entry=ptep, level=page.level,
                        related=self._related(reuse) if reuse is not None else ())
        if reuse is not None:
            self._drop(reuse)
            return True
        return False

    def on_free(self, page: Page, how: str = "freed") -> bool:
        """``page`` is being freed or released; False (and a finding) if a stale walk may use it."""
        if not self.unclean:
            return True
        u = self.broken_ancestor(page)
        if u is None:
            return True
        kind, why = self._diagnose(u, "table-freed-unclean")
        if kind == "bbm-missing-tlbi":
            kind = "table-freed-unclean"
        self.ctx.report(
            kind,
            f"table page {page.pa:#x} {how} while the break of entry {u.ptep:#x} "
            f"(event {u.index}) that unlinked it is not TLB-clean, so a walk may still use it: "
            f"{why}",
            root=u.root.pgd, ipa=(u.ipa_lo, u.ipa_hi), table=page.pa, entry=u.ptep,
            level=u.level, related=self._related(u))
        self._drop(u)
        return False

    # --- barriers and TLBIs -----------------------------------------------------------------
    def on_barrier(self, cpu: int, opt: str) -> None:
        """``dsb(opt)`` on ``cpu`` (casemate logs and traces; effect-log DSBs too)."""
        if not self.unclean:
            return
        shape = _DSB_SHAPES.get(opt)
        if shape is None:
            shape = _DSB_SHAPES[opt] = (opt.startswith("nsh"), opt.endswith("st"),
                                        opt.endswith("ld"))
        local, store_only, load_only = shape
        for u in tuple(self.unclean.values()):
            if u.cpu != cpu:
                continue
            if local:
                u.misses.append(("tlbi-not-broadcast", self.ctx.index,
                                 f"DSB {opt.upper()} at event {self.ctx.index} only orders "
                                 f"this CPU"))
                continue
            if u.stage == BROKEN:
                if not load_only:
                    u.stage = DSBED
            elif u.stage in (TLBI_S2, TLBI_ALL):
                if store_only or load_only:
                    u.misses.append(("bbm-missing-dsb", self.ctx.index,
                                     f"DSB {opt.upper()} at event {self.ctx.index} does not wait "
                                     f"for the TLBI to complete"))
                elif u.stage == TLBI_S2:
                    u.stage = TLBI_S2_DSB
                else:
                    self._complete(u)

    def on_tlbi(self, cpu: int, t: TlbiOp) -> None:
        """One TLBI instruction on ``cpu`` (casemate logs)."""
        if self.op_scoped:
            self._op_tlbis.append((cpu, t))
        if not self.unclean:
            return
        for u, ok in self._match(cpu, t):
            if not ok:
                continue
            if u.stage == BROKEN:
                u.misses.append(("bbm-missing-dsb", t.index,
                                 f"{t.text} at event {t.index} was issued before a DSB made the "
                                 f"invalid entry visible"))
            elif u.stage == DSBED:
                if u.root.stage != STAGE2 or t.stage == "both":
                    u.stage = TLBI_ALL
                elif t.stage == "s2":
                    u.stage = TLBI_S2
            elif u.stage == TLBI_S2_DSB and t.stage in ("s1", "both"):
                u.stage = TLBI_ALL

    def on_tlbi_sequence(self, cpu: int, t: TlbiOp) -> None:
        """A whole TLB-flush hypercall (effect logs): invalidated and completed."""
        if self.op_scoped:
            self._op_tlbis.append((cpu, t))
        if not self.unclean:
            return
        for u, ok in self._match(cpu, t):
            if ok:
                self._complete(u)

    def _match(self, cpu: int, t: TlbiOp) -> list[tuple[Unclean, bool]]:
        """The unclean entries of ``cpu`` and whether ``t`` covers each.

        A TLBI that misses an entry is remembered as a near miss of it (wrong
        VMID, level hint, ...), except a miss by address when the TLBI covers
        another entry: then it was meant for that one.
        """
        results = []
        misses = []
        hit = False
        for u in list(self.unclean.values()):
            if u.cpu != cpu:
                continue
            ok, miss, why = self._covers(t, u)
            results.append((u, ok))
            hit = hit or ok
            if not ok and miss:
                misses.append((u, miss, why))
        for u, miss, why in misses:
            if miss != "tlbi-wrong-ipa" or not hit:
                u.misses.append((miss, t.index, why))
        return results

    def _covers(self, t: TlbiOp, u: Unclean) -> tuple[bool, str | None, str]:
        root = u.root
        if (root.stage == STAGE2) != (t.regime == "el1"):
            return False, None, ""
        at = f"{t.text} at event {t.index}" if t.index is not None else t.text
        if t.scope != "all":
            if t.root is not None and t.root is not root:
                return False, "tlbi-wrong-vmid", (f"{at} invalidated the stage-2 at "
                                                  f"{t.root.pgd:#x}, not {root.pgd:#x}")
            if t.vmid is not None and root.vmid is not None and t.vmid != root.vmid:
                name = "VMID" if root.stage == STAGE2 else "ASID"
                return False, "tlbi-wrong-vmid", (f"{at} invalidated {name} {t.vmid}, the "
                                                  f"entry's table has {name} {root.vmid}")
        if t.scope in ("ipa", "range"):
            lo = t.ipa or 0
            hi = t.end if t.scope == "range" and t.end is not None else lo + 1
            if hi <= u.ipa_lo or lo >= u.ipa_hi:
                return False, "tlbi-wrong-ipa", (f"{at} covered {lo:#x}-{hi:#x}, not the "
                                                 f"entry's {u.ipa_lo:#x}-{u.ipa_hi:#x}")
            if u.was_table:
                whole = t.scope == "range" and lo <= u.ipa_lo and hi >= u.ipa_hi
                if t.level is not None or t.last_level:
                    hint = f"level hint {t.level}" if t.level is not None else "last-level only"
                    return False, "tlbi-wrong-level", (
                        f"{at} carried a {hint} but the entry was a table entry: level hints "
                        f"describe leaf entries, so cached walks through it need not be "
                        f"invalidated")
                if u.subtree_live and not whole:
                    return False, "tlbi-wrong-ipa", (
                        f"{at} did not cover the whole range of a table entry that had valid "
                        f"leaves below it")
            else:
                if t.level is not None and t.level != u.level:
                    return False, "tlbi-wrong-level", (f"{at} carried level hint {t.level}, the "
                                                       f"entry is at level {u.level}")
        if not t.broadcast:
            return False, "tlbi-not-broadcast", f"{at} is not broadcast (not Inner Shareable)"
        return True, None, ""

    def _drop(self, u: Unclean) -> None:
        """Stop tracking ``u`` after reporting it (one finding per broken sequence)."""
        self.unclean.pop(u.ptep, None)
        if u.was_table and u.child is not None and u.child.detached_by == u.ptep:
            self.shadow.release_subtree(u.child)

    def _complete(self, u: Unclean) -> None:
        """The break of ``u`` is TLB-clean: its old translation and walks are gone."""
        del self.unclean[u.ptep]
        if u.was_table and u.child is not None and u.child.detached_by == u.ptep:
            self.shadow.release_subtree(u.child)

    def _is_below(self, page: Page, top: Page) -> bool:
        pages = self.shadow.pages
        node: Page | None = page
        depth = 0
        while node is not None and depth < 8:
            if node is top:
                return True
            if node.parent is None:
                return False
            node = pages.get(node.parent >> self.page_shift)
            depth += 1
        return False

    # --- operation boundaries ---------------------------------------------------------------
    def on_op_end(self) -> None:
        """The operation returned: every break it made must be complete (effect streams)."""
        for u in self._op_breaks:
            if self.unclean.get(u.ptep) is not u:
                continue
            self._drop(u)
            early = [t for cpu, t in self._op_tlbis
                     if cpu == u.cpu and t.index is not None and u.index is not None
                     and t.index < u.index and self._covers(t, u)[0]]
            if early:
                t = early[-1]
                u.misses.append(("tlbi-before-break", t.index, ""))
                self._report_unclean(u, "tlbi-before-break",
                                     f"the only covering TLBI ({t.text} at event {t.index}) came "
                                     f"before the invalid write", kind_forced=True)
            else:
                self._report_unclean(u, "bbm-missing-tlbi", "the operation returned")
        self._op_breaks.clear()
        self._op_tlbis.clear()

    def on_unlock(self, cpu: int) -> None:
        """``cpu`` left a critical section: its pending breaks were meant to be done."""
        for u in self.unclean.values():
            if u.cpu == cpu:
                u.moved_on = True

    def on_end(self) -> None:
        """The input ended: report breaks never completed (casemate logs).

        Certain when the CPU left its critical section after the break;
        uncertain when the log may just have been cut in the middle of it.
        """
        for u in list(self.unclean.values()):
            self._drop(u)
            self._report_unclean(u, "bbm-missing-tlbi", "the log ended", at_current=True,
                                 uncertain=not u.moved_on)

    # --- reporting ------------------------------------------------------------------------
    def _diagnose(self, u: Unclean, default: str) -> tuple[str, str]:
        if u.stage in (TLBI_S2, TLBI_ALL):
            return "bbm-missing-dsb", "its TLBI was never completed by a DSB ISH"
        if u.stage == TLBI_S2_DSB:
            return "bbm-missing-tlbi", ("the stage-2 TLBI was not followed by the stage-1 "
                                        "invalidation (TLBI VMALLE1IS) of the combined entries")
        for kind in _MISS_PRIORITY:
            for miss, _index, why in u.misses:
                if miss == kind:
                    return kind, why
        return default, "no TLBI covering it was issued by the CPU that invalidated it"

    def _report_unclean(self, u: Unclean, default: str, what: str, at_current: bool = False,
                        kind_forced: bool = False, uncertain: bool = False) -> None:
        if kind_forced:
            kind, why = default, ""
        else:
            kind, why = self._diagnose(u, default)
        stage = u.root.stage
        text = (f"entry {u.ptep:#x} ({describe_pte(u.old, u.level, stage, self.page_shift)}) was "
                f"invalidated at event {u.index}; {what} before a TLBI covering "
                f"IPA {u.ipa_lo:#x} at level {u.level} completed")
        if why:
            text += f": {why}"
        index = self.ctx.index if at_current else u.index
        line = self.ctx.line if at_current else u.line
        op = None if at_current else u.op
        flags = (u.op.args.get("flags") if u.op is not None else None) or ()
        if isinstance(flags, list) and "SKIP_BBM_TLBI" in flags:
            text += ("; the caller asked to skip the TLBI (SKIP_BBM_TLBI): correct only if no "
                     "translation of this range can be cached")
            uncertain = True
        self.ctx.report(kind, text, index=index, line=line, op=op, root=u.root.pgd,
                        ipa=(u.ipa_lo, u.ipa_hi), pa=self._pa_range(u.old, u.level),
                        table=u.page.pa, entry=u.ptep, level=u.level, cpu=u.cpu,
                        related=self._related(u), uncertain=uncertain)

    @staticmethod
    def _related(u: Unclean) -> tuple[int, ...]:
        """The break and the TLBIs/barriers that tried to complete it."""
        found = {i for i in (u.index, *(m[1] for m in u.misses)) if i is not None}
        return tuple(sorted(found))

    def _pa_range(self, pte: int, level: int) -> tuple[int, int] | None:
        if not pte & 1 or pte_is_table(pte, level):
            return None
        shift = granule_shift(level, self.page_shift)
        oa = pte & ((1 << 48) - 1) & ~((1 << shift) - 1)
        return oa, oa + (1 << shift)


def _idx(index: int | None) -> tuple[int, ...]:
    return () if index is None else (index,)
