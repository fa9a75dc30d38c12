"""Observed against predicted effects: the comparison and the merged stream (properties)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ptreplay.effects import Alloc, AllocFail, Cmo, Dsb, Free, Get, Pte, Put, Tlbi
from ptreplay.stage2.compare import Comparer, PageCount, differences, merge, opcodes

OFF = 0xFFFF_0000_0000_0000
CMO_OFF = 0xFFFE_FFFF_C000_0000
ALL_KINDS = frozenset(["alloc", "alloc_exact", "free_exact", "get", "put", "page_count",
                       "cmo:dcache_clean_inval_poc", "cmo:icache_inval_pou", "tlbi"])

pages = st.sampled_from([0x1000, 0x2000, 0x3000])
effects = st.one_of(
    st.builds(Get, pages, st.integers(1, 5)),
    st.builds(Put, pages, st.integers(0, 5)),
    st.builds(PageCount, pages, st.integers(1, 5)),
    st.builds(Tlbi, st.sampled_from(["vmid_ipa", "vmid"]), st.sampled_from([0x4000_0000, None]),
              st.sampled_from([0, 3, None])),
    st.builds(Cmo, st.sampled_from(["dcache_clean_inval_poc", "icache_inval_pou"]),
              st.sampled_from([0x5000_0000, 0x5000_1000]), st.just(4096)),
    st.builds(Alloc, pages, st.sampled_from([None, 8192])),
    st.builds(AllocFail),
    st.builds(Free, pages, st.sampled_from([None, 4096])),
    st.builds(Pte, st.integers(0, 0x100), st.integers(0, 3), st.integers(0, 3)),
    st.builds(Dsb, st.sampled_from(["ish", "ishst"])),
)
kinds = st.frozensets(st.sampled_from(sorted(ALL_KINDS)))


def _comparer(k: frozenset[str]) -> Comparer:
    c = Comparer(OFF, k)
    c.cmo_offset = CMO_OFF
    return c


@given(st.lists(effects, max_size=12), kinds, st.data())
def test_matches_is_predicted_equals_seen(effs: list, k: frozenset[str], data) -> None:
    c = _comparer(k)
    pseen, where = c.predicted(effs)
    assert [type(effs[i]) for i in where] == [type(e) for e in effs if _comparable(e, k)]
    seen = list(pseen)
    change = data.draw(st.sampled_from(["none", "drop", "dup", "swap", "edit"]))
    if seen and change == "drop":
        del seen[data.draw(st.integers(0, len(seen) - 1))]
    elif seen and change == "dup":
        i = data.draw(st.integers(0, len(seen) - 1))
        seen.insert(i, seen[i])
    elif len(seen) > 1 and change == "swap":
        seen[0], seen[-1] = seen[-1], seen[0]
    elif seen and change == "edit":
        r = seen[0]
        seen[0] = (r[0], r[1], (r[2] or 0) + 8, r[3])
    same, queries = c.matches(effs, seen)
    assert same == (pseen == seen)
    if same:
        assert queries == sum(1 for e in effs if type(e) is PageCount)


def _comparable(e: object, k: frozenset[str]) -> bool:
    t = type(e)
    if t is Get:
        return "get" in k
    if t is Put:
        return "put" in k
    if t is PageCount:
        return "page_count" in k
    if t is Tlbi:
        return "tlbi" in k
    if t is Cmo:
        return "cmo:" + e.kind in k  # type: ignore[attr-defined]
    if t is Alloc:
        return ("alloc" if e.size is None else "alloc_exact") in k  # type: ignore[attr-defined]
    if t is AllocFail:
        return "alloc" in k
    if t is Free:
        return e.size is not None and "free_exact" in k  # type: ignore[attr-defined]
    return False


@given(st.lists(effects, max_size=12), st.data())
def test_merged_stream_has_what_was_observed(effs: list, data) -> None:
    """Drop one observed effect: it is missing from the merged stream (with the free its
    put would have caused) and reported missing; everything else is kept in order."""
    c = _comparer(ALL_KINDS)
    pseen, where = c.predicted(effs)
    index = list(range(100, 100 + len(pseen)))
    assert merge(effs, where, pseen, list(pseen), index, c, 0, lambda pa: 1) == (None, None)
    if not pseen:
        return
    drop = data.draw(st.integers(0, len(pseen) - 1))
    seen = pseen[:drop] + pseen[drop + 1:]
    oidx = index[:drop] + index[drop + 1:]
    merged, midx = merge(effs, where, pseen, seen, oidx, c, 0, lambda pa: 1)
    assert merged is not None and midx is not None and len(merged) == len(midx)
    assert all(type(e) is not PageCount for e in merged)
    kept = [e for i, e in enumerate(effs) if type(e) is not PageCount]
    assert len(merged) <= len(kept)
    diffs = differences(pseen, seen, oidx, [0] * len(oidx), 0, 0)
    assert sum(len(d.predicted) for d in diffs if d.tag in ("missing", "changed")) >= 1
    assert all(d.tag != "unexpected" or d.observed for d in diffs)


def test_an_extra_observed_put_is_merged_with_a_count_one_lower() -> None:
    c = _comparer(ALL_KINDS)
    effs = [Pte(0x1000, 3, 0), Tlbi("vmid_ipa", 0x4000_0000, 3), Put(0x1000, 4)]
    pseen, where = c.predicted(effs)
    seen = pseen + [("put", None, 0x1000 + OFF, None)]
    merged, idx = merge(effs, where, pseen, seen, [7, 8, 9], c, 5, lambda pa: 4)
    assert merged == [Pte(0x1000, 3, 0), Tlbi("vmid_ipa", 0x4000_0000, 3), Put(0x1000, 4),
                      Put(0x1000, 3)]
    assert idx == [5, 7, 8, 9]
    (d,) = differences(pseen, seen, [7, 8, 9], [70, 80, 90], 5, 50)
    assert (d.tag, d.index, d.after, d.ts) == ("unexpected", 9, False, 90)


def test_a_missing_put_drops_the_free_it_would_have_caused() -> None:
    c = _comparer(ALL_KINDS)
    effs = [Put(0x2000, 0), Free(0x2000), Dsb("ish")]
    pseen, where = c.predicted(effs)
    merged, _idx = merge(effs, where, pseen, [], [], c, 5, lambda pa: 1)
    assert merged == [Dsb("ish")]
    (d,) = differences(pseen, [], [], [], 5, 50)
    assert (d.tag, d.index, d.after) == ("missing", 5, True)


def test_a_repeated_put_that_frees_is_the_extra_one_after_the_free() -> None:
    # the kernel's put that drops a table page to 0 frees it (no probe shows the free);
    # a second, identical put is the bug: it must come after the free in the merged
    # stream, whichever copy difflib happened to align with the prediction
    c = _comparer(ALL_KINDS)
    effs = [Put(0x2000, 0), Free(0x2000), Put(0x3000, 1)]
    pseen, where = c.predicted(effs)
    seen = [pseen[0], pseen[0], pseen[1]]
    merged, idx = merge(effs, where, pseen, seen, [7, 8, 9], c, 5, lambda pa: 0)
    assert merged[:2] == [Put(0x2000, 0), Free(0x2000)]
    assert [(type(e), e.pa) for e in merged[2:]] == [(Put, 0x2000), (Put, 0x3000)]
    assert idx == [7, 7, 8, 9]
    (d,) = differences(pseen, seen, [7, 8, 9], [70, 80, 90], 5, 50)
    assert (d.tag, d.index) == ("unexpected", 8)


@given(st.lists(st.sampled_from("PQRS"), max_size=8), st.lists(st.sampled_from("PQRS"),
                                                               max_size=8))
def test_opcodes_still_describe_the_same_edit(p: list[str], o: list[str]) -> None:
    ops = opcodes(p, o)
    i = j = 0
    for tag, i1, i2, j1, j2 in ops:
        assert (i1, j1) == (i, j)
        if tag == "equal":
            assert p[i1:i2] == o[j1:j2]
        i, j = i2, j2
    assert (i, j) == (len(p), len(o))
    # no insertion is followed by an equal block starting with what it inserted
    for a, b in zip(ops, ops[1:], strict=False):
        if a[0] == "insert" and b[0] == "equal":
            assert o[a[3]] != o[b[3]]
