"""Architectural decoding of VMSAv8-64 translation table descriptors.

Stage 2 (the KVM guest and pKVM host stage-2 tables) is what ptreplay is
about; casemate logs also carry EL2 stage-1 tables, whose descriptors share
the same shape. Everything here follows the Arm ARM (DDI 0487), section D8.3
"Translation table descriptor formats", with 48-bit output addresses (no
LPA2): bit 0 valid; at levels 0-2 bit 1 set is a table descriptor and clear a
block; at level 3 bits[1:0] = 0b11 is a page and 0b01 is reserved (it
translates like an invalid entry, casemate reports it as an invalid
encoding).

Leaf attributes, stage 2: MemAttr[5:2], S2AP[7:6], SH[9:8], AF[10], DBM[51],
Contiguous[52], XN[54:53], software bits [58:55]. Stage 1 (EL2): AttrIndx[4:2],
AP[7:6], SH[9:8], AF[10], nG[11], DBM[51], Contiguous[52], PXN[53], UXN[54].

:func:`bbm_reason` is the break-before-make rule of DDI 0487 J.a D8.14.1
("Using break-before-make when updating translation table entries"): a
valid-to-valid change needs the break when it changes the output address, the
block size (block <-> table, or a different table), the memory type or
cacheability, the shareability, or the Contiguous bit; changes only to the
permissions, the Access flag, DBM or the software bits do not.
"""

from __future__ import annotations

__all__ = [
    "STAGE1",
    "STAGE2",
    "pte_valid",
    "pte_is_table",
    "pte_is_leaf",
    "pte_bad_encoding",
    "granule_shift",
    "entries_per_table",
    "table_addr",
    "leaf_oa",
    "bbm_reason",
    "describe_pte",
    "perms_string",
    "ATTR_AF",
]

STAGE1 = 1
STAGE2 = 2

_ADDR_MASK_48 = (1 << 48) - 1
ATTR_MEMATTR = 0xF << 2
ATTR_S2AP = 0x3 << 6
ATTR_S2AP_R = 1 << 6
ATTR_S2AP_W = 1 << 7
ATTR_SH = 0x3 << 8
ATTR_AF = 1 << 10
ATTR_NG = 1 << 11
ATTR_DBM = 1 << 51
ATTR_CONT = 1 << 52
ATTR_XN = 0x3 << 53
ATTR_XN54 = 1 << 54
ATTR_SW = 0xF << 55

# Bits whose change never needs break-before-make (D8.14.1): permissions,
# Access flag, dirty-bit modifier, software bits.
_NO_BBM = {
    STAGE2: ATTR_S2AP | ATTR_AF | ATTR_DBM | ATTR_XN | ATTR_SW,
    STAGE1: ATTR_S2AP | ATTR_AF | ATTR_DBM | ATTR_XN | ATTR_SW,
}


def granule_shift(level: int, page_shift: int = 12) -> int:
    """``kvm_granule_shift(level)``: log2 of the size one entry at ``level`` maps."""
    return page_shift + (3 - level) * (page_shift - 3)


def entries_per_table(page_shift: int = 12) -> int:
    """``PTRS_PER_PTE``: entries in one table page."""
    return 1 << (page_shift - 3)


def pte_valid(pte: int) -> bool:
    """``kvm_pte_valid()``: bit 0."""
    return bool(pte & 1)


def pte_is_table(pte: int, level: int) -> bool:
    """``kvm_pte_table()``: a valid table descriptor (never at level 3)."""
    return level < 3 and (pte & 3) == 3


def pte_is_leaf(pte: int, level: int) -> bool:
    """A valid block (levels 1-2) or page (level 3) descriptor."""
    if not pte & 1:
        return False
    if level == 3:
        return (pte & 3) == 3
    return (pte & 3) == 1 and level > 0


def pte_bad_encoding(pte: int, level: int, page_shift: int = 12) -> bool:
    """A valid bit with a reserved encoding: a block at level 0 (or at level 1
    with a 16/64 KiB granule), or ``0b01`` at level 3."""
    if not pte & 1:
        return False
    if level == 3:
        return (pte & 3) != 3
    if (pte & 3) == 1:
        return level == 0 or (level == 1 and page_shift != 12)
    return False


def table_addr(pte: int, page_shift: int = 12) -> int:
    """Next-level table address of a table descriptor (bits [47:PAGE_SHIFT])."""
    return pte & _ADDR_MASK_48 & ~((1 << page_shift) - 1)


def leaf_oa(pte: int, level: int, page_shift: int = 12) -> int:
    """Output address of a block or page descriptor (bits [47:granule shift])."""
    return pte & _ADDR_MASK_48 & ~((1 << granule_shift(level, page_shift)) - 1)


def bbm_reason(old: int, new: int, level: int, stage: int = STAGE2,
               page_shift: int = 12) -> str | None:
    """Why replacing valid ``old`` by valid ``new`` needs break-before-make, or None.

    Follows D8.14.1 (DDI 0487 J.a) for entries at the same level. Unlike
    casemate 3.0.2, the Access flag of either entry does not waive the rule:
    KVM enables hardware Access-flag updates (VTCR_EL2.HA), so an entry whose
    AF is 0 in memory may already be cached with AF set.
    """
    if old == new:
        return None
    old_table = pte_is_table(old, level)
    new_table = pte_is_table(new, level)
    if old_table and new_table:
        if table_addr(old, page_shift) != table_addr(new, page_shift):
            return "table entry now points at a different table"
        if stage == STAGE1 and (old ^ new) >> 59:
            return "hierarchical table attributes change"
        return None
    if old_table:
        return "table entry replaced by a block (block size changes)"
    if new_table:
        return "block replaced by a table entry (block size changes)"
    if leaf_oa(old, level, page_shift) != leaf_oa(new, level, page_shift):
        return "output address changes"
    diff = old ^ new
    if diff & ATTR_MEMATTR:
        return "memory type/cacheability changes" if stage == STAGE2 else "AttrIndx changes"
    if diff & ATTR_SH:
        return "shareability changes"
    if diff & ATTR_CONT:
        return "Contiguous bit changes"
    if stage == STAGE1 and diff & ATTR_NG:
        return "nG changes"
    oa_mask = _ADDR_MASK_48 & ~((1 << granule_shift(level, page_shift)) - 1)
    rest = diff & ~(_NO_BBM[stage] | oa_mask | 3)
    if rest:
        return f"attribute bits {rest:#x} change"
    return None


def perms_string(pte: int, stage: int = STAGE2) -> str:
    """``RWX``-style permissions of a leaf (``-`` for a missing permission)."""
    if stage == STAGE2:
        r = "R" if pte & ATTR_S2AP_R else "-"
        w = "W" if pte & ATTR_S2AP_W else "-"
        x = "-" if pte & ATTR_XN54 else "X"
        return r + w + x
    ap = (pte >> 6) & 3
    w = "W" if ap in (0, 1) else "-"
    x = "-" if pte & ATTR_XN else "X"
    return "R" + w + x


def describe_pte(pte: int, level: int | None, stage: int = STAGE2, page_shift: int = 12,
                 owner: int | None = None) -> str:
    """A short human description of an entry, for explanations."""
    if not pte & 1:
        if pte == 0:
            return "0 (invalid)"
        if owner:
            return f"{pte:#x} (invalid, owner {owner})"
        return f"{pte:#x} (invalid)"
    if level is None:
        return f"{pte:#x} (valid, level unknown)"
    if pte_bad_encoding(pte, level, page_shift):
        return f"{pte:#x} (reserved encoding at level {level})"
    if pte_is_table(pte, level):
        return f"{pte:#x} (table -> {table_addr(pte, page_shift):#x})"
    kind = "page" if level == 3 else "block"
    af = " AF" if pte & ATTR_AF else ""
    return (f"{pte:#x} (L{level} {kind} -> {leaf_oa(pte, level, page_shift):#x} "
            f"{perms_string(pte, stage)}{af})")
