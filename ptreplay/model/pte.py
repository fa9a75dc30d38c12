"""Stage-2 descriptor encoding: the ``KVM_PTE_*`` bits and the pure PTE helpers.

Mirrors the descriptor definitions at the top of ``arch/arm64/kvm/hyp/pgtable.c``
and ``asm/kvm_pgtable.h`` (5.13, 6.1 and 6.12): valid/table/block/page descriptors,
the stage-2 leaf attributes (MemAttr, S2AP, SH, AF, XN, software bits), the
owner annotation of invalid entries (``KVM_INVALID_PTE_OWNER_MASK``, whose
position is a profile fact: bits 63:56 in 5.13, 9:2 from 6.1 on), and the helpers
that only look at a value: ``kvm_pte_valid``, ``kvm_pte_table``,
``kvm_pte_to_phys``, ``kvm_phys_to_pte``, ``kvm_init_valid_leaf_pte``,
``kvm_init_invalid_leaf_owner``, ``stage2_pte_needs_update``,
``stage2_pte_is_counted``, ``stage2_pte_executable``, ``kvm_phys_is_valid``.

Entries are plain ``int`` values (``kvm_pte_t``); nothing here allocates.
The address mask depends on the granule: helpers that need it take a
:class:`~ptreplay.model.geometry.Granule` (52-bit PA layouts are not modelled).
"""

from __future__ import annotations

from ptreplay.model.geometry import KVM_PGTABLE_MAX_LEVELS, PA_BITS, Granule

__all__ = [
    "KVM_PTE_VALID",
    "KVM_PTE_TYPE",
    "KVM_PTE_TYPE_BLOCK",
    "KVM_PTE_TYPE_PAGE",
    "KVM_PTE_TYPE_TABLE",
    "KVM_PTE_LEAF_ATTR_LO",
    "KVM_PTE_LEAF_ATTR_HI",
    "KVM_PTE_LEAF_ATTR_LO_S2_MEMATTR",
    "KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R",
    "KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W",
    "KVM_PTE_LEAF_ATTR_LO_S2_SH",
    "KVM_PTE_LEAF_ATTR_LO_S2_SH_IS",
    "KVM_PTE_LEAF_ATTR_LO_S2_AF",
    "KVM_PTE_LEAF_ATTR_HI_SW",
    "KVM_PTE_LEAF_ATTR_HI_S2_XN",
    "KVM_PTE_LEAF_ATTR_S2_PERMS",
    "KVM_MAX_OWNER_ID",
    "KVM_PHYS_INVALID",
    "KVM_PGTABLE_PROT_X",
    "KVM_PGTABLE_PROT_W",
    "KVM_PGTABLE_PROT_R",
    "KVM_PGTABLE_PROT_DEVICE",
    "KVM_PGTABLE_PROT_NORMAL_NC",
    "KVM_PGTABLE_PROT_SW0",
    "KVM_PGTABLE_PROT_SW1",
    "KVM_PGTABLE_PROT_SW2",
    "KVM_PGTABLE_PROT_SW3",
    "KVM_PGTABLE_S2_NOFWB",
    "KVM_PGTABLE_S2_IDMAP",
    "MT_S2_NORMAL",
    "MT_S2_DEVICE_nGnRE",
    "MT_S2_FWB_NORMAL",
    "MT_S2_FWB_DEVICE_nGnRE",
    "MT_S2_NORMAL_NC",
    "MT_S2_FWB_NORMAL_NC",
    "KVM_INVALID_PTE_LOCKED",
    "TLBI_TTL_UNKNOWN",
    "PAGE_S2_MEMATTR",
    "genmask",
    "kvm_pte_valid",
    "kvm_pte_table",
    "kvm_pte_to_phys",
    "kvm_phys_to_pte",
    "kvm_init_valid_leaf_pte",
    "kvm_init_invalid_leaf_owner",
    "kvm_phys_is_valid",
    "stage2_pte_needs_update",
    "stage2_pte_is_counted",
    "stage2_pte_executable",
]


def genmask(hi: int, lo: int) -> int:
    """``GENMASK(hi, lo)``: bits ``lo``..``hi`` set."""
    return ((1 << (hi + 1)) - 1) & ~((1 << lo) - 1)


KVM_PTE_VALID = 1 << 0

KVM_PTE_TYPE = 1 << 1
KVM_PTE_TYPE_BLOCK = 0
KVM_PTE_TYPE_PAGE = 1
KVM_PTE_TYPE_TABLE = 1

KVM_PTE_LEAF_ATTR_LO = genmask(11, 2)
KVM_PTE_LEAF_ATTR_LO_S2_MEMATTR = genmask(5, 2)
KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R = 1 << 6
KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W = 1 << 7
KVM_PTE_LEAF_ATTR_LO_S2_SH = genmask(9, 8)
KVM_PTE_LEAF_ATTR_LO_S2_SH_IS = 3
KVM_PTE_LEAF_ATTR_LO_S2_AF = 1 << 10

KVM_PTE_LEAF_ATTR_HI = genmask(63, 51)
KVM_PTE_LEAF_ATTR_HI_SW = genmask(58, 55)
KVM_PTE_LEAF_ATTR_HI_S2_XN = 1 << 54

KVM_PTE_LEAF_ATTR_S2_PERMS = (
    KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R | KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W | KVM_PTE_LEAF_ATTR_HI_S2_XN
)

#: ``KVM_MAX_OWNER_ID`` (5.13 and 6.1): only the host (0) and the hypervisor (1).
KVM_MAX_OWNER_ID = 1

#: ``KVM_PHYS_INVALID`` (-1ULL): the "phys" of a set_owner walk.
KVM_PHYS_INVALID = (1 << 64) - 1

# enum kvm_pgtable_prot
KVM_PGTABLE_PROT_X = 1 << 0
KVM_PGTABLE_PROT_W = 1 << 1
KVM_PGTABLE_PROT_R = 1 << 2
KVM_PGTABLE_PROT_DEVICE = 1 << 3
KVM_PGTABLE_PROT_NORMAL_NC = 1 << 4  # 6.12
KVM_PGTABLE_PROT_SW0 = 1 << 55
KVM_PGTABLE_PROT_SW1 = 1 << 56
KVM_PGTABLE_PROT_SW2 = 1 << 57
KVM_PGTABLE_PROT_SW3 = 1 << 58

# enum kvm_pgtable_stage2_flags
KVM_PGTABLE_S2_NOFWB = 1 << 0
KVM_PGTABLE_S2_IDMAP = 1 << 1

# asm/memory.h memory types (the same in 5.13 and 6.1)
MT_S2_NORMAL = 0xF
MT_S2_DEVICE_nGnRE = 0x1  # noqa: N816 - the kernel's name
MT_S2_FWB_NORMAL = 6
MT_S2_FWB_DEVICE_nGnRE = 1  # noqa: N816 - the kernel's name
# ... and Normal non-cacheable (6.12's KVM_PGTABLE_PROT_NORMAL_NC)
MT_S2_NORMAL_NC = 0x5
MT_S2_FWB_NORMAL_NC = 5

#: ``KVM_INVALID_PTE_LOCKED`` (6.12): an invalid entry in the middle of a
#: break-before-make (bit 10; owner ids live in bits 9:2).
KVM_INVALID_PTE_LOCKED = 1 << 10

#: ``TLBI_TTL_UNKNOWN`` (6.12 asm/tlbflush.h, ``INT_MAX``): "no level hint".
TLBI_TTL_UNKNOWN = 0x7FFF_FFFF


def PAGE_S2_MEMATTR(normal: bool, has_fwb: bool) -> int:  # noqa: N802 - the kernel's macro
    """``PAGE_S2_MEMATTR(NORMAL|DEVICE_nGnRE, has_fwb)``: ``PTE_S2_MEMATTR(MT_S2[_FWB]_*)``."""
    if has_fwb:
        mt = MT_S2_FWB_NORMAL if normal else MT_S2_FWB_DEVICE_nGnRE
    else:
        mt = MT_S2_NORMAL if normal else MT_S2_DEVICE_nGnRE
    return mt << 2


def kvm_pte_valid(pte: int) -> bool:
    """``kvm_pte_valid()``: bit 0."""
    return bool(pte & KVM_PTE_VALID)


def kvm_pte_table(pte: int, level: int) -> bool:
    """``kvm_pte_table()``: a valid table descriptor (never at the last level)."""
    if level == KVM_PGTABLE_MAX_LEVELS - 1:
        return False
    return (pte & 3) == 3  # valid, and KVM_PTE_TYPE == KVM_PTE_TYPE_TABLE


def kvm_pte_to_phys(pte: int, granule: Granule) -> int:
    """``kvm_pte_to_phys()``: output address bits 47:PAGE_SHIFT.

    Leaves out the 64 KiB granule's PA bits 51:48 (52-bit PA is not modelled).
    """
    return pte & granule.pte_addr_mask


def kvm_phys_to_pte(pa: int, granule: Granule) -> int:
    """``kvm_phys_to_pte()``: the address field of a descriptor for ``pa``.

    Leaves out the 64 KiB granule's PA bits 51:48 (52-bit PA is not modelled).
    """
    return pa & granule.pte_addr_mask


def kvm_init_valid_leaf_pte(pa: int, attr: int, level: int, granule: Granule) -> int:
    """``kvm_init_valid_leaf_pte()``: a page (last level) or block descriptor."""
    pte = pa & granule.pte_addr_mask
    pte |= attr & (KVM_PTE_LEAF_ATTR_LO | KVM_PTE_LEAF_ATTR_HI)
    if level == KVM_PGTABLE_MAX_LEVELS - 1:
        pte |= KVM_PTE_TYPE_PAGE << 1
    return pte | KVM_PTE_VALID


def kvm_init_invalid_leaf_owner(owner_id: int, owner_shift: int) -> int:
    """``kvm_init_invalid_leaf_owner()``: ``FIELD_PREP(KVM_INVALID_PTE_OWNER_MASK, id)``.

    :param owner_id: ``u8`` owner id.
    :param owner_shift: low bit of ``KVM_INVALID_PTE_OWNER_MASK`` (a profile
        fact: 56 in 5.13, 2 in 6.1); the mask is 8 bits wide in both.
    """
    return (owner_id & 0xFF) << owner_shift


def kvm_phys_is_valid(phys: int) -> bool:
    """``kvm_phys_is_valid()``: below the largest PA the kernel supports (48 bits)."""
    return phys < (1 << PA_BITS)


def stage2_pte_needs_update(old: int, new: int) -> bool:
    """``stage2_pte_needs_update()``: anything but a permission change of a valid leaf."""
    if not (old & KVM_PTE_VALID) or not (new & KVM_PTE_VALID):
        return True
    return bool((old ^ new) & ~KVM_PTE_LEAF_ATTR_S2_PERMS)


def stage2_pte_is_counted(pte: int) -> bool:
    """``stage2_pte_is_counted()``: valid entries and non-zero owner annotations."""
    return pte != 0


def stage2_pte_executable(pte: int) -> bool:
    """``stage2_pte_executable()`` (6.1): XN clear."""
    return not (pte & KVM_PTE_LEAF_ATTR_HI_S2_XN)
