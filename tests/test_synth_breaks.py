"""Where a TLBI or a break is the real thing: ptreplay.synth.breaks against the architecture.

The cases are the sequences pgtable.c makes (Linux 6.1 and 5.13), written by
hand; what each must give follows from DDI 0487 J.a D8.14.1 (which changes of
a live entry need break-before-make) and the TLBI rules (a by-IPA TLBI with
no level hint invalidates the entries and walks of that IPA at every level; a
level hint describes a leaf entry, and one that does not match need not
invalidate anything).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ptreplay.effects import Pte, Tlbi
from ptreplay.synth.breaks import CallBreaks, TableGeometry, grants_more, needs_bbm

NO_HINT = frozenset({0})
AF = 1 << 10
S2AP_R, S2AP_W = 1 << 6, 1 << 7
XN = 0x3 << 53
MEMATTR_NORMAL = 0xF << 2
PGD = 0x10000            # a 40-bit, start-level-1 stage-2: two concatenated pgd pages
L2, L3 = 0x20000, 0x30000
GIB, MIB = 1 << 30, 1 << 20
IPA_L3 = GIB + 6 * MIB   # the range L3 maps (level-1 entry 1, level-2 entry 3)


def page(pa: int, perms: int = S2AP_R | S2AP_W) -> int:
    """A valid level-3 page entry (normal memory, inner shareable, AF set)."""
    return pa | 0x3 | MEMATTR_NORMAL | (0x3 << 8) | AF | perms


def block(pa: int, perms: int = S2AP_R | S2AP_W) -> int:
    """A valid level-2 block entry."""
    return pa | 0x1 | MEMATTR_NORMAL | (0x3 << 8) | AF | perms


def geometry() -> TableGeometry:
    """The pgd, a level-2 table under level-1 entry 1, a level-3 table under its entry 3."""
    g = TableGeometry(linear_offset=0)
    g.add_root(0, PGD, 40, 1)
    assert g.store(PGD + 8, L2 | 3) == (1, GIB, 2 * GIB)
    assert g.store(L2 + 3 * 8, L3 | 3) == (2, IPA_L3, IPA_L3 + 2 * MIB)
    return g


def leaf(i: int) -> int:
    return L3 + 8 * i


def ipa(i: int) -> int:
    return IPA_L3 + i * 0x1000


def test_the_geometry_places_concatenated_pgd_pages_and_linked_tables() -> None:
    g = geometry()
    # the second pgd page continues the first: its entry 0 maps 512 GiB
    assert g.store(PGD + 0x1000, 0) == (1, 512 * GIB, 513 * GIB)
    assert g.store(leaf(5), 0) == (3, ipa(5), ipa(6))
    assert g.store(0x99000, 0) is None  # a page nobody linked


def test_unmap_of_a_page_only_its_own_tlbi_covers_it() -> None:
    calls = CallBreaks([Pte(leaf(5), page(0x8000_0000), 0), Tlbi("vmid_ipa", ipa(5), 3)],
                       geometry(), NO_HINT)
    (b,) = calls.breaks
    assert (b.level, b.lo, b.hi, b.table) == (3, ipa(5), ipa(6), False)
    assert calls.sole_cover(1) == [b]
    assert calls.uncovered_by_level(1, 2) == [b]


def test_a_table_zap_tlbi_at_the_same_ipa_makes_the_leaf_tlbi_redundant() -> None:
    # 6.1: unmap the last page of a table, then zap the table with no level hint at the
    # same IPA: that TLBI invalidates the leaf too, so leaving out the leaf's is no bug
    seq = [Pte(leaf(5), page(0x8000_0000), 0), Tlbi("vmid_ipa", ipa(5), 3),
           Pte(L2 + 3 * 8, L3 | 3, 0), Tlbi("vmid_ipa", ipa(5), 0)]
    calls = CallBreaks(seq, geometry(), NO_HINT)
    assert calls.sole_cover(1) == []
    assert calls.uncovered_by_level(1, 2) == []
    assert calls.sole_cover(3) == []  # a table entry's: not a leaf left stale


def test_a_table_zap_tlbi_with_a_level_hint_is_a_near_miss() -> None:
    # 5.13 hinted table zaps with the table's level: it covers neither the table nor the
    # leaf, so removing the leaf's TLBI would read as a wrong level hint, not a missing TLBI
    seq = [Pte(leaf(5), page(0x8000_0000), 0), Tlbi("vmid_ipa", ipa(5), 3),
           Pte(L2 + 3 * 8, L3 | 3, 0), Tlbi("vmid_ipa", ipa(5), 2)]
    calls = CallBreaks(seq, geometry(), NO_HINT)
    assert calls.sole_cover(1) == []
    assert calls.completed[3] == []  # the hinted table TLBI completed nothing


def test_a_later_whole_vmid_tlbi_covers_everything() -> None:
    seq = [Pte(leaf(5), page(0x8000_0000), 0), Tlbi("vmid_ipa", ipa(5), 3), Tlbi("vmid")]
    calls = CallBreaks(seq, geometry(), NO_HINT)
    assert calls.sole_cover(1) == [] and calls.uncovered_by_level(1, 2) == []


def test_other_pages_tlbis_do_not_matter_but_a_tlbi_that_hits_nothing_does() -> None:
    seq = [Pte(leaf(5), page(0x8000_0000), 0), Tlbi("vmid_ipa", ipa(5), 3),
           Pte(leaf(6), page(0x8000_1000), 0), Tlbi("vmid_ipa", ipa(6), 3)]
    calls = CallBreaks(seq, geometry(), NO_HINT)
    assert [b.lo for b in calls.sole_cover(1)] == [ipa(5)]
    stray = seq + [Tlbi("vmid_ipa", ipa(9), 3)]  # meant for no pending break
    assert CallBreaks(stray, geometry(), NO_HINT).sole_cover(1) == []


def test_a_break_remade_with_only_the_access_flag_added_is_harmless() -> None:
    old = page(0x8000_0000) & ~AF
    same = [Pte(leaf(5), old, 0), Tlbi("vmid_ipa", ipa(5), 3), Pte(leaf(5), 0, old | AF)]
    assert CallBreaks(same, geometry(), NO_HINT).sole_cover(1) == []
    fewer = [Pte(leaf(5), old, 0), Tlbi("vmid_ipa", ipa(5), 3),
             Pte(leaf(5), 0, (old | AF) & ~S2AP_W)]  # write permission taken away
    assert len(CallBreaks(fewer, geometry(), NO_HINT).sole_cover(1)) == 1
    moved = [Pte(leaf(5), old, 0), Tlbi("vmid_ipa", ipa(5), 3),
             Pte(leaf(5), 0, page(0x9000_0000))]  # another page: the stale one is a hole
    assert len(CallBreaks(moved, geometry(), NO_HINT).sole_cover(1)) == 1


def test_a_block_split_into_a_table() -> None:
    # a block at level-2 entry 4 split (set_owner/map of a page inside it): break, TLBI
    # at the block's level, then the table entry
    ptep = L2 + 4 * 8
    lo = GIB + 8 * MIB
    seq = [Pte(ptep, block(0x4D00_0000), 0), Tlbi("vmid_ipa", lo + 0x11000, 2),
           Pte(ptep, 0, 0x40000 | 3), Pte(0x40000 + 0x11 * 8, 0, page(0x4D01_1000))]
    calls = CallBreaks(seq, geometry(), NO_HINT)
    (b,) = calls.breaks
    assert (b.level, b.lo, b.hi) == (2, lo, lo + 2 * MIB)
    assert calls.sole_cover(1) == [b]
    assert calls.uncovered_by_level(1, 3) == [b]
    assert calls.uncovered_by_level(1, 2) == []  # the right level is no bug
    assert not calls.unknown  # the new table was placed by its table entry


def test_needs_bbm_follows_d8_14_1() -> None:
    p = page(0x8000_0000)
    assert not needs_bbm(p, p, 3)
    assert not needs_bbm(p & ~AF, p, 3)                      # Access flag
    assert not needs_bbm(p, p & ~S2AP_W, 3)                  # permissions
    assert not needs_bbm(p, p | XN, 3)
    assert needs_bbm(p, page(0x8000_1000), 3)                # output address
    assert needs_bbm(p, p & ~MEMATTR_NORMAL, 3)              # memory type
    assert needs_bbm(block(0x8000_0000), 0x40000 | 3, 2)     # block -> table
    assert needs_bbm(0x40000 | 3, block(0x8000_0000), 2)     # table -> block
    assert not needs_bbm(0x40000 | 3, 0x40000 | 3, 2)
    assert needs_bbm(0x40000 | 3, 0x50000 | 3, 2)            # another table


_NO_BBM_BITS = AF | S2AP_R | S2AP_W | XN | (1 << 51) | (0xF << 55)


@given(pfn=st.integers(1, (1 << 36) - 1), flip=st.integers(0, _NO_BBM_BITS),
       oa_bit=st.integers(12, 47))
def test_only_output_address_and_attribute_changes_need_bbm(pfn: int, flip: int,
                                                            oa_bit: int) -> None:
    old = page(pfn << 12)
    new = old ^ (flip & _NO_BBM_BITS)
    assert not needs_bbm(old, new, 3)
    assert needs_bbm(old, new ^ (1 << oa_bit), 3)
    # a stale entry is a hole when it allowed an access the new one does not
    assert not grants_more(old, old | (flip & (AF | S2AP_R | S2AP_W)))
    assert grants_more(old, old & ~S2AP_W) and grants_more(old, old | (flip & XN or XN))
