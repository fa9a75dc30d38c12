"""Geometry as the kernel derives it (numbers from the oracle's FORMAT.md)."""

from __future__ import annotations

import pytest

from ptreplay.model import stage2_vtcr
from ptreplay.model.geometry import (
    GRANULE_4K,
    GRANULE_16K,
    VTCR_EL2_IPA,
    kvm_pgd_pages,
    vtcr_start_level,
)


def _default(ia_bits, g):
    vtcr = stage2_vtcr(ia_bits, granule=g)
    level = vtcr_start_level(vtcr, g)
    return level, kvm_pgd_pages(ia_bits, level, g)


@pytest.mark.parametrize("ia_bits", range(22, 49))
def test_4k_default_start_level(ia_bits):
    level, _ = _default(ia_bits, GRANULE_4K)
    assert level == (2 if ia_bits <= 34 else 1 if ia_bits <= 43 else 0)


@pytest.mark.parametrize("ia_bits,pages", [(32, 4), (34, 16), (36, 1), (40, 2), (43, 16),
                                           (44, 1), (48, 1)])
def test_4k_pgd_pages(ia_bits, pages):
    assert _default(ia_bits, GRANULE_4K)[1] == pages


@pytest.mark.parametrize("ia_bits,level,pages", [(26, 2, 1), (36, 2, 1), (37, 2, 2), (40, 2, 16),
                                                 (41, 1, 1), (47, 1, 1), (48, 1, 2)])
def test_16k_geometry(ia_bits, level, pages):
    assert _default(ia_bits, GRANULE_16K) == (level, pages)


def test_granule_shifts_and_blocks():
    assert [GRANULE_4K.kvm_granule_shift(lv) for lv in range(4)] == [39, 30, 21, 12]
    assert [GRANULE_16K.kvm_granule_shift(lv) for lv in range(4)] == [47, 36, 25, 14]
    assert [GRANULE_4K.kvm_level_supports_block_mapping(lv) for lv in range(4)] == [
        False, True, True, True]
    assert [GRANULE_16K.kvm_level_supports_block_mapping(lv) for lv in range(4)] == [
        False, False, True, True]
    assert GRANULE_16K.ptrs_per_pte == 2048


def test_vtcr_of_the_oracle_init():
    vtcr = stage2_vtcr(40, 1)
    assert vtcr == 0x802D3558
    assert VTCR_EL2_IPA(vtcr) == 40 and vtcr_start_level(vtcr, GRANULE_4K) == 1
