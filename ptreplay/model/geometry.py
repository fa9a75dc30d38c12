"""Stage-2 geometry: granule, levels, concatenated pgd pages, VTCR_EL2.

Mirrors the geometry helpers that ``arch/arm64/kvm/hyp/pgtable.c`` uses from
``asm/kvm_pgtable.h`` (``kvm_granule_shift``, ``kvm_granule_size``,
``kvm_level_supports_block_mapping``), ``asm/pgtable-hwdef.h``
(``ARM64_HW_PGTABLE_LEVEL_SHIFT``, ``ARM64_HW_PGTABLE_LEVELS``),
``asm/kvm_arm.h`` (the ``VTCR_EL2`` fields) and ``asm/stage2_pgtable.h``
(``stage2_pgtable_levels``), plus pgtable.c's own ``kvm_get_vtcr``,
``__kvm_pgd_page_idx`` and ``kvm_pgd_pages``.

Everything that depends on ``PAGE_SHIFT`` is a field or method of one
:class:`Granule` object, built once per page size (4 KiB today; 16 KiB and
64 KiB are the same object with another ``page_shift``). The granule is part
of the *platform* (what the kernel was built for), not of the kernel profile.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "KVM_PGTABLE_MAX_LEVELS",
    "Granule",
    "GRANULE_4K",
    "GRANULE_16K",
    "GRANULE_64K",
    "granule_for",
    "ID_AA64MMFR0_EL1_PARANGE_48",
    "ID_AA64MMFR1_EL1_VMIDBITS_16",
    "PA_BITS",
    "VTCR_EL2_SL0_SHIFT",
    "VTCR_EL2_SL0_MASK",
    "VTCR_EL2_IPA",
    "kvm_get_vtcr",
    "vtcr_start_level",
    "__kvm_pgd_page_idx",
    "kvm_pgd_pages",
]

#: ``KVM_PGTABLE_MAX_LEVELS``: levels 0..3.
KVM_PGTABLE_MAX_LEVELS = 4

# asm/kvm_arm.h and asm/pgtable-hwdef.h: the VTCR_EL2 fields kvm_get_vtcr() sets.
VTCR_EL2_RES1 = 1 << 31
VTCR_EL2_HA = 1 << 21
VTCR_EL2_VS_16BIT = 1 << 19
VTCR_EL2_VS_8BIT = 0
VTCR_EL2_PS_SHIFT = 16
VTCR_EL2_TG0_SHIFT = 14
VTCR_EL2_SH0_INNER = 3 << 12
VTCR_EL2_ORGN0_WBWA = 1 << 10
VTCR_EL2_IRGN0_WBWA = 1 << 8
VTCR_EL2_SL0_SHIFT = 6
VTCR_EL2_SL0_MASK = 3 << VTCR_EL2_SL0_SHIFT
VTCR_EL2_T0SZ_MASK = 0x3F
VTCR_EL2_COMMON_BITS = (
    VTCR_EL2_SH0_INNER | VTCR_EL2_ORGN0_WBWA | VTCR_EL2_IRGN0_WBWA | VTCR_EL2_RES1
)

#: ``ID_AA64MMFR0_EL1.PARange`` = 0b0101: 48-bit PA (also PARANGE_MAX without 52-bit PA).
ID_AA64MMFR0_EL1_PARANGE_48 = 0b0101
#: ``ID_AA64MMFR1_EL1.VMIDBits`` = 0b0010: 16-bit VMID.
ID_AA64MMFR1_EL1_VMIDBITS_16 = 0b0010
#: ``id_aa64mmfr0_parange_to_phys_shift(ID_AA64MMFR0_EL1_PARANGE_MAX)`` with
#: ``CONFIG_ARM64_PA_BITS=48``: ``kvm_phys_is_valid(pa)`` is ``pa < 2**PA_BITS``.
PA_BITS = 48

_U64 = (1 << 64) - 1


@dataclass(frozen=True)
class Granule:
    """Everything in the stage-2 code that follows from ``PAGE_SHIFT``.

    :param page_shift: ``PAGE_SHIFT`` of the kernel build (12, 14 or 16).
    """

    page_shift: int
    page_size: int = field(init=False)
    page_mask: int = field(init=False)
    ptrs_per_pte: int = field(init=False)
    #: ``KVM_PTE_ADDR_MASK``: ``GENMASK(47, PAGE_SHIFT)``.
    pte_addr_mask: int = field(init=False)
    #: ``KVM_PGTABLE_MIN_BLOCK_LEVEL``: 1 with 4 KiB pages (1 GiB blocks), else 2.
    min_block_level: int = field(init=False)
    #: ``VTCR_EL2_TGRAN``: the TG0 encoding of this granule.
    vtcr_tgran: int = field(init=False)
    #: ``VTCR_EL2_TGRAN_SL0_BASE``: ``start_level = SL0_BASE - SL0``.
    tgran_sl0_base: int = field(init=False)
    #: ``kvm_granule_shift(level)`` for levels -1..3 (index ``level + 1``).
    granule_shifts: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        ps = self.page_shift
        if ps not in (12, 14, 16):
            raise ValueError(f"unsupported PAGE_SHIFT {ps}")
        s = object.__setattr__
        s(self, "page_size", 1 << ps)
        s(self, "page_mask", (1 << ps) - 1)
        s(self, "ptrs_per_pte", 1 << (ps - 3))
        s(self, "pte_addr_mask", ((1 << 48) - 1) & ~((1 << ps) - 1))
        s(self, "min_block_level", 1 if ps == 12 else 2)
        s(self, "vtcr_tgran", {12: 0, 14: 2, 16: 1}[ps] << VTCR_EL2_TG0_SHIFT)
        s(self, "tgran_sl0_base", 2 if ps == 12 else 3)
        s(self, "granule_shifts", tuple(self.arm64_hw_pgtable_level_shift(lv)
                                        for lv in range(-1, KVM_PGTABLE_MAX_LEVELS)))

    @property
    def name(self) -> str:
        """``4k``, ``16k`` or ``64k``."""
        return f"{self.page_size // 1024}k"

    def arm64_hw_pgtable_level_shift(self, n: int) -> int:
        """``ARM64_HW_PGTABLE_LEVEL_SHIFT(n)``: the VA shift that level ``n`` resolves."""
        return (self.page_shift - 3) * (4 - n) + 3

    def arm64_hw_pgtable_levels(self, va_bits: int) -> int:
        """``ARM64_HW_PGTABLE_LEVELS(va_bits)``: levels a stage-1 walk of va_bits needs."""
        return (va_bits - 4) // (self.page_shift - 3)

    def kvm_granule_shift(self, level: int) -> int:
        """``kvm_granule_shift()`` (asm/kvm_pgtable.h): assumes 4 levels.

        Level -1 is allowed: ``__kvm_pgd_page_idx`` asks for it with start level 0
        (the kernel's "may underflow" u32 arithmetic gives the same number).
        """
        return self.granule_shifts[level + 1]

    def kvm_granule_size(self, level: int) -> int:
        """``kvm_granule_size()``: bytes mapped by one entry at ``level``."""
        return 1 << self.granule_shifts[level + 1]

    def kvm_level_supports_block_mapping(self, level: int) -> bool:
        """``kvm_level_supports_block_mapping()`` as in 6.1 (asm/kvm_pgtable.h).

        5.13 spells it ``!(level == 0 || (PAGE_SIZE != SZ_4K && level == 1))``
        in pgtable.c; both give levels 1..3 with 4 KiB pages and 2..3 otherwise.
        """
        return level >= self.min_block_level

    def stage2_pgtable_levels(self, ipa: int) -> int:
        """``stage2_pgtable_levels(ipa)`` (asm/stage2_pgtable.h): up to 16 concatenated pgds."""
        return self.arm64_hw_pgtable_levels(ipa - 4)

    def vtcr_el2_lvls_to_sl0(self, levels: int) -> int:
        """``VTCR_EL2_LVLS_TO_SL0(levels)``, already shifted into place."""
        return (self.tgran_sl0_base - (4 - levels)) << VTCR_EL2_SL0_SHIFT


GRANULE_4K = Granule(12)
GRANULE_16K = Granule(14)
GRANULE_64K = Granule(16)


def granule_for(page_size: int) -> Granule:
    """The :class:`Granule` of a page size in bytes (4096, 16384 or 65536)."""
    for g in (GRANULE_4K, GRANULE_16K, GRANULE_64K):
        if g.page_size == page_size:
            return g
    raise ValueError(f"no arm64 granule of {page_size} bytes")


def VTCR_EL2_IPA(vtcr: int) -> int:  # noqa: N802 - the kernel's macro name
    """``VTCR_EL2_IPA(vtcr)``: ``64 - T0SZ``."""
    return 64 - (vtcr & VTCR_EL2_T0SZ_MASK)


def vtcr_start_level(vtcr: int, granule: Granule) -> int:
    """``VTCR_EL2_TGRAN_SL0_BASE - SL0``: the start level stage-2 init derives."""
    return granule.tgran_sl0_base - ((vtcr & VTCR_EL2_SL0_MASK) >> VTCR_EL2_SL0_SHIFT)


def kvm_get_vtcr(mmfr0: int, mmfr1: int, phys_shift: int, granule: Granule = GRANULE_4K,
                 *, ampere_ac03: bool = False) -> int:
    """``kvm_get_vtcr()`` (pgtable.c, 5.13 and 6.1).

    ``PS`` from ``mmfr0`` (capped at ``PARANGE_MAX``, 48 bits), ``T0SZ`` from
    ``phys_shift``, at least two levels, ``HA`` set (``CONFIG_ARM64_HW_AFDBM``;
    6.1 leaves it out on the Ampere AC03 erratum, ``ampere_ac03``), ``VS`` from
    the VMID width in ``mmfr1``.

    :param mmfr0: ``u64`` ID_AA64MMFR0_EL1.
    :param mmfr1: ``u64`` ID_AA64MMFR1_EL1.
    :param phys_shift: ``u32`` IPA size in bits.
    """
    vtcr = VTCR_EL2_COMMON_BITS | granule.vtcr_tgran
    parange = mmfr0 & 0xF
    if parange > ID_AA64MMFR0_EL1_PARANGE_48:
        parange = ID_AA64MMFR0_EL1_PARANGE_48
    vtcr |= parange << VTCR_EL2_PS_SHIFT
    vtcr |= (64 - phys_shift) & _U64
    lvls = granule.stage2_pgtable_levels(phys_shift)
    if lvls < 2:
        lvls = 2
    vtcr |= granule.vtcr_el2_lvls_to_sl0(lvls)
    if not ampere_ac03:
        vtcr |= VTCR_EL2_HA
    vmid_bits = 16 if ((mmfr1 >> 4) & 0xF) == ID_AA64MMFR1_EL1_VMIDBITS_16 else 8
    vtcr |= VTCR_EL2_VS_16BIT if vmid_bits == 16 else VTCR_EL2_VS_8BIT
    return vtcr & _U64


def __kvm_pgd_page_idx(ia_bits: int, start_level: int, addr: int, granule: Granule) -> int:
    """``__kvm_pgd_page_idx()``: which concatenated pgd page covers ``addr``.

    The kernel takes ``struct kvm_pgtable *``; only its ``ia_bits`` and
    ``start_level`` are used.
    """
    shift = granule.kvm_granule_shift(start_level - 1)  # may "underflow" to level -1
    mask = (1 << ia_bits) - 1
    return (addr & mask) >> shift


def kvm_pgd_pages(ia_bits: int, start_level: int, granule: Granule = GRANULE_4K) -> int:
    """``kvm_pgd_pages()``: number of concatenated pgd pages."""
    return __kvm_pgd_page_idx(ia_bits, start_level, _U64, granule) + 1
