"""The checker stack for streams of operations and effects.

:class:`EffectChecker` takes :class:`~ptreplay.checks.stream.Step` records
one at a time (an effect log read line by line, the replay of a trace, or
``ptreplay model run`` piped in), keeps the shadow tables up to date, and
runs every checker on every effect: break-before-make, refcounts and
table-page lifetimes, ownership annotations, and (where the step carries
observed effects) the differential checker. Memory grows with the live page
tables, not with the stream.

Usage::

    checker = EffectChecker(StreamInfo("s.jsonl", "linux-6.1"))
    for step in steps:
        checker.feed(step)
    findings = checker.finish()
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ptreplay.checks.bbm import BbmChecker, TlbiOp
from ptreplay.checks.context import Context
from ptreplay.checks.differential import DifferentialChecker
from ptreplay.checks.findings import Finding, finding_sort_key
from ptreplay.checks.ownership import OwnershipChecker
from ptreplay.checks.pte import STAGE2
from ptreplay.checks.refcount import RefcountChecker
from ptreplay.checks.shadow import Root, Shadow
from ptreplay.checks.stream import Operation, Step, StreamInfo, op_int
from ptreplay.effects import (
    Alloc,
    Cmo,
    Dsb,
    Effect,
    Free,
    Get,
    HarnessError,
    Info,
    Isb,
    Pte,
    Put,
    Rcu,
    Table,
    Tlbi,
    Warn,
)
from ptreplay.errors import TraceFormatError
from ptreplay.model.profiles import get_profile

__all__ = ["EffectChecker", "check_steps", "default_start_level", "pgd_pages", "MAX_PAGES"]

#: Most pages one alloc/free effect or one pgd may span: a pgd has at most 16
#: concatenated pages, single allocations are one page; more is a broken input,
#: not a reason to allocate memory.
MAX_PAGES = 1024


def default_start_level(ia_bits: int, page_shift: int = 12) -> int:
    """``kvm_get_vtcr()``'s start level for ``ia_bits`` (4K: 2, 1 or 0)."""
    levels = max(2, (ia_bits - 8) // (page_shift - 3))
    return 4 - min(levels, 4)


def pgd_pages(ia_bits: int, start_level: int, page_shift: int = 12) -> int:
    """``kvm_pgd_pages()``: concatenated pgd pages for ``ia_bits`` at ``start_level``."""
    bits = page_shift - 3
    top_shift = page_shift + (3 - start_level) * bits + bits
    return max(1, 1 << max(0, ia_bits - top_shift))


class EffectChecker:
    """Runs every checker over a stream of steps.

    :param info: the stream's source name, kernel profile and completeness.
    :param on_dump: called with each ``table`` effect of a ``dump`` and the
        shadow (tests compare the two).
    """

    def __init__(self, info: StreamInfo,
                 on_dump: Callable[[Table, Shadow], None] | None = None):
        self.info = info
        self.profile = get_profile(info.profile)
        self.shadow = Shadow(self.profile.page_shift, complete=info.complete)
        self.ctx = Context()
        self.bbm = BbmChecker(self.shadow, self.ctx, op_scoped=True)
        self.refcount = RefcountChecker(self.shadow, self.ctx, complete=info.complete)
        self.ownership = OwnershipChecker(self.shadow, self.ctx, self.profile)
        self.differential = DifferentialChecker(self.ctx)
        self.on_dump = on_dump
        self.current: Root | None = None
        self.fwb: dict[int, bool] = {}        # root pgd -> stage-2 FWB (from init's "fwb")
        self.steps = 0
        self.events = 0
        self._pgd_alloc: tuple[int, int] | None = None
        self._op_root: Root | None = None
        self._cpu = 0
        self._reported_mismatch: set[int] = set()
        self._blind_breaks: list[tuple[int, int, int | None, int | None, int]] = []
        self._dispatch: dict[type, Callable[[Effect], None]] = {
            Pte: self._pte, Tlbi: self._tlbi, Dsb: self._dsb, Isb: _ignore, Cmo: _ignore,
            Alloc: self._alloc, Free: self._free, Get: self._get, Put: self._put,
            Warn: self._warn, Info: self._info, Table: self._table,
            HarnessError: self._harness_error, Rcu: _ignore,
        }

    # --- driving ------------------------------------------------------------------------------
    def feed(self, step: Step) -> None:
        """Check one operation and its effects."""
        ctx = self.ctx
        op = step.op
        self.steps += 1
        ctx.op = op
        self._cpu = op.cpu if op is not None and op.cpu is not None else 0
        ctx.cpu = op.cpu if op is not None else None
        ctx.ts = op.ts if op is not None else None
        if op is not None:
            ctx.index = op.index
            ctx.line = op.line
            self.events += 1
            root = self.shadow.roots.get(op.root) if op.root is not None else self.current
            self._op_root = root
            self.refcount.on_op_start(op, root)
        base = step.effect_base
        indexes = step.effect_indexes
        lines = op is None or op.line is not None
        dispatch = self.dispatch_table()
        for i, effect in enumerate(step.effects):
            if indexes is not None:
                ctx.index = indexes[i]
                ctx.line = ctx.index + 1 if lines else None
            elif base is not None:
                ctx.index = base + i
                ctx.line = ctx.index + 1 if lines else None
            self.events += 1
            handler = dispatch.get(type(effect))
            if handler is not None:
                handler(effect)
        if op is not None:
            ctx.index = op.index
            ctx.line = op.line
        self.differential.check(step)
        self._op_end(op)

    def declare_root(self, pgd: int, ia_bits: int, start_level: int,
                     npages: int | None = None) -> Root:
        """A stage-2 that existed before the stream began (a trace started mid-life).

        Its pgd pages get their geometry, but their entries and refcounts are
        unknown until stores and get/put show them; tables below them are
        unknown until linked in the stream. Findings never rest on what the
        stream has not shown.
        """
        shift = self.profile.page_shift
        if npages is None:
            npages = pgd_pages(ia_bits, start_level, shift)
        root = self.shadow.add_root(pgd, npages, ia_bits, start_level, STAGE2)
        for page in self.shadow.pgd_pages(root):
            page.known = False
            page.live = True
            page.count = None
        if self.current is None:
            self.current = root
        return root

    def feed_partial(self, step: Step) -> None:
        """Check the effects of an operation that has not finished (``maps --at``)."""
        ctx = self.ctx
        op = step.op
        ctx.op = op
        if op is not None:
            root = self.shadow.roots.get(op.root) if op.root is not None else self.current
            self._op_root = root
            self.events += 1
        dispatch = self.dispatch_table()
        for i, effect in enumerate(step.effects):
            if step.effect_base is not None:
                ctx.index = step.effect_base + i
            self.events += 1
            handler = dispatch.get(type(effect))
            if handler is not None:
                handler(effect)

    def dispatch_table(self) -> dict[type, Callable[[Effect], None]]:
        """Effect type -> handler."""
        return self._dispatch

    def finish(self) -> list[Finding]:
        """All findings, in report order."""
        return sorted(self.ctx.findings, key=finding_sort_key)

    # --- operation boundaries -------------------------------------------------------------------
    def _op_end(self, op: Operation | None) -> None:
        if op is not None and op.name == "init" and self._pgd_alloc is not None:
            pa, size = self._pgd_alloc
            if self.shadow.roots.get(pa) is None and _ret_ok(op.ret):
                ia_bits = op_int(op.args, "ia_bits", 40) or 40
                start = op_int(op.args, "start_level")
                if start is None:
                    start = default_start_level(ia_bits, self.profile.page_shift)
                npages = max(1, size >> self.profile.page_shift)
                self.current = self.shadow.add_root(pa, npages, ia_bits, start, STAGE2,
                                                    created=op.index)
                self.fwb[pa] = bool(op.args.get("fwb", False))
        self._pgd_alloc = None
        for b in self._blind_breaks:
            self._report_blind(b, "the operation returned without a TLBI for it")
        self._blind_breaks.clear()
        self.bbm.on_op_end()
        self.refcount.on_op_end()
        self.ownership.flush()
        if op is not None and op.name == "destroy":
            root = self._op_root
            if root is not None:
                self.shadow.drop_root(root)
                if self.current is root:
                    self.current = None

    def _report_blind(self, b: tuple[int, int, int | None, int | None, int], what: str) -> None:
        ptep, old, index, line, cpu = b
        self.ctx.report("bbm-missing-tlbi",
                        f"entry {ptep:#x} ({old:#x}, valid) was invalidated; {what}. Its table "
                        f"predates the stream, so its level and IPA are unknown", index=index,
                        line=line, op=self.ctx.op, cpu=cpu, entry=ptep,
                        table=ptep & ~(self.shadow.page_size - 1), uncertain=True,
                        related=() if index is None else (index,))

    # --- effects --------------------------------------------------------------------------------
    def _pte(self, e: Effect) -> None:
        assert isinstance(e, Pte)
        if not e.ok:
            return
        shadow = self.shadow
        ctx = self.ctx
        ptep = e.ptep & ~7
        page = shadow.pages.get(ptep >> shadow.page_shift)
        if page is None:
            page = shadow.get_or_add(ptep)
            if self.info.complete:
                ctx.report("write-to-non-table",
                           f"store to entry {ptep:#x}, in a page the stream never allocated",
                           entry=ptep, table=page.pa)
        elif not page.live and page.freed:
            ctx.report("write-to-non-table", f"store to entry {ptep:#x} of freed table page "
                       f"{page.pa:#x}", entry=ptep, table=page.pa, level=page.level)
        idx = (ptep >> 3) & shadow.entry_mask
        vals = page.vals
        old = e.old
        new = e.new
        if page.known and vals.get(idx, 0) != old and page.pa not in self._reported_mismatch:
            self._reported_mismatch.add(page.pa)
            ctx.report("store-old-mismatch",
                       f"store to entry {ptep:#x} says it replaced {old:#x}, but the stream's "
                       f"earlier stores left {vals.get(idx, 0):#x}", entry=ptep, table=page.pa,
                       level=page.level, root=page.root.pgd if page.root else None)
        if page.root is not None and page.level is not None:
            self.bbm.on_store(page, idx, ptep, old, new, self._cpu)
            self.ownership.on_store(page, idx, ptep, old, new, ctx.op)
        elif not page.known:
            if old & 1 and not new & 1:
                # a break in a table the stream never placed: its level and IPA are
                # unknown; the next by-address TLBI of its CPU is taken to be its own
                self._blind_breaks.append((ptep, old, ctx.index, ctx.line, self._cpu))
            elif new & 1 and self._blind_breaks:
                for b in self._blind_breaks:
                    if b[0] == ptep:
                        self._blind_breaks.remove(b)
                        self._report_blind(b, f"made valid again ({new:#x}) at event "
                                              f"{ctx.index} without a TLBI in between")
                        break
        self.refcount.on_store(page)
        unlinked = self.bbm.apply_store(page, idx, ptep, old, new)
        if unlinked is not None:
            self.refcount.on_unlink(unlinked)

    def _tlbi(self, e: Effect) -> None:
        assert isinstance(e, Tlbi)
        kind = e.kind
        if kind.startswith("hyp_"):
            return
        level = e.level
        if level is not None and level in self.profile.tlbi_no_level_hints:
            level = None
        index = self.ctx.index
        text = f"TLBI {kind}"
        if e.ipa is not None:
            text += f" {e.ipa:#x}"
        if kind == "vmid":
            t = TlbiOp("vmid", root=self._op_root, index=index, text=text)
        elif kind == "vmid_range":
            end = (e.ipa or 0) + ((e.pages or 0) << self.profile.page_shift)
            t = TlbiOp("range", root=self._op_root, ipa=e.ipa, end=end, index=index, text=text)
        else:
            t = TlbiOp("ipa", root=self._op_root, ipa=e.ipa, level=level,
                       broadcast=not kind.endswith("_nsh"), index=index,
                       text=text + (f" level {e.level}" if e.level is not None else ""))
        self.bbm.on_tlbi_sequence(self._cpu, t)
        if self._blind_breaks:
            cpu = self._cpu
            if t.scope == "ipa":
                mine = [b for b in self._blind_breaks if b[4] == cpu]
                if mine:
                    self._blind_breaks.remove(mine[-1])
            else:
                self._blind_breaks = [b for b in self._blind_breaks if b[4] != cpu]

    def _dsb(self, e: Effect) -> None:
        assert isinstance(e, Dsb)
        self.bbm.on_barrier(self._cpu, e.opt)

    def _too_big(self, what: str, size: int | None) -> None:
        if size is not None and size > MAX_PAGES << self.profile.page_shift:
            raise TraceFormatError(f"{what} of {size:#x} bytes: more than {MAX_PAGES} pages",
                                   self.info.source, line=self.ctx.line,
                                   index=None if self.ctx.line else self.ctx.index)

    def _alloc(self, e: Effect) -> None:
        assert isinstance(e, Alloc)
        self._too_big("alloc", e.size)
        self.refcount.on_alloc(e.pa, e.size)
        op = self.ctx.op
        if e.size is not None and op is not None and op.name == "init":
            self._pgd_alloc = (e.pa, e.size)

    def _free(self, e: Effect) -> None:
        assert isinstance(e, Free)
        self._too_big("free", e.size)
        step = self.shadow.page_size
        for addr in range(e.pa, e.pa + (e.size or step), step):
            page = self.shadow.page(addr)
            if page is not None and page.live:
                self.bbm.on_free(page)
        self.refcount.on_free(e.pa, e.size)

    def _get(self, e: Effect) -> None:
        assert isinstance(e, Get)
        self.refcount.on_get(e.pa, e.count)

    def _put(self, e: Effect) -> None:
        assert isinstance(e, Put)
        self.refcount.on_put(e.pa, e.count)

    def _warn(self, e: Effect) -> None:
        assert isinstance(e, Warn)
        self.ctx.report("kernel-warn", f"WARN_ON({e.cond}) fired")

    def _harness_error(self, e: Effect) -> None:
        assert isinstance(e, HarnessError)
        self.ctx.report("harness-error", f"harness: {e.what} at {e.pa:#x}", table=e.pa)

    def _info(self, e: Effect) -> None:
        assert isinstance(e, Info)
        if self._pgd_alloc is None:
            return
        pa, _size = self._pgd_alloc
        op = self.ctx.op
        if not 0 < e.pgd_pages <= MAX_PAGES or not 0 <= e.start_level <= 3 \
                or not 12 <= e.ia_bits <= 52:
            raise TraceFormatError(f"info line with impossible geometry (ia_bits {e.ia_bits}, "
                                   f"start level {e.start_level}, {e.pgd_pages} pgd pages)",
                                   self.info.source, line=self.ctx.line)
        self.current = self.shadow.add_root(pa, e.pgd_pages, e.ia_bits, e.start_level, STAGE2,
                                            created=op.index if op else None)
        self.fwb[pa] = bool(op is not None and op.args.get("fwb", False))

    def _table(self, e: Effect) -> None:
        assert isinstance(e, Table)
        if self.on_dump is not None:
            self.on_dump(e, self.shadow)


def _ignore(_e: Effect) -> None:
    return None


def _ret_ok(ret: object) -> bool:
    return ret is None or ret == 0


def check_steps(steps: Iterable[Step], info: StreamInfo) -> list[Finding]:
    """Run every checker over ``steps``; return the findings in report order."""
    checker = EffectChecker(info)
    for step in steps:
        checker.feed(step)
    return checker.finish()
