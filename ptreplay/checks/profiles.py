"""Kernel-profile parameters the checkers need to decode stage-2 entries.

Stage-2 descriptors are architectural (see :mod:`ptreplay.checks.pte`); the
only kernel-specific parts the checkers need are:

* where an invalid entry keeps its owner id (``KVM_INVALID_PTE_OWNER_MASK``):
  bits 63:56 in v5.13 (the page-ownership patch,
  shared/reference/seed-patch-kvm-arm64-page-ownership.txt) and bits 9:2 from
  v5.14 on (arch/arm64/kvm/hyp/pgtable.c of 6.1 and 6.12);
* which entries a table page's refcount counts (``stage2_pte_is_counted()``:
  ``!!pte`` in every profile: valid entries and non-zero invalid ones);
* the TLBI level value that means "no level hint": 0 in 5.13 and 6.1
  (``__tlbi_level()`` ignores level 0), 0 or ``TLBI_TTL_UNKNOWN`` (INT_MAX)
  in 6.12;
* the granule (4 KiB, or 16 KiB for ``linux-6.12-16k``);
* 6.12's ``KVM_INVALID_PTE_LOCKED`` marker (bit 10 of an invalid entry).

This module is small on purpose: the lead folds it into the model's kernel
profiles at integration, and the checkers keep reading these fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from ptreplay.errors import InputError

__all__ = ["DecodeProfile", "PROFILES", "DEFAULT_PROFILE", "get_profile"]


@dataclass(frozen=True)
class DecodeProfile:
    """How one kernel series encodes what the checkers read from entries.

    :param name: the profile name (``linux-6.1``).
    :param page_shift: ``PAGE_SHIFT`` of the build (12: 4 KiB granule).
    :param owner_shift: lowest bit of ``KVM_INVALID_PTE_OWNER_MASK``.
    :param owner_bits: width of the owner field (8 in every profile).
    :param no_level_hints: TLBI ``level`` values meaning "level unknown".
    :param locked_pte: ``KVM_INVALID_PTE_LOCKED`` (6.12), or None.
    """

    name: str
    page_shift: int
    owner_shift: int
    owner_bits: int = 8
    no_level_hints: frozenset[int] = frozenset({0})
    locked_pte: int | None = None

    @property
    def owner_mask(self) -> int:
        """``KVM_INVALID_PTE_OWNER_MASK``."""
        return ((1 << self.owner_bits) - 1) << self.owner_shift

    def owner_of(self, pte: int) -> int:
        """Owner id stored in an invalid entry (``FIELD_GET(OWNER_MASK, pte)``); 0 if valid."""
        if pte & 1:
            return 0
        return (pte >> self.owner_shift) & ((1 << self.owner_bits) - 1)

    def owner_pte(self, owner_id: int) -> int:
        """``kvm_init_invalid_leaf_owner(owner_id)``."""
        return (owner_id & ((1 << self.owner_bits) - 1)) << self.owner_shift

    @staticmethod
    def is_counted(pte: int) -> bool:
        """``stage2_pte_is_counted()``: ``!!pte`` in 5.13, 6.1 and 6.12."""
        return pte != 0


_TTL_UNKNOWN = 0x7FFFFFFF  # 6.12 TLBI_TTL_UNKNOWN (INT_MAX)

PROFILES: dict[str, DecodeProfile] = {
    "linux-5.13": DecodeProfile("linux-5.13", page_shift=12, owner_shift=56),
    "linux-6.1": DecodeProfile("linux-6.1", page_shift=12, owner_shift=2),
    "linux-6.12": DecodeProfile("linux-6.12", page_shift=12, owner_shift=2,
                                no_level_hints=frozenset({0, _TTL_UNKNOWN}), locked_pte=0x400),
    "linux-6.12-16k": DecodeProfile("linux-6.12-16k", page_shift=14, owner_shift=2,
                                    no_level_hints=frozenset({0, _TTL_UNKNOWN}),
                                    locked_pte=0x400),
}

DEFAULT_PROFILE = "linux-6.1"


def get_profile(name: str) -> DecodeProfile:
    """Return the profile called ``name``; an unknown name is an :class:`InputError`."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise InputError(f"unknown kernel profile {name!r} (known: {known})") from None
