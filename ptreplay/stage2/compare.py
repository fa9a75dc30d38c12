"""Observed against predicted effects of one operation, and the merged stream.

A trace observes some kinds of effects (the probes it holds: get/put,
page_count, allocations, frees, cache maintenance, TLB invalidations where
they fire) and not others (entry stores, barriers). For each operation this
module

* turns the model's predicted effects and the trace's observed effects into
  comparable records, :class:`Seen`, restricted to the kinds the trace
  observes, in one address space (the model's physical addresses: table
  pages through the replay's linear map, cache maintenance through the
  kernel's linear map learnt from the first observation);
* and builds the *merged* stream the checkers run on: the model's effects,
  with every effect of an observed kind replaced by what the trace observed
  (a missing TLBI or put_page is missing from the merged stream too, an
  extra one is there), each with the event index it comes from.

Observed kinds are named as in :data:`ptreplay.stage2.source.OBSERVABLE_BY_PROBE`
(``alloc``, ``alloc_exact``, ``free_exact``, ``get``, ``put``, ``page_count``,
``cmo:<kind>``) plus ``tlbi``. A ``free`` after a ``put_page`` dropped a page's
count to zero has no probe (the kernel's ``put_page`` frees the page itself):
it stays predicted, and is kept in the merged stream only when the trace
observed that ``put``.
"""

from __future__ import annotations

from difflib import SequenceMatcher
from typing import Any, NamedTuple

from ptreplay.effects import Alloc, AllocFail, Cmo, Free, Get, Put, Tlbi

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

    ``ev`` comes first so that two records of different kinds never compare
    equal (NamedTuples compare as plain tuples).

    :param ev: ``alloc``, ``alloc_fail``, ``free``, ``get``, ``put``,
        ``page_count``, ``cmo``, ``tlbi``, or ``other``.
    :param kind: the CMO or TLBI kind (``dcache_clean_inval_poc``, ``vmid_ipa``).
    :param addr: PA (table page, cache maintenance) or IPA (TLBI).
    :param n: size (alloc, free, cmo), count (page_count) or level (TLBI).
    """

    ev: str
    kind: str | None = None
    addr: int | None = None
    n: int | None = None

    def to_json(self) -> str:
        """The record as one JSON object, in the oracle format's style."""
        parts = [f'"ev":"{self.ev}"']
        if self.kind is not None:
            parts.append(f'"kind":"{self.kind}"')
        if self.addr is not None:
            key = "ipa" if self.ev == "tlbi" else "pa"
            parts.append(f'"{key}":"{self.addr:#x}"')
        if self.n is not None:
            if self.ev in ("alloc", "free", "cmo"):
                parts.append(f'"size":"{self.n:#x}"')
            elif self.ev == "page_count":
                parts.append(f'"count":{self.n}')
            else:
                parts.append(f'"level":{self.n}')
        return "{" + ",".join(parts) + "}"


_ALLOC_FAIL = ("alloc_fail", None, None, None)


class Comparer:
    """Turns predicted and observed effects into comparable records, in the model's addresses.

    Comparable records are plain tuples ``(ev, kind, addr, n)`` (the fields of
    :class:`Seen`, which :func:`as_seen` makes of them for reports): cheap to
    build and to compare, and two records of different kinds never compare equal.

    :param table_offset: ``VA - PA`` of table pages in the replay (the model's
        ``Machine.linear_offset``).
    :param kinds: the observed kinds; effects of other kinds are not compared.
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
        self._cmo = frozenset(k[4:] for k in kinds if k.startswith("cmo:"))
        #: ``VA - PA`` of the kernel's linear map, learnt from the first cache
        #: maintenance the model predicted and the trace observed.
        self.cmo_offset: int | None = None
        #: event index of that first observation.
        self.cmo_offset_index: int | None = None

    def predicted(self, effects: list[Any]) -> tuple[list[tuple], list[int]]:
        """The comparable records of a prediction, and their positions in ``effects``.

        :param effects: the model's effects for one operation (with :class:`PageCount`).
        """
        out: list[tuple] = []
        where: list[int] = []
        for i, e in enumerate(effects):
            t = type(e)
            if t is Get:
                if self._get:
                    out.append(("get", None, e.pa, None))
                    where.append(i)
            elif t is Put:
                if self._put:
                    out.append(("put", None, e.pa, None))
                    where.append(i)
            elif t is PageCount:
                if self._count:
                    out.append(("page_count", None, e.pa, e.count))
                    where.append(i)
            elif t is Tlbi:
                if self._tlbi:
                    out.append(("tlbi", e.kind, e.ipa, e.level))
                    where.append(i)
            elif t is Cmo:
                if e.kind in self._cmo:
                    out.append(("cmo", e.kind, e.pa, e.size))
                    where.append(i)
            elif t is Alloc:
                if self._alloc if e.size is None else self._alloc_exact:
                    out.append(("alloc", None, e.pa, e.size))
                    where.append(i)
            elif t is AllocFail:
                if self._alloc:
                    out.append(_ALLOC_FAIL)
                    where.append(i)
            elif t is Free:
                if e.size is not None and self._free_exact:
                    out.append(("free", None, e.pa, e.size))
                    where.append(i)
        return out, where

    def observed(self, observed: list[Any], mmu: int | None) -> tuple[list[tuple], list[Any]]:
        """The comparable records of an operation's observations, and those observations.

        :param observed: the operations layer's ``Observed`` records of the operation.
        :param mmu: the ``struct kvm_s2_mmu *`` of the operation's root, when known:
            a TLBI naming another one is not the one the model predicts.
        """
        off = self.table_offset
        out: list[tuple] = []
        used: list[Any] = []
        for o in observed:
            e = o.effect
            name = type(e).__name__
            if name == "Get":
                if not self._get:
                    continue
                s: tuple = ("get", None, e.pa - off, None)
            elif name == "Put":
                if not self._put:
                    continue
                s = ("put", None, e.pa - off, None)
            elif name == "PageCount":
                if not self._count:
                    continue
                s = ("page_count", None, e.pa - off, e.count)
            elif name == "Tlbi":
                # Compared even when TLB invalidations were assumed invisible (nVHE):
                # one that fires contradicts the assumption.
                kind = e.kind
                if mmu is not None and o.mmu is not None and o.mmu != mmu:
                    kind = f"{kind} for mmu {o.mmu:#x}"
                s = ("tlbi", kind, e.ipa, e.level)
            elif name == "Cmo":
                if e.kind not in self._cmo:
                    continue
                pa = e.pa - self.cmo_offset if self.cmo_offset is not None else e.pa
                s = ("cmo", e.kind, pa, e.size)
            elif name == "Alloc":
                if not (self._alloc if e.size is None else self._alloc_exact):
                    continue
                s = ("alloc", None, e.pa - off, e.size)
            elif name == "AllocFail":
                if not (self._alloc or self._alloc_exact):
                    continue
                s = _ALLOC_FAIL
            elif name == "Free":
                if not self._free_exact:
                    continue
                s = ("free", None, e.pa - off, e.size)
            else:
                continue  # 6.6+ records (range flush requests, unlinked tables, RCU)
            out.append(s)
            used.append(o)
        return out, used

    def learn_cmo_offset(self, predicted: list[tuple], observed: list[tuple],
                         used: list[Any]) -> bool:
        """Learn the kernel's linear-map offset from the first CMO pair; True if learnt now.

        The observed records' CMO addresses are then rewritten in place.
        """
        if self.cmo_offset is not None:
            return False
        pc = [s for s in predicted if s[0] == "cmo"]
        oc = [(i, s) for i, s in enumerate(observed) if s[0] == "cmo"]
        if not pc or not oc:
            return False
        first = oc[0][1]
        self.cmo_offset = first[2] - pc[0][2]
        self.cmo_offset_index = used[oc[0][0]].index
        for i, s in oc:
            observed[i] = (s[0], s[1], s[2] - self.cmo_offset, s[3])
        return True

    def effect(self, o: Any) -> Any:
        """An observation as an effect of :mod:`ptreplay.effects` in the model's addresses."""
        e = o.effect
        off = self.table_offset
        t = type(e)
        name = t.__name__
        if name in ("Get", "Put", "Alloc", "Free"):
            return e._replace(pa=e.pa - off)
        if t is Cmo and self.cmo_offset is not None:
            return e._replace(pa=e.pa - self.cmo_offset)
        return e


def as_seen(record: tuple) -> Seen:
    """A comparable record as a :class:`Seen` (for reports)."""
    return Seen(*record)


def merge(predicted: list[Any], where: list[int], pseen: list[tuple], oseen: list[tuple],
          used: list[Any], comparer: Comparer, default_index: int
          ) -> tuple[list[Any], list[int]]:
    """The merged effect stream of one operation, and the event index of each effect.

    :param predicted: the model's effects (with :class:`PageCount` records).
    :param where: positions in ``predicted`` of the comparable records ``pseen``.
    :param oseen: the observed comparable records; ``used`` the observations behind them.
    :param default_index: the index of effects before the first observation (the
        operation's entry event).

    Effects of observed kinds come from the observation (a predicted one the
    trace did not show is left out, an observed one the model did not predict is
    put in, after the last predicted effect before it); other effects come from
    the prediction, at the index of the last observation before them. Counts of
    observed get/put are the model's where the two agree, else the count the
    merged stream itself gives.
    """
    if pseen == oseen:
        out: list[Any] = []
        idx: list[int] = []
        last = default_index
        k = 0
        nxt = where[0] if where else -1
        for i, e in enumerate(predicted):
            if i == nxt:
                last = used[k].index
                k += 1
                nxt = where[k] if k < len(where) else -1
            if type(e) is PageCount:
                continue
            out.append(e)
            idx.append(last)
        return out, idx
    keep: dict[int, int] = {}  # predicted position -> observed event index
    before: dict[int, list[int]] = {}  # predicted position -> observations inserted before it
    tail: list[int] = []
    matcher = SequenceMatcher(None, pseen, oseen, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for k in range(i2 - i1):
                keep[where[i1 + k]] = used[j1 + k].index
            continue
        if j2 > j1:
            at = where[i1] if i1 < len(where) else None
            if at is None:
                tail.extend(range(j1, j2))
            else:
                before.setdefault(at, []).extend(range(j1, j2))
    counts: dict[int, int] = {}
    out = []
    idx = []
    last = default_index
    dropped_put: set[int] = set()
    positions = set(where)

    def put_in(js: list[int]) -> None:
        nonlocal last
        for j in js:
            o = used[j]
            e = comparer.effect(o)
            t = type(e)
            if t is Get or t is Put:
                count = counts.get(e.pa, 1) + (1 if t is Get else -1)
                e = e._replace(count=count)
                counts[e.pa] = count
            elif type(e).__name__ == "PageCount":
                last = o.index
                continue
            out.append(e)
            last = o.index
            idx.append(last)

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


def differences(pseen: list[tuple], oseen: list[tuple], used: list[Any],
                default_index: int, default_ts: int | None = None) -> list[Difference]:
    """Where ``oseen`` differs from ``pseen`` (longest matching blocks aligned).

    :param default_index: / ``default_ts``: the operation's first event.
    """
    if pseen == oseen:
        return []
    out = []
    matcher = SequenceMatcher(None, pseen, oseen, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if j2 > j1:
            anchor, ts, after = used[j1].index, used[j1].ts, False
        elif j1 > 0:
            anchor, ts, after = used[j1 - 1].index, used[j1 - 1].ts, True
        else:
            anchor, ts, after = default_index, default_ts, True
        out.append(Difference(_TAGS[tag], tuple(pseen[i1:i2]), tuple(oseen[j1:j2]), anchor,
                              after, ts, tuple(o.index for o in used[j1:j2])))
    return out


def describe(records: tuple[tuple, ...]) -> str:
    """Comparable records as JSON objects, for one line of text."""
    return " ".join(as_seen(r).to_json() for r in records)
