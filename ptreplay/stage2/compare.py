"""Observed against predicted effects of one operation, and the merged stream.

A trace observes some kinds of effects (the probes it holds: get/put,
page_count, allocations, frees, cache maintenance, TLB invalidations where
they fire) and not others (entry stores, barriers). For each operation this
module

* turns the model's predicted effects into comparable records (``(ev, kind,
  addr, n)`` tuples, :class:`Seen` in reports), restricted to the kinds the
  trace observes, with the addresses the kernel used: a table page's kernel
  virtual address is the model's (its PA plus the replay's linear offset),
  and the page a cache maintenance call touched is the model's PA plus the
  kernel's linear-map offset, learnt from the first call the model predicted
  and the trace observed (and checked by every later one). The trace's
  observations come as such records already (:mod:`ptreplay.stage2.records`);
* finds where the two differ (:func:`differences`);
* and builds the *merged* stream the checkers run on (:func:`merge`): the
  model's effects, with every effect of an observed kind replaced by what the
  trace observed (a missing TLBI or put_page is missing from the merged stream
  too, an extra one is there), each with the event ordinal it comes from.

Observed kinds are named as in :data:`ptreplay.stage2.source.OBSERVABLE_BY_PROBE`
(``alloc``, ``alloc_exact``, ``free_exact``, ``get``, ``put``, ``page_count``,
``cmo:<kind>``, ``pte`` for the ``ptreplay:stage2_pte_store`` instrumentation
event) plus ``tlbi``. Entry stores are compared value for value: table
descriptors hold the physical address of a table page, so the model's table
pages must sit at the kernel's physical addresses, i.e. the replay's linear
offset must be the kernel's (:mod:`ptreplay.stage2.replay` learns it before
replaying a trace that shows stores). A ``free`` after a ``put_page`` dropped a page's
count to zero has no probe (the kernel's ``put_page`` frees the page itself):
it stays predicted, and is kept in the merged stream only when the trace
observed that ``put``.
"""

from __future__ import annotations

from collections.abc import Callable
from difflib import SequenceMatcher
from typing import Any, NamedTuple

from ptreplay.effects import Alloc, AllocFail, Cmo, Free, Get, Pte, Put, Tlbi

__all__ = [
    "Seen",
    "PageCount",
    "Comparer",
    "as_seen",
    "merge",
    "Difference",
    "differences",
    "describe",
]


class PageCount(NamedTuple):
    """``mm_ops->page_count()`` of the table page at ``pa`` returned ``count``.

    A query, not an effect of :mod:`ptreplay.effects`: the replay's mm_ops
    records it in the predicted stream so it can be compared with the
    trace's ``kvm_host_page_count`` probe; it is not in the merged stream.
    """

    pa: int
    count: int  # type: ignore[assignment]  # shadows tuple.count

    def to_json(self) -> str:
        return f'{{"ev":"page_count","pa":"{self.pa:#x}","count":{self.count}}}'


class Seen(NamedTuple):
    """One effect in comparable form (the same for predicted and observed).

    :param ev: ``alloc``, ``alloc_fail``, ``free``, ``get``, ``put``,
        ``page_count``, ``cmo`` or ``tlbi``.
    :param kind: the CMO or TLBI kind (``dcache_clean_inval_poc``, ``vmid_ipa``).
    :param addr: table page or cache-maintained page (kernel virtual addresses while
        comparing; printed as the model's addresses) or IPA (TLBI).
    :param n: size (alloc, free, cmo), count (page_count), level (TLBI), or the
        ``(old, new)`` values of an entry store (``pte``, ``addr`` the entry).
    """

    ev: str
    kind: str | None = None
    addr: int | None = None
    n: Any = None

    def to_json(self) -> str:
        """The record as one JSON object, in the oracle format's style."""
        if self.ev == "pte":
            old, new = self.n  # type: ignore[misc]
            return f'{{"ev":"pte","ptep":"{self.addr:#x}","old":"{old:#x}","new":"{new:#x}"}}'
        parts = [f'"ev":"{self.ev}"']
        if self.kind is not None:
            parts.append(f'"kind":"{self.kind}"')
        if self.addr is not None:
            key = {"tlbi": "ipa", "cmo": "va"}.get(self.ev, "pa")
            parts.append(f'"{key}":"{self.addr:#x}"')
        if self.n is not None:
            if self.ev in ("alloc", "free", "cmo"):
                parts.append(f'"size":"{self.n:#x}"')
            elif self.ev == "page_count":
                parts.append(f'"count":{self.n}')
            else:
                parts.append(f'"level":{self.n}')
        return "{" + ",".join(parts) + "}"


def as_seen(record: tuple) -> Seen:
    """A comparable record as a :class:`Seen` (for reports)."""
    return Seen(*record)


def describe(records: tuple[tuple, ...], table_offset: int = 0) -> str:
    """Comparable records as JSON objects, for one line of text; table pages by their
    address in the model (kernel virtual address minus ``table_offset``)."""
    return " ".join(as_seen(_shift(r, table_offset)).to_json() for r in records)


def _shift(record: tuple, offset: int) -> tuple:
    if offset and record[0] in ("get", "put", "page_count", "alloc", "free", "pte") and \
            record[2] is not None:
        return (record[0], record[1], record[2] - offset, record[3])
    return record


_ALLOC_FAIL = ("alloc_fail", None, None, None)


class Comparer:
    """Predicted effects as comparable records, and observations as model effects.

    :param table_offset: ``VA - PA`` of table pages in the replay (the model's
        ``Machine.linear_offset``).
    :param kinds: the observed kinds; predicted effects of other kinds are not compared.
    """

    def __init__(self, table_offset: int, kinds: frozenset[str]) -> None:
        self.table_offset = table_offset
        self.kinds = kinds
        self._get = "get" in kinds
        self._put = "put" in kinds
        self._count = "page_count" in kinds
        self._tlbi = "tlbi" in kinds
        self._alloc = "alloc" in kinds
        self._alloc_exact = "alloc_exact" in kinds
        self._free_exact = "free_exact" in kinds
        self._pte = "pte" in kinds
        self._cmo = frozenset(k[4:] for k in kinds if k.startswith("cmo:"))
        #: ``VA - PA`` of the kernel's linear map, learnt from the first cache
        #: maintenance the model predicted and the trace observed.
        self.cmo_offset: int | None = None
        #: event ordinal of that first observation.
        self.cmo_offset_index: int | None = None
        #: page_count queries in the last prediction (they are not effects).
        self.queries = 0

    def predicted(self, effects: list[Any]) -> tuple[list[tuple], list[int]]:
        """The comparable records of a prediction, and their positions in ``effects``.

        :param effects: the model's effects for one operation (with :class:`PageCount`).
        """
        off = self.table_offset
        cmo_off = self.cmo_offset or 0
        out: list[tuple] = []
        where: list[int] = []
        queries = 0
        for i, e in enumerate(effects):
            t = type(e)
            if t is Get:
                if self._get:
                    out.append(("get", None, e.pa + off, None))
                    where.append(i)
            elif t is Put:
                if self._put:
                    out.append(("put", None, e.pa + off, None))
                    where.append(i)
            elif t is PageCount:
                queries += 1
                if self._count:
                    out.append(("page_count", None, e.pa + off, e.count))
                    where.append(i)
            elif t is Tlbi:
                if self._tlbi:
                    out.append(("tlbi", e.kind, e.ipa, e.level))
                    where.append(i)
            elif t is Cmo:
                if e.kind in self._cmo:
                    out.append(("cmo", e.kind, e.pa + cmo_off, e.size))
                    where.append(i)
            elif t is Alloc:
                if self._alloc if e.size is None else self._alloc_exact:
                    out.append(("alloc", None, e.pa + off, e.size))
                    where.append(i)
            elif t is AllocFail:
                if self._alloc:
                    out.append(_ALLOC_FAIL)
                    where.append(i)
            elif t is Free:
                if e.size is not None and self._free_exact:
                    out.append(("free", None, e.pa + off, e.size))
                    where.append(i)
            elif t is Pte:
                if self._pte:
                    out.append(("pte", None, e.ptep + off, (e.old, e.new)))
                    where.append(i)
        self.queries = queries
        return out, where

    def matches(self, effects: list[Any], seen: list[tuple]) -> tuple[bool, int]:
        """Whether ``predicted(effects)[0] == seen``, without building the records; and
        the number of page_count queries in ``effects``.

        The common case (the observations equal the prediction) costs no allocation.
        """
        off = self.table_offset
        cmo_off = self.cmo_offset or 0
        n = len(seen)
        k = 0
        queries = 0
        for e in effects:
            t = type(e)
            if t is Get:
                if not self._get:
                    continue
                if k == n:
                    return False, 0
                o = seen[k]
                if o[0] != "get" or o[2] != e.pa + off:
                    return False, 0
            elif t is Put:
                if not self._put:
                    continue
                if k == n:
                    return False, 0
                o = seen[k]
                if o[0] != "put" or o[2] != e.pa + off:
                    return False, 0
            elif t is PageCount:
                queries += 1
                if not self._count:
                    continue
                if k == n:
                    return False, 0
                o = seen[k]
                if o[0] != "page_count" or o[2] != e.pa + off or o[3] != e.count:
                    return False, 0
            elif t is Tlbi:
                if not self._tlbi:
                    continue
                if k == n or seen[k] != ("tlbi", e.kind, e.ipa, e.level):
                    return False, 0
            elif t is Cmo:
                if e.kind not in self._cmo:
                    continue
                if k == n or seen[k] != ("cmo", e.kind, e.pa + cmo_off, e.size):
                    return False, 0
            elif t is Alloc:
                if not (self._alloc if e.size is None else self._alloc_exact):
                    continue
                if k == n or seen[k] != ("alloc", None, e.pa + off, e.size):
                    return False, 0
            elif t is AllocFail:
                if not self._alloc:
                    continue
                if k == n or seen[k] != _ALLOC_FAIL:
                    return False, 0
            elif t is Free:
                if e.size is None or not self._free_exact:
                    continue
                if k == n or seen[k] != ("free", None, e.pa + off, e.size):
                    return False, 0
            elif t is Pte:
                if not self._pte:
                    continue
                if k == n:
                    return False, 0
                o = seen[k]
                if o[0] != "pte" or o[2] != e.ptep + off or o[3] != (e.old, e.new):
                    return False, 0
            else:
                continue
            k += 1
        return k == n, queries

    def learn_cmo_offset(self, predicted: list[tuple], observed: list[tuple],
                         observed_index: list[int]) -> bool:
        """Learn the kernel's linear-map offset from the first CMO pair; True if learnt now.

        The predicted records' CMO addresses are then rewritten in place.
        """
        if self.cmo_offset is not None:
            return False
        pc = [(i, s) for i, s in enumerate(predicted) if s[0] == "cmo"]
        oc = [(i, s) for i, s in enumerate(observed) if s[0] == "cmo"]
        if not pc or not oc:
            return False
        self.cmo_offset = oc[0][1][2] - pc[0][1][2]
        self.cmo_offset_index = observed_index[oc[0][0]]
        for i, s in pc:
            predicted[i] = (s[0], s[1], s[2] + self.cmo_offset, s[3])
        return True

    def effect(self, record: tuple, count: Callable[[int, int], int]) -> Any:
        """An observed record as an effect of :mod:`ptreplay.effects` in the model's
        addresses (``None`` for a page count, which is not an effect).

        :param count: ``(pa, +1 or -1) -> count after`` for a get/put, whose count the
            trace does not show.
        """
        ev, kind, addr, n = record
        off = self.table_offset
        if ev == "get":
            return Get(addr - off, count(addr - off, 1))
        if ev == "put":
            return Put(addr - off, count(addr - off, -1))
        if ev == "tlbi":
            return Tlbi(kind.split(" ", 1)[0], addr, n)
        if ev == "cmo":
            return Cmo(kind, addr - (self.cmo_offset or 0), n)
        if ev == "alloc":
            return Alloc(addr - off, n)
        if ev == "alloc_fail":
            return AllocFail()
        if ev == "free":
            return Free(addr - off, n)
        if ev == "pte":
            return Pte(addr - off, n[0], n[1])
        return None


def opcodes(pseen: list[tuple], oseen: list[tuple]) -> list[tuple[str, int, int, int, int]]:
    """How ``oseen`` differs from ``pseen``: difflib's opcodes (longest matching blocks
    aligned), with every pure insertion moved past the equal records it repeats.

    When the trace shows a record twice where the model predicts it once (a
    double ``put_page``), either copy could be "the" predicted one; the first
    is, and the second is the extra one, so that what the kernel did between
    them (a free inside the first put) comes before the extra one.
    """
    out: list[tuple[str, int, int, int, int]] = []
    ops = SequenceMatcher(None, pseen, oseen, autojunk=False).get_opcodes()
    k = 0
    while k < len(ops):
        tag, i1, i2, j1, j2 = ops[k]
        nxt = ops[k + 1] if k + 1 < len(ops) else None
        if tag == "insert" and nxt is not None and nxt[0] == "equal":
            _t, e1, e2, f1, f2 = nxt
            slide = 0
            while e1 + slide < e2 and oseen[j1 + slide] == oseen[f1 + slide]:
                slide += 1
            if slide:
                # the first ``slide`` equal records match the insertion's start instead
                out.append(("equal", i1, i1 + slide, j1, j1 + slide))
                out.append(("insert", i1 + slide, i1 + slide, j1 + slide, j2 + slide))
                if e1 + slide < e2:
                    out.append(("equal", e1 + slide, e2, f1 + slide, f2))
                k += 2
                continue
        out.append((tag, i1, i2, j1, j2))
        k += 1
    return out


def merge(predicted: list[Any], where: list[int], pseen: list[tuple], oseen: list[tuple],
          oindex: list[int], comparer: Comparer, default_index: int,
          count_of: Callable[[int], int]) -> tuple[list[Any] | None, list[int] | None]:
    """The merged effect stream of one operation, and the event ordinal of each effect;
    ``(None, None)`` when the observations equal the prediction (the merged stream is
    then the prediction itself).

    :param predicted: the model's effects (with :class:`PageCount` records).
    :param where: positions in ``predicted`` of the comparable records ``pseen``.
    :param oseen: the observed records; ``oindex`` their event ordinals.
    :param default_index: the ordinal of effects before the first observation (the
        operation's first event).
    :param count_of: the model's refcount of a table page (by PA) after the operation,
        the base for the count of an observed get/put the model did not predict.

    Effects of observed kinds come from the observation (a predicted one the
    trace did not show is left out, an observed one the model did not predict is
    put in, after the last predicted effect before it); other effects come from
    the prediction, at the ordinal of the last observation before them.
    """
    if pseen == oseen:
        return None, None
    out: list[Any] = []
    idx: list[int] = []
    last = default_index
    keep: dict[int, int] = {}  # predicted position -> observed event ordinal
    before: dict[int, list[int]] = {}  # predicted position -> observations put in before it
    tail: list[int] = []
    for tag, i1, i2, j1, j2 in opcodes(pseen, oseen):
        if tag == "equal":
            for k in range(i2 - i1):
                keep[where[i1 + k]] = oindex[j1 + k]
            continue
        if j2 > j1:
            if i1 < len(where):
                before.setdefault(where[i1], []).extend(range(j1, j2))
            else:
                tail.extend(range(j1, j2))
    counts: dict[int, int] = {}

    def count(pa: int, delta: int) -> int:
        value = counts.get(pa)
        if value is None:
            value = count_of(pa) - delta
        counts[pa] = value + delta
        return value + delta

    def put_in(js: list[int]) -> None:
        nonlocal last
        for j in js:
            last = oindex[j]
            e = comparer.effect(oseen[j], count)
            if e is not None:
                out.append(e)
                idx.append(last)

    positions = set(where)
    dropped_put: set[int] = set()
    for i, e in enumerate(predicted):
        if i in before:
            put_in(before[i])
        t = type(e)
        if i in positions:
            j = keep.get(i)
            if j is None:
                if t is Put:
                    dropped_put.add(e.pa)
                continue
            last = j
        if t is PageCount:
            continue
        if t is Free and e.size is None and e.pa in dropped_put:
            continue  # the put that would have freed it was not observed
        if t is Get or t is Put:
            counts[e.pa] = e.count
        out.append(e)
        idx.append(last)
    put_in(tail)
    return out, idx


class Difference(NamedTuple):
    """One place where observed and predicted effects of an operation differ.

    :param tag: ``missing`` (predicted, not observed), ``unexpected`` (observed, not
        predicted) or ``changed`` (observed other effects where the model predicts these).
    :param predicted: / ``observed``: the comparable records involved.
    :param index: the event ordinal it is anchored at: the first observation involved;
        for a missing effect, the observation before the place where it is missing
        (or the operation's first event), with ``after`` True: the effect is missing
        right after that event.
    :param ts: the timestamp of that event.
    :param related: ordinals of the observations involved.
    """

    tag: str
    predicted: tuple[tuple, ...]
    observed: tuple[tuple, ...]
    index: int  # type: ignore[assignment]  # shadows tuple.index
    after: bool
    ts: int | None
    related: tuple[int, ...]


_TAGS = {"delete": "missing", "insert": "unexpected", "replace": "changed"}


def differences(pseen: list[tuple], oseen: list[tuple], oindex: list[int],
                ots: list[int], default_index: int,
                default_ts: int | None = None) -> list[Difference]:
    """Where ``oseen`` differs from ``pseen`` (longest matching blocks aligned).

    :param oindex: / ``ots``: event ordinal and timestamp of each observation.
    :param default_index: / ``default_ts``: the operation's first event.
    """
    seen = oseen
    if pseen == seen:
        return []
    out = []
    for tag, i1, i2, j1, j2 in opcodes(pseen, seen):
        if tag == "equal":
            continue
        ts: int | None
        if j2 > j1:
            anchor, ts, after = oindex[j1], ots[j1], False
        elif j1 > 0:
            anchor, ts, after = oindex[j1 - 1], ots[j1 - 1], True
        else:
            anchor, ts, after = default_index, default_ts, True
        out.append(Difference(_TAGS[tag], tuple(pseen[i1:i2]), tuple(seen[j1:j2]), anchor,
                              after, ts, tuple(oindex[j1:j2])))
    return out
