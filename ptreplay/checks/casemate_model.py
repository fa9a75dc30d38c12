"""The checks on casemate logs: break-before-make plus casemate's software discipline.

A casemate log (:mod:`ptreplay.formats.casemate`) records what a pKVM-style
hypervisor did to memory: stores, barriers, TLBIs, system-register writes,
lock operations and hints. :class:`CasemateChecker` follows it the way
casemate 3.0.2 does (src/lib/src/model.c) and reports each violation as its
own finding kind (see :data:`ptreplay.checks.findings.KINDS`, whose
``casemate`` field names the casemate message each kind answers):

* memory: ``mem-init`` marks memory as initialised (zero); stores to
  memory that is not part of a live page table only record the value;
* roots: writing VTTBR_EL2 (TTBR0_EL2) while stage 2 (stage 1) is enabled
  registers the table at BADDR = value[47:1] with VMID (ASID) = value[63:48]
  and makes it the CPU's current one; every table reachable from it becomes a
  table page of that root (:class:`~ptreplay.checks.shadow.Shadow`);
* break-before-make: the same :class:`~ptreplay.checks.bbm.BbmChecker` as for
  effect streams, stepped by single DSB and TLBI instructions;
* discipline: a store to a live entry needs its root's lock (``set_root_lock``
  hint) held by the storing thread, or a thread-owner hint; after one plain
  store under a lock, another plain store touching a valid entry needs a DSB
  first; locks, VMIDs/ASIDs and table release follow casemate's rules.

Where ptreplay follows the Arm ARM instead of casemate (docs/checks.md has
the list): a leaf change of output address needs break-before-make whatever
the Access flag (casemate waives it when either entry has AF set); a TLBI by
VMID invalidates only that VMID (casemate-check promotes it to TLBI ALL); a
TLBI by IPA without level hint also invalidates a table entry whose subtree
has no valid leaf; non-broadcast maintenance does not complete a break
rather than being rejected outright; stores to uninitialised memory are not
errors (casemate's ``-I``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ptreplay.checks.bbm import BbmChecker, TlbiOp
from ptreplay.checks.context import Context
from ptreplay.checks.findings import Finding, finding_sort_key
from ptreplay.checks.pte import STAGE1, STAGE2, pte_bad_encoding
from ptreplay.checks.shadow import Page, Root, Shadow
from ptreplay.errors import TraceFormatError
from ptreplay.formats.casemate import (
    K_DSB,
    K_HINT,
    K_ISB,
    K_LOCK,
    K_MEM_FREE,
    K_MEM_INIT,
    K_MEM_READ,
    K_MEM_SET,
    K_MEM_WRITE,
    K_SYSREG,
    K_TLBI,
    K_TRYLOCK,
    K_UNLOCK,
    TLBI_OPS,
    CasemateReader,
    record_builder,
)

__all__ = ["CasemateChecker"]

_PAGE = 4096
_FULL_MASK = (1 << 512) - 1
_MAX_RANGE_PAGES = 1 << 18      # one record may cover at most 1 GiB (casemate: 32 MiB in all)
_MAX_SET_PAGES = 8192           # mem-set stores every slot: casemate's whole capacity
_TIDS = {"0": 0, "1": 1, "2": 2, "3": 3}
_DEFAULT_REGS = {"vtcr_el2": 0x10, "tcr_el2": 0x10, "hcr_el2": 1, "sctlr_el2": 1, "mair_el2": 0}


class _LockState:
    __slots__ = ("tid", "count", "authorized")

    def __init__(self, tid: int):
        self.tid = tid
        self.count = 1
        self.authorized = True


class CasemateChecker:
    """Checks the records of one casemate log.

    :param source: the log's name, for messages.
    """

    def __init__(self, source: str = "-"):
        self.source = source
        self.shadow = Shadow(12)
        self.ctx = Context()
        self.bbm = BbmChecker(self.shadow, self.ctx, op_scoped=False)
        self.regs: dict[int, dict[str, int]] = {}
        self.current: dict[tuple[int, int], Root] = {}      # (tid, stage) -> root
        self.root_locks: dict[int, int] = {}                # root address -> lock address
        self.locks: dict[int, _LockState] = {}              # lock address -> holder
        self.records = 0
        self._handlers = {
            K_MEM_WRITE: self._mem_write, K_MEM_READ: self._mem_read,
            K_MEM_INIT: self._mem_init, K_MEM_FREE: self._mem_free, K_MEM_SET: self._mem_set,
            K_SYSREG: self._sysreg, K_DSB: self._dsb, K_ISB: _nothing, K_TLBI: self._tlbi,
            K_HINT: self._hint, K_LOCK: self._lock, K_TRYLOCK: self._trylock,
            K_UNLOCK: self._unlock,
        }

    # --- driving ------------------------------------------------------------------------------
    def feed(self, records: Iterable[tuple]) -> None:
        """Check a batch of records (from :meth:`CasemateReader.batches`)."""
        ctx = self.ctx
        ctx.raw = None
        handlers = self._handlers
        write = self._mem_write
        index = self.records
        if ctx.index is not None and ctx.index + 1 > index:
            index = ctx.index + 1       # records the fast path already counted
        for rec in records:
            ctx.index = index
            ctx.cpu = rec[2]
            ctx.line = rec[7]
            ctx.src = rec[6]
            index += 1
            if rec[0] == K_MEM_WRITE:
                write(rec)
            else:
                handlers[rec[0]](rec)
        self.records = index

    def check(self, reader: CasemateReader) -> Iterator[None]:
        """Check every record of ``reader``; a generator that steps once per chunk.

        Canonical lines go straight from the reader's regular expressions to
        the checks (:meth:`CasemateReader.run`), without building records.
        """
        ctx = self.ctx
        ctx.index = self.records - 1
        for _ in reader.run(self._fast_handlers(), self.feed):
            self.records = ctx.index + 1
            yield None
        self.records = ctx.index + 1

    def _fast_handlers(self) -> dict[int, Callable[[tuple, int], None]]:
        ctx = self.ctx
        tids = _TIDS
        write = self._write
        barrier = self._barrier
        tlbi = self._tlbi_op
        handlers = self._handlers

        def mem_write(g: tuple, line: int) -> None:
            ctx.index += 1  # type: ignore[operator]
            ctx.line = line
            ctx.raw = g
            write(tids[g[1]], g[2] == "release", int(g[3], 16), int(g[4], 16))

        def dsb(g: tuple, line: int) -> None:
            ctx.index += 1  # type: ignore[operator]
            ctx.line = line
            ctx.raw = g
            if g[2] is not None:
                barrier(tids[g[1]], g[2])

        def tlbi_(g: tuple, line: int) -> None:
            ctx.index += 1  # type: ignore[operator]
            ctx.line = line
            ctx.raw = g
            if g[2] is not None:
                tlbi(tids[g[1]], g[2], int(g[3], 16))
            else:
                tlbi(tids[g[1]], g[4], None)

        def other(kind: int) -> Callable[[tuple, int], None]:
            records: list[tuple] = []
            build = record_builder(kind, records.append)

            def handle(g: tuple, line: int) -> None:
                build(g, line)
                rec = records.pop()
                ctx.index += 1  # type: ignore[operator]
                ctx.line = line
                ctx.raw = g
                handlers[rec[0]](rec)
            return handle

        fast: dict[int, Callable[[tuple, int], None]] = {
            kind: other(kind) for kind in handlers}
        fast.update({K_MEM_WRITE: mem_write, K_DSB: dsb, K_TLBI: tlbi_})
        return fast

    def finish(self) -> list[Finding]:
        """All findings, in report order (breaks still pending are reported now)."""
        if self.bbm.unclean:
            self.bbm.on_end()
        return sorted(self.ctx.findings, key=finding_sort_key)

    # --- memory ---------------------------------------------------------------------------------
    def _mem_write(self, rec: tuple) -> None:
        self._write(rec[2], rec[3], rec[4], rec[5])

    def _write(self, tid: int, release: int, addr: int, new: int) -> None:
        """A store of ``new`` at ``addr`` by thread ``tid`` (``release``: release order)."""
        addr &= ~7
        page = self.shadow.pages.get(addr >> 12)
        if page is None:
            page = self.shadow.get_or_add(addr, known=False)
            page.live = False
        idx = (addr >> 3) & 511
        if page.root is None:
            if new:
                page.vals[idx] = new
            else:
                page.vals.pop(idx, None)
            return
        old = page.vals.get(idx, 0)
        # casemate: a store to a live entry needs the owner's lock (or a thread-owner hint)
        owners = page.thread_owner
        owner = owners.get(idx) if owners else None
        if owner is not None:
            if owner != tid:
                self._report("thread-owner-violation",
                             f"entry {addr:#x} is owned by thread {owner} (set_pte_thread_owner) "
                             f"but thread {tid} wrote it", page, idx, addr)
        else:
            root = page.root
            lock = self.root_locks.get(root.pgd)
            if lock is None:
                self._report("root-without-lock",
                             f"store to entry {addr:#x} of the live table at {root.pgd:#x}, "
                             f"which was never given a lock (set_root_lock)", page, idx, addr)
            else:
                state = self.locks.get(lock)
                if state is None or state.tid != tid:
                    held = "not held" if state is None else f"held by thread {state.tid}"
                    self._report("unlocked-pte-write",
                                 f"thread {tid} stored to entry {addr:#x} of the live table at "
                                 f"{root.pgd:#x} while its lock {lock:#x} is {held}",
                                 page, idx, addr)
                elif state.authorized:
                    state.authorized = False
                elif not release and (old & 1 or new & 1):
                    self._report("plain-write-without-dsb",
                                 f"second plain store to a live entry ({addr:#x}) under lock "
                                 f"{lock:#x} without a DSB since the previous one", page, idx, addr)
        self.bbm.on_store(page, idx, addr, old, new, tid)
        if old & 3 == 3 and not new & 1 and page.level is not None and page.level < 3:
            self._check_freeze(page, idx, addr, old)
        self.bbm.apply_store(page, idx, addr, old, new)
        if new & 3 == 3 and page.level is not None and page.level < 3:
            child = self.shadow.child_of(new)
            if child.parent == addr:
                self._check_new_table(child)

    def _check_freeze(self, page: Page, idx: int, addr: int, old: int) -> None:
        """Breaking a table entry freezes the table below: no entry there may be thread-owned."""
        child = self.shadow.child_of(old)
        if child.parent != addr:
            return
        for node in (child, *self.shadow.descendants(child)):
            if node.thread_owner:
                cidx, owner = min(node.thread_owner.items())
                self._report("thread-owner-violation",
                             f"table entry {addr:#x} was broken while entry "
                             f"{node.pa + cidx * 8:#x} below it is owned by thread {owner}",
                             page, idx, addr)
                return

    def _check_new_table(self, top: Page) -> None:
        """A table just became part of a live tree: it must be initialised and well formed."""
        for page in (top, *self.shadow.descendants(top)):
            if not page.init_mask and not page.vals:
                self._report_page("uninitialised-table",
                                  f"table page {page.pa:#x} became part of a live table but "
                                  f"was never initialised (mem-init)",
                                  page)
            level = page.level
            if level is None:
                continue
            for idx, val in page.vals.items():
                if val & 1 and pte_bad_encoding(val, level):
                    self._report("invalid-descriptor",
                                 f"table page {page.pa:#x} holds {val:#x} at index {idx}, a "
                                 f"reserved encoding at level {level}", page, idx,
                                 page.pa + idx * 8)

    def _mem_read(self, rec: tuple) -> None:
        addr = rec[4] & ~7
        page = self.shadow.pages.get(addr >> 12)
        idx = (addr >> 3) & 511
        if page is None or not (page.init_mask >> idx) & 1:
            return
        have = page.vals.get(idx, 0)
        if have != rec[5]:
            self.ctx.report("read-mismatch",
                            f"read of {addr:#x} returned {rec[5]:#x}, but the logged stores "
                            f"left {have:#x} there", entry=addr, table=page.pa,
                            root=page.root.pgd if page.root else None)

    def _pages(self, addr: int, size: int, what: str) -> Iterable[tuple[int, int, int]]:
        """(page key, first slot, end slot) of each page [addr, addr + size) covers."""
        if size == 0:
            return
        first = addr >> 12
        last = (addr + size - 1) >> 12
        if last - first >= _MAX_RANGE_PAGES:
            raise TraceFormatError(f"{what} of {size:#x} bytes at {addr:#x} covers more than "
                                   f"{_MAX_RANGE_PAGES} pages (casemate tracks at most 8192)",
                                   self.source, line=self.ctx.line)
        for key in range(first, last + 1):
            lo = max(addr, key << 12)
            hi = min(addr + size, (key + 1) << 12)
            yield key, (lo & 0xFFF) >> 3, ((hi - 1) & 0xFFF) // 8 + 1

    def _mem_init(self, rec: tuple) -> None:
        for key, s0, s1 in self._pages(rec[4], rec[5], "mem-init"):
            page = self.shadow.get_or_add(key << 12)
            mask = ((1 << (s1 - s0)) - 1) << s0
            again = page.init_mask & mask
            if again and (page.root is not None
                          or any(again >> i & 1 for i in page.vals if s0 <= i < s1)):
                what = "entries of a live table" if page.root is not None else "non-zero data"
                self.ctx.report("memory-reinitialised",
                                f"mem-init of page {page.pa:#x} again while it holds {what}",
                                table=page.pa, root=page.root.pgd if page.root else None)
            fresh = mask & ~page.init_mask
            for i in list(page.vals):
                if fresh >> i & 1:
                    del page.vals[i]
            page.init_mask |= mask
            page.known = True

    def _mem_free(self, rec: tuple) -> None:
        for key, s0, s1 in self._pages(rec[4], rec[5], "mem-free"):
            page = self.shadow.pages.get(key)
            if page is None:
                continue
            if page.root is not None:
                if self.bbm.on_free(page):
                    self._report_linked(page, "freed (mem-free)")
            mask = ((1 << (s1 - s0)) - 1) << s0
            page.init_mask &= ~mask
            if not page.init_mask and page.root is None and not page.is_pgd:
                del self.shadow.pages[key]

    def _mem_set(self, rec: tuple) -> None:
        value, addr, size = rec[3], rec[4], rec[5]
        if addr & 0xFFF or size & 0xFFF:
            raise TraceFormatError(f"mem-set of {size:#x} bytes at {addr:#x}: address and size "
                                   f"must be page-aligned", self.source, line=self.ctx.line)
        if size >> 12 > _MAX_SET_PAGES:
            raise TraceFormatError(f"mem-set of {size:#x} bytes: more than {_MAX_SET_PAGES} "
                                   f"pages (casemate tracks at most 8192)", self.source,
                                   line=self.ctx.line)
        for key, s0, s1 in self._pages(addr, size, "mem-set"):
            for slot in range(s0, s1):
                self._write(rec[2], 0, (key << 12) + slot * 8, value)

    # --- system registers and roots -------------------------------------------------------------
    def _reg(self, tid: int, name: str) -> int | None:
        regs = self.regs.get(tid)
        if regs is not None and name in regs:
            return regs[name]
        return _DEFAULT_REGS.get(name)

    def _sysreg(self, rec: tuple) -> None:
        tid, name, value = rec[2], rec[3], rec[5]
        if name == "vttbr_el2":
            if (self._reg(tid, "hcr_el2") or 0) & 1:
                self._activate(tid, STAGE2, value)
        elif name == "ttbr0_el2":
            if (self._reg(tid, "sctlr_el2") or 0) & 1:
                self._activate(tid, STAGE1, value)
        elif name == "hcr_el2":
            if not (self._reg(tid, "hcr_el2") or 0) & 1 and value & 1:
                ttb = self.regs.get(tid, {}).get("vttbr_el2")
                if ttb is not None:
                    self._activate(tid, STAGE2, ttb)
        elif name == "sctlr_el2":
            if not (self._reg(tid, "sctlr_el2") or 0) & 1 and value & 1:
                ttb = self.regs.get(tid, {}).get("ttbr0_el2")
                if ttb is not None:
                    self._activate(tid, STAGE1, ttb)
        self.regs.setdefault(tid, {})[name] = value

    def _activate(self, tid: int, stage: int, ttb: int) -> None:
        baddr = ttb & ((1 << 48) - 1) & ~1
        ident = ttb >> 48
        name = "VMID" if stage == STAGE2 else "ASID"
        if stage == STAGE1 and ident:
            self.ctx.report("ttbr0-el2-asid",
                            f"TTBR0_EL2 written with ASID {ident:#x}: non-VHE EL2 has no ASID "
                            f"(the field is RES0)", root=baddr)
        root = self.shadow.roots.get(baddr)
        if root is not None and root.vmid != ident:
            self.ctx.report("root-vmid-changed",
                            f"table {baddr:#x}, loaded with {name} {root.vmid}, loaded again with "
                            f"{name} {ident}", root=baddr)
        if root is None:
            other = next((r for r in self.shadow.roots.values()
                          if r.vmid == ident and r.pgd != baddr), None)
            if other is not None:
                self.ctx.report("duplicate-vmid",
                                f"table {baddr:#x} loaded with {name} {ident}, which the live "
                                f"table {other.pgd:#x} already uses", root=baddr)
            root = self._register(tid, stage, baddr, ident)
            if root is None:
                return
        current = self.current.get((tid, stage))
        if current is not None:
            current.active -= 1
        root.active += 1
        self.current[(tid, stage)] = root

    def _register(self, tid: int, stage: int, baddr: int, ident: int) -> Root | None:
        tcr = self._reg(tid, "vtcr_el2" if stage == STAGE2 else "tcr_el2") or 0
        ia_bits = 64 - (tcr & 0x3F)
        if not 21 <= ia_bits <= 48:
            self.ctx.report("unsupported-translation-config",
                            f"{'VTCR' if stage == STAGE2 else 'TCR'}_EL2.T0SZ gives a "
                            f"{ia_bits}-bit input address: the table at {baddr:#x} cannot be "
                            f"walked", root=baddr)
            return None
        start = (48 - ia_bits) // 9       # casemate: one root page, no concatenation
        page = self.shadow.page(baddr)
        if page is not None and page.root is not None:
            self.ctx.report("table-double-use",
                            f"table {baddr:#x} loaded as a root while it is a table page of "
                            f"the table at {page.root.pgd:#x}", root=baddr, table=baddr)
        root = self.shadow.add_root(baddr, 1, ia_bits, start, stage, vmid=ident,
                                    created=self.ctx.index)
        pgd = self.shadow.get_or_add(baddr)
        if not pgd.init_mask and not pgd.vals:
            self._report_page("uninitialised-table",
                              f"table {baddr:#x} loaded as a root but never initialised "
                              f"(mem-init)", pgd)
        for idx, val in sorted(pgd.vals.items()):
            if val & 1 and pte_bad_encoding(val, start):
                self._report("invalid-descriptor",
                             f"root {baddr:#x} holds {val:#x} at index {idx}, a reserved "
                             f"encoding at level {start}", pgd, idx, baddr + idx * 8)
            if start < 3 and val & 3 == 3:
                child = self.shadow.child_of(val)
                if self.bbm.on_link(pgd, idx, baddr + idx * 8, child):
                    self.shadow.link(pgd, idx, child, baddr + idx * 8)
                    self._check_new_table(child)
        return root

    # --- barriers and TLBIs ---------------------------------------------------------------------
    def _dsb(self, rec: tuple) -> None:
        self._barrier(rec[2], rec[3])

    def _barrier(self, tid: int, kind: str) -> None:
        """``dsb kind`` on thread ``tid``."""
        if self.bbm.unclean:
            self.bbm.on_barrier(tid, kind)
        for state in self.locks.values():
            if state.tid == tid:
                state.authorized = True

    def _tlbi(self, rec: tuple) -> None:
        self._tlbi_op(rec[2], rec[3], rec[5])

    def _tlbi_op(self, tid: int, op: str, value: int | None) -> None:
        """TLBI ``op`` (with Xt ``value``) on thread ``tid``."""
        if not self.bbm.unclean:
            return      # nothing to invalidate that anyone is waiting for
        scope, regime, stage, last_level, broadcast, text = _TLBI_SHAPES[op]
        vmid = None
        if regime == "el1" and scope != "all":
            ttb = self.regs.get(tid, _NO_REGS).get("vttbr_el2")
            vmid = (ttb >> 48) if ttb is not None else 0
        ipa = level = None
        if value is not None:
            ipa = (value & 0xFFFFFFFFFFF) << 12
            ttl = (value >> 44) & 0xF
            if ttl >> 2 and ttl & 3:
                level = ttl & 3
        self.bbm.on_tlbi(tid, TlbiOp(scope, regime, stage, None, vmid, ipa, None, level,
                                     last_level, broadcast, self.ctx.index, text))

    # --- hints ----------------------------------------------------------------------------------
    def _hint(self, rec: tuple) -> None:
        kind, location, value = rec[3], rec[4], rec[5]
        if kind == "set_root_lock":
            self.root_locks[location] = value
        elif kind == "set_owner_root":
            page = self.shadow.page(location)
            if page is not None and page.root is not None:
                self.ctx.report("bad-hint",
                                f"set_owner_root on {location:#x}, already a table page of the "
                                f"table at {page.root.pgd:#x}", table=page.pa,
                                root=page.root.pgd)
        elif kind == "release_table":
            self._release(location)
        else:
            self._thread_owner(location, value)

    def _release(self, location: int) -> None:
        self.root_locks.pop(location, None)
        root = self.shadow.roots.get(location & ~0xFFF)
        page = self.shadow.page(location)
        if root is not None:
            if root.active > 0:
                self.ctx.report("root-release-in-use",
                                f"table {root.pgd:#x} released while {root.active} CPU(s) "
                                f"still have it loaded", root=root.pgd)
            for u in list(self.bbm.unclean.values()):
                if u.root is root:
                    self.bbm.on_free(u.page, how="released with its tree")
            for key, current in list(self.current.items()):
                if current is root:
                    del self.current[key]
            self.shadow.drop_root(root)
        elif page is not None and page.root is not None:
            if self.bbm.on_free(page, how="released (release_table)"):
                self._report_linked(page, "released (release_table)")

    def _thread_owner(self, location: int, value: int) -> None:
        page = self.shadow.page(location)
        idx = (location >> 3) & 511
        if page is None or not (page.init_mask >> idx) & 1 and idx not in page.vals:
            why = "an uninitialised location"
        elif page.root is None:
            why = "a location that is not a live table entry"
        elif page.level != 3:
            why = f"a level-{page.level} entry (only last-level entries can be owned)"
        else:
            if page.thread_owner is None:
                page.thread_owner = {}
            page.thread_owner[idx] = value
            return
        self.ctx.report("bad-hint", f"set_pte_thread_owner({location:#x}) names {why}",
                        entry=location & ~7)

    # --- locks ------------------------------------------------------------------------------------
    def _lock(self, rec: tuple) -> None:
        tid, addr = rec[2], rec[4]
        state = self.locks.get(addr)
        if state is not None:
            self.ctx.report("lock-misuse", f"thread {tid} took lock {addr:#x}, already held by "
                            f"thread {state.tid}")
            return
        self.locks[addr] = _LockState(tid)

    def _trylock(self, rec: tuple) -> None:
        tid, addr = rec[2], rec[4]
        state = self.locks.get(addr)
        if state is None:
            self.locks[addr] = _LockState(tid)
        elif state.tid != tid:
            self.ctx.report("lock-misuse", f"thread {tid} re-took lock {addr:#x}, held by "
                            f"thread {state.tid}")
        else:
            state.count += 1

    def _unlock(self, rec: tuple) -> None:
        tid, addr = rec[2], rec[4]
        state = self.locks.get(addr)
        if state is None:
            self.ctx.report("lock-misuse", f"thread {tid} released lock {addr:#x}, not held")
        elif state.tid != tid:
            self.ctx.report("lock-misuse", f"thread {tid} released lock {addr:#x}, held by "
                            f"thread {state.tid}")
        else:
            state.count -= 1
            if state.count <= 0:
                del self.locks[addr]
                if self.bbm.unclean:
                    self.bbm.on_unlock(tid)

    # --- reporting ------------------------------------------------------------------------------
    def _report(self, kind: str, text: str, page: Page, idx: int, entry: int) -> None:
        where: dict[str, Any] = {"entry": entry, "table": page.pa}
        if page.root is not None and page.level is not None:
            where["root"] = page.root.pgd
            where["level"] = page.level
            where["ipa"] = self.shadow.entry_range(page, idx)
        self.ctx.report(kind, text, **where)

    def _report_page(self, kind: str, text: str, page: Page) -> None:
        self.ctx.report(kind, text, table=page.pa, level=page.level,
                        root=page.root.pgd if page.root else None)

    def _report_linked(self, page: Page, how: str) -> None:
        if page.is_pgd:
            why = f"it is the root of the live table at {page.pa:#x}"
        elif page.parent is not None:
            why = f"entry {page.parent:#x} still points at it"
        else:
            return
        self.ctx.report("table-freed-while-linked", f"table page {page.pa:#x} {how} while {why}",
                        table=page.pa, entry=page.parent, level=page.level,
                        root=page.root.pgd if page.root else None)


def _nothing(_rec: tuple) -> None:
    return None


_NO_REGS: dict[str, int] = {}


def _tlbi_shape(op: str) -> tuple[str, str, str, bool, bool, str]:
    """(scope, regime, stage, last level only, broadcast, name) of a TLBI op."""
    el2 = op.endswith("e2") or op.endswith("e2is")
    scope = "all" if op.startswith("all") else "vmid" if op.startswith("vmall") else "ipa"
    stage = "s2" if op == "ipas2e1is" else "s1" if op.startswith("vmalle1") else "both"
    return (scope, "el2" if el2 else "el1", stage, op.startswith("vale"), op.endswith("is"),
            f"TLBI {op.upper()}")


_TLBI_SHAPES = {op: _tlbi_shape(op) for op in TLBI_OPS}
