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
    "predicted_seen",
    "Translator",
    "merge",
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


_ALLOC_FAIL = Seen("alloc_fail")


def predicted_seen(effects: list[Any], kinds: frozenset[str]) -> tuple[list[Seen], list[int]]:
    """The comparable records of a prediction, and their positions in ``effects``.

    :param effects: the model's effects for one operation (with :class:`PageCount`).
    :param kinds: the observed kinds.
    """
    out: list[Seen] = []
    where: list[int] = []
    for i, e in enumerate(effects):
        t = type(e)
        if t is Get:
            if "get" in kinds:
                out.append(Seen("get", None, e.pa))
                where.append(i)
        elif t is Put:
            if "put" in kinds:
                out.append(Seen("put", None, e.pa))
                where.append(i)
        elif t is PageCount:
            if "page_count" in kinds:
                out.append(Seen("page_count", None, e.pa, e.count))
                where.append(i)
        elif t is Tlbi:
            if "tlbi" in kinds:
                out.append(Seen("tlbi", e.kind, e.ipa, e.level))
                where.append(i)
        elif t is Cmo:
            if "cmo:" + e.kind in kinds:
                out.append(Seen("cmo", e.kind, e.pa, e.size))
                where.append(i)
        elif t is Alloc:
            if ("alloc" if e.size is None else "alloc_exact") in kinds:
                out.append(Seen("alloc", None, e.pa, e.size))
                where.append(i)
        elif t is AllocFail:
            if "alloc" in kinds:
                out.append(_ALLOC_FAIL)
                where.append(i)
        elif t is Free:
            if e.size is not None and "free_exact" in kinds:
                out.append(Seen("free", None, e.pa, e.size))
                where.append(i)
    return out, where


class Translator:
    """Turns observed effects (kernel virtual addresses) into :class:`Seen` records.

    :param table_offset: ``VA - PA`` of table pages in the replay (the model's
        ``Machine.linear_offset``).
    :param kinds: the observed kinds; observations of other kinds are dropped.
    """

    def __init__(self, table_offset: int, kinds: frozenset[str]) -> None:
        self.table_offset = table_offset
        self.kinds = kinds
        #: ``VA - PA`` of the kernel's linear map, learnt from the first cache
        #: maintenance the model predicted and the trace observed.
        self.cmo_offset: int | None = None
        #: event index of that first observation.
        self.cmo_offset_index: int | None = None

    def seen(self, observed: list[Any], mmu: int | None) -> tuple[list[Seen], list[Any]]:
        """The comparable records of an operation's observations, and those observations.

        :param observed: the builder's ``Observed`` records of the operation.
        :param mmu: the ``struct kvm_s2_mmu *`` of the operation's root, when known:
            a TLBI naming another one is not the one the model predicts.
        """
        off = self.table_offset
        kinds = self.kinds
        out: list[Seen] = []
        used: list[Any] = []
        for o in observed:
            e = o.effect
            t = type(e)
            name = t.__name__
            if name == "Get":
                if "get" not in kinds:
                    continue
                s = Seen("get", None, e.pa - off)
            elif name == "Put":
                if "put" not in kinds:
                    continue
                s = Seen("put", None, e.pa - off)
            elif name == "PageCount":
                if "page_count" not in kinds:
                    continue
                s = Seen("page_count", None, e.pa - off, e.count)
            elif t is Tlbi:
                if "tlbi" not in kinds:
                    continue
                kind = e.kind
                if mmu is not None and o.mmu is not None and o.mmu != mmu:
                    kind = f"{kind} for mmu {o.mmu:#x}"
                s = Seen("tlbi", kind, e.ipa, e.level)
            elif t is Cmo:
                if "cmo:" + e.kind not in kinds:
                    continue
                pa = e.pa - self.cmo_offset if self.cmo_offset is not None else e.pa
                s = Seen("cmo", e.kind, pa, e.size)
            elif t is Alloc:
                if ("alloc" if e.size is None else "alloc_exact") not in kinds:
                    continue
                s = Seen("alloc", None, e.pa - off, e.size)
            elif t is AllocFail:
                if "alloc" not in kinds and "alloc_exact" not in kinds:
                    continue
                s = _ALLOC_FAIL
            elif t is Free:
                if "free_exact" not in kinds:
                    continue
                s = Seen("free", None, e.pa - off, e.size)
            else:
                continue  # 6.6+ records (range flush requests, unlinked tables, RCU)
            out.append(s)
            used.append(o)
        return out, used

    def learn_cmo_offset(self, predicted: list[Seen], observed: list[Seen],
                         used: list[Any]) -> bool:
        """Learn the kernel's linear-map offset from the first CMO pair; True if learnt now.

        The observed records' CMO addresses are then rewritten in place.
        """
        if self.cmo_offset is not None:
            return False
        pc = [s for s in predicted if s.ev == "cmo"]
        oc = [(i, s) for i, s in enumerate(observed) if s.ev == "cmo"]
        if not pc or not oc:
            return False
        first = oc[0][1]
        assert first.addr is not None and pc[0].addr is not None
        self.cmo_offset = first.addr - pc[0].addr
        self.cmo_offset_index = used[oc[0][0]].index
        for i, s in oc:
            assert s.addr is not None
            observed[i] = s._replace(addr=s.addr - self.cmo_offset)
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


def merge(predicted: list[Any], where: list[int], pseen: list[Seen], oseen: list[Seen],
          used: list[Any], translator: Translator, default_index: int
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
        slot = {pos: used[k].index for k, pos in enumerate(where)}
        out: list[Any] = []
        idx: list[int] = []
        last = default_index
        for i, e in enumerate(predicted):
            j = slot.get(i)
            if j is not None:
                last = j
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
            e = translator.effect(o)
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
