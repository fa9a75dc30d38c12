"""Shadow page tables: the page-table state rebuilt from a stream of stores.

The checkers never look inside the model. They rebuild what they need from
the effects themselves: which pages are table pages, at which level and IPA,
in which stage-2 (root), with which entries, linked from which parent entry,
with what refcount. Pages and entries the stream has not shown yet are
unknown (``Page.known`` False), never assumed empty, when the stream is not
complete (a trace that starts after the stage-2 was created).

A page becomes a table page when it is the pgd of a root
(:meth:`Shadow.add_root`) or when a table descriptor pointing at it is
stored into a live table page (:meth:`Shadow.apply_store`). Clearing that
descriptor "detaches" the page: it stays reachable by stale walks until the
break-before-make checker sees the TLBI that covers it, and then stops being a
table page (:meth:`Shadow.release_subtree`).
"""

from __future__ import annotations

from collections.abc import Iterator

from ptreplay.checks.pte import STAGE2, granule_shift, table_addr

__all__ = ["Root", "Page", "Shadow"]


class Root:
    """One page table (a stage-2, or a casemate stage-1 table).

    :param pgd: PA of its first pgd page (the root's identity).
    :param npages: concatenated pgd pages (stage 2 may have up to 16).
    :param ia_bits: input address size.
    :param start_level: level of the pgd.
    :param stage: 2 (stage-2) or 1 (EL2 stage-1, casemate logs).
    """

    __slots__ = ("pgd", "npages", "ia_bits", "start_level", "stage", "vmid", "owner_id",
                 "live", "created", "lock", "active")

    def __init__(self, pgd: int, npages: int, ia_bits: int, start_level: int,
                 stage: int = STAGE2, vmid: int | None = None, created: int | None = None):
        self.pgd = pgd
        self.npages = npages
        self.ia_bits = ia_bits
        self.start_level = start_level
        self.stage = stage
        self.vmid = vmid
        self.owner_id: int | None = None
        self.live = True
        self.created = created
        self.lock: int | None = None      # casemate: address of its lock
        self.active = 0                   # casemate: CPUs that have it loaded

    def __repr__(self) -> str:
        return f"Root({self.pgd:#x})"


class Page:
    """One page the stream has shown: a table page, or memory that may become one.

    ``vals`` holds the non-zero 8-byte entries by index. ``root``/``level``/
    ``base`` are set while the page is part of a table (linked, a pgd, or
    detached but not TLB-clean); ``parent`` is the entry linking it;
    ``detached_by`` the entry whose break unlinked it, until that break is
    clean. ``count`` is the refcount (None: unknown); ``live`` whether it is
    allocated; ``freed`` whether the stream freed it.
    """

    __slots__ = ("pa", "vals", "root", "level", "base", "parent", "detached_by", "count",
                 "live", "freed", "known", "allocated_at", "is_pgd", "init_mask",
                 "thread_owner", "owner_hint")

    def __init__(self, pa: int, known: bool = True):
        self.pa = pa
        self.vals: dict[int, int] = {}
        self.root: Root | None = None
        self.level: int | None = None
        self.base = 0
        self.parent: int | None = None
        self.detached_by: int | None = None
        self.count: int | None = None
        self.live = False
        self.freed = False
        self.known = known
        self.allocated_at: int | None = None
        self.is_pgd = False
        self.init_mask = 0
        self.thread_owner: dict[int, int] | None = None
        self.owner_hint: int | None = None

    def __repr__(self) -> str:
        return f"Page({self.pa:#x}, level={self.level})"


class Shadow:
    """Table pages and roots rebuilt from the stream.

    :param page_shift: 12 for a 4 KiB granule, 14 for 16 KiB.
    """

    def __init__(self, page_shift: int = 12, complete: bool = True):
        self.page_shift = page_shift
        # False: the stream may start after pages existed; pages it has not shown
        # are unknown (live, contents and count not known), never empty
        self.complete = complete
        self.page_size = 1 << page_shift
        self.entry_mask = (1 << (page_shift - 3)) - 1
        self.pages: dict[int, Page] = {}
        self.roots: dict[int, Root] = {}

    # --- lookups ------------------------------------------------------------------------
    def page(self, pa: int) -> Page | None:
        """The page containing ``pa``, if the stream showed it."""
        return self.pages.get(pa >> self.page_shift)

    def get_or_add(self, pa: int, known: bool | None = None) -> Page:
        """The page containing ``pa``; a new one is empty when the stream is complete,
        unknown (and presumed live) when it is not."""
        key = pa >> self.page_shift
        page = self.pages.get(key)
        if page is None:
            if known is None:
                known = self.complete
            page = Page(key << self.page_shift, known)
            if not known:
                page.live = True
            self.pages[key] = page
        return page

    def entry_index(self, ptep: int) -> int:
        """Index of the entry at ``ptep`` within its table page."""
        return (ptep >> 3) & self.entry_mask

    def entry_range(self, page: Page, idx: int) -> tuple[int, int]:
        """IPA range ``[start, end)`` the entry ``idx`` of a table page maps."""
        assert page.level is not None
        shift = granule_shift(page.level, self.page_shift)
        start = page.base + (idx << shift)
        return start, start + (1 << shift)

    def root_of_pgd_page(self, pa: int) -> Root | None:
        """The root one of whose pgd pages is ``pa``."""
        page = self.page(pa)
        if page is not None and page.is_pgd:
            return page.root
        return None

    # --- roots --------------------------------------------------------------------------
    def add_root(self, pgd: int, npages: int, ia_bits: int, start_level: int,
                 stage: int = STAGE2, vmid: int | None = None,
                 created: int | None = None) -> Root:
        """Register a page table whose pgd is ``npages`` pages from ``pgd``.

        Each concatenated pgd page covers ``entries << granule_shift(start_level)``
        of IPA space. Table entries already in the pages are linked.
        """
        root = Root(pgd, npages, ia_bits, start_level, stage, vmid, created)
        self.roots[pgd] = root
        span = (self.entry_mask + 1) << granule_shift(start_level, self.page_shift)
        for i in range(npages):
            page = self.get_or_add(pgd + i * self.page_size)
            page.root = root
            page.level = start_level
            page.base = i * span
            page.is_pgd = True
            page.parent = None
        return root

    def pgd_pages(self, root: Root) -> list[Page]:
        """The pgd pages of ``root``, in address order."""
        return [self.get_or_add(root.pgd + i * self.page_size) for i in range(root.npages)]

    def drop_root(self, root: Root) -> None:
        """Forget ``root``: its pages stop being table pages."""
        root.live = False
        for page in self.pgd_pages(root):
            self.release_subtree(page)
            page.is_pgd = False
        self.roots.pop(root.pgd, None)

    # --- stores ---------------------------------------------------------------------------
    def child_of(self, pte: int) -> Page:
        """The page a table descriptor points at."""
        return self.get_or_add(table_addr(pte, self.page_shift))

    def link(self, page: Page, idx: int, child: Page, ptep: int) -> list[Page]:
        """Make ``child`` the table linked at entry ``idx`` of ``page``.

        Its own table entries are linked in turn (a table built before it was
        linked). Returns the pages that became part of the tree.
        """
        assert page.level is not None
        linked = []
        stack = [(page, idx, child, ptep)]
        while stack:
            parent, pidx, node, nptep = stack.pop()
            node.root = parent.root
            node.level = parent.level + 1  # type: ignore[operator]
            node.base = parent.base + (pidx << granule_shift(parent.level,  # type: ignore[arg-type]
                                                              self.page_shift))
            node.parent = nptep
            node.detached_by = None
            linked.append(node)
            if node.level < 3:
                for cidx, val in node.vals.items():
                    if val & 3 == 3:
                        grandchild = self.child_of(val)
                        if grandchild is not node and grandchild.root is None:
                            stack.append((node, cidx, grandchild, node.pa + cidx * 8))
        return linked

    def release_subtree(self, page: Page) -> None:
        """``page`` and the tables below it stop being table pages."""
        stack = [page]
        seen = set()
        while stack:
            node = stack.pop()
            if node.pa in seen:
                continue
            seen.add(node.pa)
            if node.level is not None and node.level < 3:
                for val in node.vals.values():
                    if val & 3 == 3:
                        child = self.pages.get(table_addr(val, self.page_shift) >> self.page_shift)
                        if child is not None and child.root is node.root and \
                                child.parent is not None:
                            stack.append(child)
            node.root = None
            node.parent = None
            node.detached_by = None

    def descendants(self, page: Page) -> Iterator[Page]:
        """Table pages below ``page`` (linked through its table entries)."""
        stack = [page]
        seen = {page.pa}
        while stack:
            node = stack.pop()
            if node.level is None or node.level >= 3:
                continue
            for idx, val in node.vals.items():
                if val & 3 == 3:
                    child = self.pages.get(table_addr(val, self.page_shift) >> self.page_shift)
                    if child is not None and child.pa not in seen and \
                            child.parent == node.pa + idx * 8:
                        seen.add(child.pa)
                        yield child
                        stack.append(child)

    def live_leaves_below(self, page: Page) -> bool:
        """Whether any valid leaf is reachable below ``page`` (itself included)."""
        for node in (page, *self.descendants(page)):
            for val in node.vals.values():
                if val & 1 and (node.level == 3 or val & 3 == 1):
                    return True
        return False

    def lookup(self, root: Root, ipa: int) -> tuple[Page, int, int] | None:
        """The entry that translates ``ipa`` in ``root``: (table page, index, value)."""
        span_shift = granule_shift(root.start_level, self.page_shift) + self.page_shift - 3
        pgd_index = ipa >> span_shift
        if pgd_index >= root.npages or ipa >> root.ia_bits:
            return None
        page = self.pages.get((root.pgd >> self.page_shift) + pgd_index)
        while page is not None and page.level is not None:
            shift = granule_shift(page.level, self.page_shift)
            idx = (ipa >> shift) & self.entry_mask
            val = page.vals.get(idx, 0)
            if page.level < 3 and val & 3 == 3:
                child = self.pages.get(table_addr(val, self.page_shift) >> self.page_shift)
                if child is not None and child.parent == page.pa + idx * 8:
                    page = child
                    continue
            return page, idx, val
        return None

    def walk(self, root: Root) -> Iterator[tuple[Page, int, int]]:
        """Every non-zero entry of ``root`` in IPA order: (page, index, value)."""
        for pgd in self.pgd_pages(root):
            yield from self._walk_page(pgd)

    def _walk_page(self, page: Page) -> Iterator[tuple[Page, int, int]]:
        for idx in sorted(page.vals):
            val = page.vals[idx]
            yield page, idx, val
            if page.level is not None and page.level < 3 and val & 3 == 3:
                child = self.pages.get(table_addr(val, self.page_shift) >> self.page_shift)
                if child is not None and child.parent == page.pa + idx * 8:
                    yield from self._walk_page(child)
