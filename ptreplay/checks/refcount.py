"""Table-page refcount and lifetime checker.

pgtable.c keeps, for every table page, ``page_count == 1 + number of entries
counted by stage2_pte_is_counted()`` whenever no walk is in progress (the
oracle harness checks exactly this after every operation). The checker
follows the counts the stream shows: every ``get`` adds one, every ``put``
removes one, and after each operation each table page it touched must be
back at its base. It also checks the lifetime rules around the counts:

* ``refcount-leak`` -- a live table page above its base after an operation; a
  table page that became unreachable (or was allocated and never linked) but
  was not freed; a page of a destroyed stage-2 that ``destroy`` did not free;
* ``refcount-underflow`` -- below its base, or a ``put`` below zero;
* ``refcount-non-table`` -- get/put on a page that is not a live table page;
* ``double-free``, ``free-with-references`` (a single-page free whose count is
  not 0), ``table-freed-while-linked`` (freed while an entry of a live table
  points at it, except when the operation frees the whole stage-2, as
  ``destroy`` does without clearing entries);
* ``refcount-inconsistent`` -- the count the stream reports after a get/put
  does not follow from its own get/put sequence.
"""

from __future__ import annotations

from ptreplay.checks.context import Context
from ptreplay.checks.shadow import Page, Root, Shadow
from ptreplay.checks.stream import Operation

__all__ = ["RefcountChecker"]


class RefcountChecker:
    """Follows table-page counts and lifetimes through an effect stream.

    :param complete: False when the stream may start after pages were
        allocated: an unknown page's first count is taken as given, and
        findings that depend on what happened before are not made.
    """

    def __init__(self, shadow: Shadow, ctx: Context, complete: bool = True):
        self.shadow = shadow
        self.ctx = ctx
        self.complete = complete
        self._touched: dict[int, Page] = {}
        self._allocated: list[Page] = []
        self._unlinked: list[Page] = []
        self._linked_frees: list[tuple[Page, int, int | None, int | None, Root]] = []
        self._freed_in_op: set[int] = set()
        self._destroying: list[Page] | None = None
        self._destroy_root: Root | None = None
        self._inconsistent: set[int] = set()
        self._delta: dict[int, int] = {}     # reported count - expected, per page
        self._leaked: set[int] = set()       # pages reported as leaked

    # --- allocation -------------------------------------------------------------------------
    def on_alloc(self, pa: int, size: int | None) -> list[Page]:
        """``zalloc_page`` / ``zalloc_pages_exact``: fresh pages with count 1."""
        pages = []
        step = self.shadow.page_size
        for addr in range(pa, pa + (size or step), step):
            page = self.shadow.get_or_add(addr)
            page.vals.clear()
            page.root = None
            page.level = None
            page.parent = None
            page.detached_by = None
            page.is_pgd = False
            page.count = 1
            page.live = True
            page.freed = False
            page.known = True
            page.allocated_at = self.ctx.index
            self._inconsistent.discard(page.pa)
            self._delta.pop(page.pa, None)
            self._leaked.discard(page.pa)
            pages.append(page)
            self._touched[page.pa] = page
            if size is None:
                self._allocated.append(page)
        return pages

    def on_get(self, pa: int, count: int) -> None:
        """``get_page`` on the table page containing ``pa``; ``count`` is the count after."""
        page = self._live_page(pa, "get_page")
        if page is None:
            return
        self._touched[page.pa] = page
        if page.count is None:
            page.count = count
            return
        page.count += 1
        self._check_reported(page, count, "get_page")

    def on_put(self, pa: int, count: int) -> None:
        """``put_page`` on the table page containing ``pa``; ``count`` is the count after."""
        page = self._live_page(pa, "put_page")
        if page is None:
            return
        self._touched[page.pa] = page
        if page.count is None:
            page.count = count
            return
        page.count -= 1
        if page.count < 0:
            self.ctx.report("refcount-underflow",
                            f"put_page on table page {page.pa:#x} dropped its count below zero",
                            table=page.pa, level=page.level, root=_root(page))
            page.count = 0
            return
        self._check_reported(page, count, "put_page")

    def _live_page(self, pa: int, what: str) -> Page | None:
        page = self.shadow.page(pa)
        if not self.complete and (page is None or not page.known and not page.freed):
            page = self.shadow.get_or_add(pa, known=False)
            page.live = True
            return page
        if page is None or not page.live:
            state = "was freed" if page is not None and page.freed else "was never allocated"
            self.ctx.report("refcount-non-table",
                            f"{what} on page {pa & ~(self.shadow.page_size - 1):#x}, which {state}",
                            table=pa & ~(self.shadow.page_size - 1),
                            uncertain=not self.complete)
            return None
        return page

    def _check_reported(self, page: Page, count: int, what: str) -> None:
        if count == page.count:
            self._inconsistent.discard(page.pa)
            return
        if page.pa in self._inconsistent:
            return
        self._inconsistent.add(page.pa)
        self.ctx.report("refcount-inconsistent",
                        f"{what} on table page {page.pa:#x} reports count {count}, but the "
                        f"stream's own gets and puts give {page.count}",
                        table=page.pa, level=page.level, root=_root(page))

    def on_free(self, pa: int, size: int | None) -> list[Page]:
        """A page freed after its last put (``size`` None) or ``free_pages_exact``."""
        freed = []
        step = self.shadow.page_size
        for addr in range(pa, pa + (size or step), step):
            page = self.shadow.page(addr)
            if page is None:
                if self.complete:
                    self.ctx.report("refcount-non-table",
                                    f"free of page {addr:#x}, which was never allocated",
                                    table=addr)
                continue
            if page.freed and not page.live:
                self.ctx.report("double-free", f"table page {page.pa:#x} freed twice",
                                table=page.pa, level=page.level)
                continue
            if size is None and page.count not in (0, None):
                self.ctx.report("free-with-references",
                                f"table page {page.pa:#x} freed with refcount {page.count}",
                                table=page.pa, level=page.level, root=_root(page))
            if page.parent is not None and page.root is not None:
                self._linked_frees.append((page, page.parent, self.ctx.index, self.ctx.line,
                                           page.root))

            page.live = False
            page.freed = True
            if not page.vals:
                page.vals = {}  # an emptied dict keeps its size: let it go (memory)
            self._freed_in_op.add(page.pa)
            self._touched[page.pa] = page
            freed.append(page)
        return freed

    # --- stores -------------------------------------------------------------------------------
    def on_store(self, page: Page) -> None:
        """An entry of ``page`` is being written."""
        self._touched[page.pa] = page

    def on_unlink(self, child: Page) -> None:
        """A table entry pointing at ``child`` was cleared or replaced."""
        self._unlinked.append(child)

    # --- operations -----------------------------------------------------------------------------
    def on_op_start(self, op: Operation, root: Root | None) -> None:
        """Before an operation: remember what ``destroy`` must free."""
        if op.name == "destroy" and root is not None:
            pages = self.shadow.pgd_pages(root)
            for pgd in list(pages):
                pages.extend(self.shadow.descendants(pgd))
            self._destroying = [p for p in pages if p.live]
            self._destroy_root = root

    def on_op_end(self) -> None:
        """After an operation: counts back at their base, nothing leaked."""
        for page, parent, index, line, root in self._linked_frees:
            if root.pgd in self._freed_in_op:
                continue    # the whole stage-2 was torn down (destroy)
            self.ctx.report("table-freed-while-linked",
                            f"table page {page.pa:#x} freed while entry {parent:#x} still "
                            f"pointed at it", index=index, line=line, table=page.pa,
                            entry=parent, level=page.level, root=_root(page))
        torn_down = {p.pa for p in self._destroying} if self._destroying is not None else set()
        for page in self._touched.values():
            if not page.live or not page.known or page.count is None or page.pa in torn_down:
                continue
            if page.root is None and not page.is_pgd:
                continue
            expected = 1 + len(page.vals)
            delta = page.count - expected
            if delta == self._delta.get(page.pa, 0):
                continue        # already reported (or still fine)
            self._delta[page.pa] = delta
            if page.count > expected:
                self.ctx.report("refcount-leak",
                                f"table page {page.pa:#x} has refcount {page.count} after the "
                                f"operation, but 1 + {len(page.vals)} counted entries = {expected}",
                                table=page.pa, level=page.level, root=_root(page))
            elif page.count < expected:
                self.ctx.report("refcount-underflow",
                                f"table page {page.pa:#x} has refcount {page.count} after the "
                                f"operation, but 1 + {len(page.vals)} counted entries = {expected}",
                                table=page.pa, level=page.level, root=_root(page))
        for page in (*self._unlinked, *self._allocated):
            if page.live and page.root is None and page.parent is None and not page.is_pgd \
                    and page.pa not in self._leaked:
                why = ("was allocated but never linked" if page in self._allocated
                       else "was unlinked from its table")
                self.ctx.report("refcount-leak",
                                f"table page {page.pa:#x} {why} and not freed (refcount "
                                f"{page.count})", table=page.pa, level=page.level)
                self._leaked.add(page.pa)
        if self._destroying is not None and self._destroy_root is not None:
            for page in self._destroying:
                if page.live:
                    self.ctx.report("refcount-leak",
                                    f"table page {page.pa:#x} of the stage-2 at "
                                    f"{self._destroy_root.pgd:#x} was not freed by destroy "
                                    f"(refcount {page.count})",
                                    table=page.pa, level=page.level,
                                    root=self._destroy_root.pgd)
        self._destroying = None
        self._destroy_root = None
        self._touched.clear()
        self._allocated.clear()
        self._unlinked.clear()
        self._linked_frees.clear()
        self._freed_in_op.clear()


def _root(page: Page) -> int | None:
    return page.root.pgd if page.root is not None else None
