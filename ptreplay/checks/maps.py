"""Ownership and mapping maps of the shadow page tables.

* :func:`ownership_map` -- for one stage-2, which owner id holds each IPA
  range: an invalid entry carrying an owner id (``set_owner``) gives its range
  to that owner, everything else belongs to the host (0); runs of one owner
  are merged.
* :func:`ptdump` -- the mapping map in the layout of the kernel's stage-2
  ptdump debugfs file (``/sys/kernel/debug/kvm/<vm>/stage2_page_tables``,
  arch/arm64/kvm/ptdump.c with the shared note_page() of
  arch/arm64/mm/ptdump.c): a ``---[ Guest IPA ]---`` header, then one line per
  run of leaf entries with the same level and the same valid/R/W/XN/AF/block
  bits: ``0x<start>-0x<end>   <size><unit> <level>`` and the attribute
  columns. The kernel's walk never reaches the end marker, so the live file
  omits the last run; ptreplay prints it (the one intended difference).
* :func:`mappings` -- the same walk with what ptdump leaves out: output
  address, memory type, permissions, Access flag, owner of invalid ranges;
  runs merge only when the output addresses are contiguous too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from ptreplay.checks.pte import (
    ATTR_AF,
    granule_shift,
    leaf_oa,
    perms_string,
    pte_is_table,
    table_addr,
)
from ptreplay.checks.shadow import Root, Shadow
from ptreplay.model.profiles import Profile

__all__ = ["LAYOUTS", "root_maps", "OwnerRun", "MapRun", "ownership_map", "ptdump", "mappings",
           "leaf_entries", "format_ownership", "format_mappings", "memtype_name"]


class OwnerRun(NamedTuple):
    """``[start, end)`` of IPA space held by ``owner`` (0: the host)."""

    start: int
    end: int
    owner: int


class MapRun(NamedTuple):
    """A run of leaf entries: IPA ``[start, end)``, ``level``, the first entry's value,
    and the output address of ``start`` (None when invalid)."""

    start: int
    end: int
    level: int
    pte: int
    pa: int | None


def leaf_entries(shadow: Shadow, root: Root) -> Iterator[tuple[int, int, int]]:
    """Every leaf-level entry of ``root`` in IPA order, zeros included: (ipa, level, value).

    This is the walk ``kvm_pgtable_walk()`` does with ``KVM_PGTABLE_WALK_LEAF``:
    table descriptors are descended into, everything else is a leaf.
    """
    end = 1 << root.ia_bits
    shift = shadow.page_shift
    entries = shadow.entry_mask + 1
    stack = []
    for page in reversed(shadow.pgd_pages(root)):
        stack.append((page, 0))
    while stack:
        page, first = stack.pop()
        level = page.level if page.level is not None else root.start_level
        gshift = granule_shift(level, shift)
        vals = page.vals
        for idx in range(first, entries):
            ipa = page.base + (idx << gshift)
            if ipa >= end:
                return
            val = vals.get(idx, 0)
            if level < 3 and val & 3 == 3:
                child = shadow.pages.get(table_addr(val, shift) >> shift)
                if child is not None and child.parent == page.pa + idx * 8:
                    stack.append((page, idx + 1))
                    stack.append((child, 0))
                    break
            yield ipa, level, val


def ownership_map(shadow: Shadow, root: Root, profile: Profile) -> list[OwnerRun]:
    """Who owns each IPA range of ``root`` (host = 0), runs of one owner merged."""
    runs: list[OwnerRun] = []
    shift = shadow.page_shift
    locked = profile.locked_pte
    for ipa, level, val in leaf_entries(shadow, root):
        owner = 0 if val & 1 or val == locked else profile.owner_of(val)
        end = ipa + (1 << granule_shift(level, shift))
        if runs and runs[-1].owner == owner and runs[-1].end == ipa:
            runs[-1] = OwnerRun(runs[-1].start, end, owner)
        else:
            runs.append(OwnerRun(ipa, end, owner))
    return runs


# --- ptdump ---------------------------------------------------------------------------------

_PT_MASK = 1 | (1 << 6) | (1 << 7) | (3 << 53) | ATTR_AF | 3
_XN = {0: "px ux ", 1: "PXNux ", 2: "PXNUXN", 3: "px UXN"}


def _prot_columns(prot: int) -> str:
    """``dump_prot()`` with arch/arm64/kvm/ptdump.c's ``stage2_pte_bits``."""
    cols = [
        " " if prot & 1 else "F",
        "R" if prot & (1 << 6) else " ",
        "W" if prot & (1 << 7) else " ",
        _XN[(prot >> 53) & 3],
        "AF" if prot & ATTR_AF else "  ",
        "BLK" if prot & 3 == 1 else "   ",
    ]
    return "".join(" " + c for c in cols)


def _size(delta: int) -> str:
    units = "KMGTPE"
    value = delta >> 10
    unit = 0
    while not value & 1023 and unit + 1 < len(units) and value:
        value >>= 10
        unit += 1
    return f"{value:9d}{units[unit]}"


def ptdump(shadow: Shadow, root: Root) -> str:
    """The stage-2 ptdump text of ``root`` (kernel layout, last run included)."""
    lines = ["---[ Guest IPA ]---"]
    cur_level = -1
    cur_prot = 0
    start = 0

    def emit(end: int) -> None:
        text = f"0x{start:016x}-0x{end:016x}   {_size(end - start)} {cur_level}"
        if cur_prot:
            text += _prot_columns(cur_prot)
        lines.append(text)

    for ipa, level, val in leaf_entries(shadow, root):
        prot = val & _PT_MASK
        if cur_level == -1:
            cur_level, cur_prot, start = level, prot, ipa
        elif prot != cur_prot or level != cur_level:
            emit(ipa)
            cur_level, cur_prot, start = level, prot, ipa
    if cur_level != -1:
        emit(1 << root.ia_bits)
    return "\n".join(lines) + "\n"


# --- full mapping map ---------------------------------------------------------------------------

_MEMATTR = {0xF: "normal", 0x5: "normal-nc", 0x1: "device-nGnRE", 0x0: "device-nGnRnE",
            0x2: "device-nGRE", 0x3: "device-GRE"}
_MEMATTR_FWB = {0x6: "normal", 0x5: "normal-nc", 0x1: "device-nGnRE", 0x0: "device-nGnRnE",
                0x2: "device-nGRE", 0x3: "device-GRE"}


def memtype_name(pte: int, fwb: bool = False) -> str:
    """Stage-2 MemAttr[5:2] as a name (FEAT_S2FWB changes the encoding)."""
    attr = (pte >> 2) & 0xF
    return (_MEMATTR_FWB if fwb else _MEMATTR).get(attr, f"memattr-{attr:#x}")


def mappings(shadow: Shadow, root: Root) -> list[MapRun]:
    """Runs of leaf entries with the same level and attributes and contiguous output."""
    runs: list[MapRun] = []
    shift = shadow.page_shift
    amask = ((1 << 48) - 1) & ~((1 << shift) - 1)
    for ipa, level, val in leaf_entries(shadow, root):
        size = 1 << granule_shift(level, shift)
        valid = bool(val & 1) and not pte_is_table(val, level)
        pa = leaf_oa(val, level, shift) if valid else None
        if runs:
            last = runs[-1]
            same = last.level == level and last.end == ipa and \
                (last.pte & ~amask) == (val & ~amask)
            if same and valid:
                same = last.pa is not None and last.pa + (ipa - last.start) == pa
            elif same:
                same = last.pa is None and last.pte == val
            if same:
                runs[-1] = last._replace(end=ipa + size)
                continue
        runs.append(MapRun(ipa, ipa + size, level, val, pa))
    return runs


def format_mappings(shadow: Shadow, root: Root, profile: Profile,
                    fwb: bool = False) -> str:
    """The mapping map as text: IPA range, size, level, then PA range, perms, type, AF."""
    lines = [f"---[ stage-2 {root.pgd:#x}: IPA bits {root.ia_bits}, start level "
             f"{root.start_level} ]---"]
    for run in mappings(shadow, root):
        head = f"0x{run.start:016x}-0x{run.end:016x} {_size(run.end - run.start)} {run.level}"
        if run.pa is None:
            owner = 0 if run.pte == profile.locked_pte else profile.owner_of(run.pte)
            if owner:
                lines.append(f"{head}  owner {owner}")
            elif run.pte:
                lines.append(f"{head}  invalid {run.pte:#x}")
            else:
                lines.append(f"{head}  -")
            continue
        end = run.pa + (run.end - run.start)
        af = "AF" if run.pte & ATTR_AF else "--"
        lines.append(f"{head}  0x{run.pa:012x}-0x{end:012x} {perms_string(run.pte)} "
                     f"{memtype_name(run.pte, fwb)} {af}")
    return "\n".join(lines) + "\n"


def format_ownership(runs: list[OwnerRun], root: Root) -> str:
    """The ownership map as text, one run per line."""
    lines = [f"---[ stage-2 {root.pgd:#x}: owners ]---"]
    for run in runs:
        who = "host" if run.owner == 0 else f"owner {run.owner}"
        lines.append(f"0x{run.start:016x}-0x{run.end:016x} {_size(run.end - run.start)} {who}")
    return "\n".join(lines) + "\n"


# What ``--layout`` may ask for (``maps`` and ``replay`` alike).
LAYOUTS = {
    "all": "owners, then full",
    "owners": "which owner id holds each IPA range (host = 0, runs merged)",
    "ptdump": "the kernel's stage-2 ptdump debugfs layout, to diff with a live dump",
    "full": "IPA -> PA, level, permissions, memory type, AF",
}


def root_maps(shadow: Shadow, root: Root, profile: Profile, fwb: bool, layout: str) -> str:
    """One root's maps as text, in one of the :data:`LAYOUTS`."""
    parts = []
    if layout in ("all", "owners"):
        parts.append(format_ownership(ownership_map(shadow, root, profile), root))
    if layout == "ptdump":
        parts.append(ptdump(shadow, root))
    if layout in ("all", "full"):
        parts.append(format_mappings(shadow, root, profile, fwb))
    return "".join(parts)
