"""Compact records of operations, as the replay consumes them.

The operations layer (:class:`~ptreplay.stage2.operations.OperationBuilder`)
makes rich :class:`~ptreplay.stage2.operations.Operation` objects. The replay
needs less of each, and may get it from another process
(:mod:`ptreplay.stage2.feed`), so :func:`encode` turns an operation into an
:class:`OpRecord`: a plain tuple of ints, strings, a dict and tuples, which
``marshal`` moves between processes cheaply. Its observed effects are
comparable records (:mod:`ptreplay.stage2.compare`) holding the addresses the
kernel used (virtual addresses of table pages, of entries, and of the pages
cache maintenance touched).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ptreplay.effects import Alloc, AllocFail, Cmo, Free, Get, Pte, Put, Tlbi
from ptreplay.stage2 import operations as _operations
from ptreplay.stage2.operations import COUNT_NOT_OBSERVED, UNCERTAIN_FLAGS, Gap, Observed

__all__ = ["OpRecord", "Note", "encode", "encode_gap", "decode", "GAP", "NOTE",
           "observed_effect"]

_PageCount = _operations.PageCount  # the operations layer's page_count record

#: First element of an encoded :class:`~ptreplay.stage2.operations.Gap`.
GAP = "~gap"
#: First element of an encoded :class:`Note`.
NOTE = "~note"


class Note(NamedTuple):
    """A ``trace_marker`` line of the trace (``index``: the next event's ordinal)."""

    index: int  # type: ignore[assignment]  # shadows tuple.index
    ts: int
    text: str


class OpRecord(NamedTuple):
    """One stage-2 call as the replay needs it.

    :param kind: ``map``, ``unmap`` ... (see :data:`~ptreplay.stage2.operations.OP_KINDS`).
    :param func: the kernel function.
    :param root: the operations layer's root id (None: unknown).
    :param ia_bits: / ``start_level``: as the entry probe read them from ``*pgt``
        (None when the probe does not read them).
    :param flags: the operations layer's flags (sorted).
    :param args: the call's arguments (``addr``, ``size``, ``phys``, ``prot``, ``mc`` ...).
    :param seen: the observed effects as comparable records, kernel addresses.
    :param seen_index: / ``seen_ts``: event ordinal and timestamp of each.
    """

    kind: str
    func: str
    cpu: int
    pid: int
    root: int | None
    pgt: int | None
    pgd: int | None
    mmu: int | None
    vm: int | None
    ia_bits: int | None
    start_level: int | None
    ret: Any
    ts: int | None
    ts_return: int | None
    index: int | None  # type: ignore[assignment]  # shadows tuple.index
    index_return: int | None
    flags: tuple[str, ...]
    args: dict[str, Any]
    seen: list[tuple]
    seen_index: list[int]
    seen_ts: list[int]

    @property
    def first_index(self) -> int:
        """The first event ordinal of the call (entry, else return)."""
        if self.index is not None:
            return self.index
        assert self.index_return is not None
        return self.index_return

    @property
    def uncertain(self) -> bool:
        """Whether the trace's record of the call may be incomplete."""
        return not UNCERTAIN_FLAGS.isdisjoint(self.flags)

    @property
    def entry_fields(self) -> dict[str, Any]:
        """The entry probe's fields (arguments, and what it read from ``*pgt``)."""
        out = dict(self.args)
        for key in ("pgt", "pgd", "ia_bits", "start_level"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    @property
    def effects(self) -> list[Observed]:
        """The observed effects as the operations layer's records (kernel addresses)."""
        return [Observed(observed_effect(r), i, ts, self.cpu)
                for r, i, ts in zip(self.seen, self.seen_index, self.seen_ts, strict=True)]


def observed_effect(record: tuple) -> Any:
    """The :mod:`ptreplay.effects` record of a comparable record (same addresses)."""
    ev, kind, addr, n = record
    if ev == "get":
        return Get(addr, COUNT_NOT_OBSERVED)
    if ev == "put":
        return Put(addr, COUNT_NOT_OBSERVED)
    if ev == "tlbi":
        return Tlbi(kind.split(" ", 1)[0], addr, n)
    if ev == "cmo":
        return Cmo(kind, addr, n)
    if ev == "alloc":
        return Alloc(addr, n)
    if ev == "alloc_fail":
        return AllocFail()
    if ev == "free":
        return Free(addr, n)
    if ev == "pte":
        return Pte(addr, n[0], n[1])
    from ptreplay.stage2.compare import PageCount
    return PageCount(addr, n)


def encode(op: Any) -> tuple:
    """An :class:`~ptreplay.stage2.operations.Operation` as an :class:`OpRecord` tuple."""
    seen: list[tuple] = []
    index: list[int] = []
    tss: list[int] = []
    mmu = op.mmu
    for o in op.effects:
        e = o.effect
        t = type(e)
        if t is Get:
            r: tuple = ("get", None, e.pa, None)
        elif t is Put:
            r = ("put", None, e.pa, None)
        elif t is _PageCount:
            r = ("page_count", None, e.pa, e.count)
        elif t is Tlbi:
            kind = e.kind
            if mmu is not None and o.mmu is not None and o.mmu != mmu:
                kind = f"{kind} for mmu {o.mmu:#x}"
            r = ("tlbi", kind, e.ipa, e.level)
        elif t is Cmo:
            r = ("cmo", e.kind, e.pa, e.size)
        elif t is Alloc:
            r = ("alloc", None, e.pa, e.size)
        elif t is AllocFail:
            r = ("alloc_fail", None, None, None)
        elif t is Free:
            r = ("free", None, e.pa, e.size)
        elif t is Pte:
            r = ("pte", None, e.ptep, (e.old, e.new))
        else:
            continue  # 6.6+ records: range flush requests, unlinked tables, RCU
        seen.append(r)
        index.append(o.index)
        tss.append(o.ts)
    f = op.entry_fields
    flags = op.flags
    return (op.kind, op.func, op.cpu, op.pid, op.root, op.pgt, op.pgd, mmu, op.vm,
            f.get("ia_bits"), f.get("start_level"), op.ret, op.ts, op.ts_return, op.index,
            op.index_return, tuple(sorted(flags)) if flags else (), op.args, seen, index, tss)


def encode_gap(gap: Gap) -> tuple:
    """A :class:`~ptreplay.stage2.operations.Gap` as a tuple."""
    return (GAP, gap.index, gap.cpu, gap.ts, gap.count)


def decode(item: tuple) -> OpRecord | Gap | Note:
    """The record an encoded tuple stands for."""
    if item[0] == GAP:
        return Gap(*item[1:])
    if item[0] == NOTE:
        return Note(*item[1:])
    return tuple.__new__(OpRecord, item)  # type: ignore[call-overload,no-any-return]
