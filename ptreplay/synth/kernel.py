"""The kernel a synthetic trace pretends to come from: release, symbols, addresses.

A real capture-kit trace carries kernel addresses everywhere: ``__probe_ip``
(the probed function), ``__probe_func`` / ``__probe_ret_ip`` (the function
and the call site it returns to), ``pgt`` / ``mmu`` / ``kvm`` / memory-cache
pointers, and table pages and guest pages as linear-map virtual addresses.
:class:`KernelImage` gives ``ptreplay gen`` those values for one kernel series:

* **linux-6.1**: the symbol addresses of Debian's 6.1.0-56-arm64 as the
  ``vhe-rich-v7`` recording's ``/proc/kallsyms`` shows them (one KASLR
  boot), the call sites its return probes saw, the linear map of that boot
  (``PAGE_OFFSET`` 0xffff000000000000, RAM from PA 0x40000000), the
  ``kvm_s2_mm_ops`` address;
* **linux-5.13**: no recording exists; the same layout moved to another
  KASLR base, with 5.13's function names (``kvm_pgtable_stage2_init_flags``,
  ``kvm_host_zalloc_pages_exact``, ``free_pages_exact``,
  ``kvm_host_put_page``, ``__flush_dcache_area``) at the addresses of their
  6.1 successors. These addresses are synthetic, not a real 5.13 build's.

Call sites a recording never showed (``is_young``, ``set_owner`` of the pKVM
host stage-2, maps from ``kvm_phys_addr_ioremap``) are placed inside the
calling function.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

__all__ = ["KernelImage", "kernel_image", "SERIES_OF_PROFILE", "LINEAR_OFFSET"]

#: model profile -> kernel series of its probe set.
SERIES_OF_PROFILE = {"linux-6.1": "6.1", "linux-5.13": "5.13"}

#: ``virt - phys`` of the arm64 linear map in the recordings' boot (PAGE_OFFSET
#: 0xffff000000000000 maps PHYS_OFFSET 0x40000000).
LINEAR_OFFSET = 0xFFFF000000000000 - 0x40000000

# Debian 6.1.0-56-arm64, vhe-rich-v7 boot (l1-info/kallsyms.full.gz): symbol -> address.
_KALLSYMS_6_1: dict[str, int] = {
    "_stext": 0xFFFFA7F9F4A10000,
    "dcache_clean_inval_poc": 0xFFFFA7F9F4A39498,
    "kvm_mmu_notifier_test_young": 0xFFFFA7F9F4A4BA00,
    "kvm_mmu_notifier_clear_flush_young": 0xFFFFA7F9F4A4BF20,
    "kvm_mmu_notifier_invalidate_range_start": 0xFFFFA7F9F4A4D0E4,
    "kvm_host_page_count": 0xFFFFA7F9F4A5D0A4,
    "invalidate_icache_guest_page": 0xFFFFA7F9F4A5D114,
    "clean_dcache_guest_page": 0xFFFFA7F9F4A5D180,
    "stage2_apply_range": 0xFFFFA7F9F4A5D1C0,
    "kvm_host_get_page": 0xFFFFA7F9F4A5D3B0,
    "kvm_s2_put_page": 0xFFFFA7F9F4A5D420,
    "kvm_host_put_page": 0xFFFFA7F9F4A5D500,
    "kvm_s2_free_pages_exact": 0xFFFFA7F9F4A5D590,
    "kvm_s2_zalloc_pages_exact": 0xFFFFA7F9F4A5D604,
    "stage2_memcache_zalloc_page": 0xFFFFA7F9F4A5D680,
    "stage2_flush_vm": 0xFFFFA7F9F4A5D7E0,
    "kvm_flush_remote_tlbs": 0xFFFFA7F9F4A5D930,
    "kvm_init_stage2_mmu": 0xFFFFA7F9F4A5E450,
    "stage2_unmap_vm": 0xFFFFA7F9F4A5E5F0,
    "kvm_free_stage2_pgd": 0xFFFFA7F9F4A5E824,
    "kvm_phys_addr_ioremap": 0xFFFFA7F9F4A5E900,
    "kvm_arch_mmu_enable_log_dirty_pt_masked": 0xFFFFA7F9F4A5EA94,
    "kvm_handle_guest_abort": 0xFFFFA7F9F4A5EAF4,
    "kvm_unmap_gfn_range": 0xFFFFA7F9F4A5F7E0,
    "kvm_set_spte_gfn": 0xFFFFA7F9F4A5F830,
    "kvm_age_gfn": 0xFFFFA7F9F4A5F8E0,
    "kvm_test_age_gfn": 0xFFFFA7F9F4A5F960,
    "kvm_arch_flush_shadow_memslot": 0xFFFFA7F9F4A5FFF0,
    "kvm_toggle_cache": 0xFFFFA7F9F4A60154,
    "__kvm_tlb_flush_vmid_ipa": 0xFFFFA7F9F4A85600,
    "__kvm_tlb_flush_vmid": 0xFFFFA7F9F4A856D0,
    "__kvm_flush_cpu_context": 0xFFFFA7F9F4A85760,
    "__kvm_flush_vm_context": 0xFFFFA7F9F4A857E0,
    "stage2_unmap_walker": 0xFFFFA7F9F4A8B2B0,
    "stage2_map_walk_leaf": 0xFFFFA7F9F4A8B624,
    "kvm_pgtable_stage2_map": 0xFFFFA7F9F4A8C070,
    "kvm_pgtable_stage2_set_owner": 0xFFFFA7F9F4A8C210,
    "kvm_pgtable_stage2_unmap": 0xFFFFA7F9F4A8C300,
    "kvm_pgtable_stage2_wrprotect": 0xFFFFA7F9F4A8C370,
    "kvm_pgtable_stage2_mkyoung": 0xFFFFA7F9F4A8C400,
    "kvm_pgtable_stage2_mkold": 0xFFFFA7F9F4A8C4A0,
    "kvm_pgtable_stage2_is_young": 0xFFFFA7F9F4A8C540,
    "kvm_pgtable_stage2_relax_perms": 0xFFFFA7F9F4A8C5E0,
    "kvm_pgtable_stage2_flush": 0xFFFFA7F9F4A8C710,
    "__kvm_pgtable_stage2_init": 0xFFFFA7F9F4A8C7C0,
    "kvm_pgtable_stage2_destroy": 0xFFFFA7F9F4A8C884,
    "tracing_mark_write": 0xFFFFA7F9F4BDE824,
    "free_pages_exact": 0xFFFFA7F9F4D332E0,
    "__kvm_nvhe_kvm_host_prepare_stage2": 0xFFFFA7F9F56F49E0,
    "__kvm_nvhe_host_stage2_set_owner_locked": 0xFFFFA7F9F56F4DD4,
    # placed (not in the recording's kallsyms excerpt): the pKVM host's force_pte_cb
    "__kvm_nvhe_host_stage2_force_pte_cb": 0xFFFFA7F9F56F4C10,
    "_etext": 0xFFFFA7F9F5700000,
}

# 5.13 names at the address of their 6.1 successor (see the module docstring).
_RENAMED_5_13 = {
    "kvm_pgtable_stage2_init_flags": "__kvm_pgtable_stage2_init",
    "kvm_host_zalloc_pages_exact": "kvm_s2_zalloc_pages_exact",
    "__flush_dcache_area": "dcache_clean_inval_poc",
}
_OLD_NAME = {new: old for old, new in _RENAMED_5_13.items()}
_GONE_IN_5_13 = frozenset(["__kvm_pgtable_stage2_init", "kvm_s2_zalloc_pages_exact",
                           "kvm_s2_free_pages_exact", "kvm_s2_put_page",
                           "dcache_clean_inval_poc", "clean_dcache_guest_page",
                           "invalidate_icache_guest_page"])
_KASLR_5_13 = 0xFFFFC4B2D8E10000 - 0xFFFFA7F9F4A10000

# Return sites: (probed function, caller) -> offset from the caller's symbol, as the
# recordings' __probe_ret_ip show (kvm_handle_guest_abort holds the inlined user_mem_abort
# and handle_access_fault; stage2_apply_range calls unmap/wrprotect/flush).
_RET_SITES: dict[str, tuple[str, int]] = {
    "fault_map": ("kvm_handle_guest_abort", 0x538),
    "fault_relax": ("kvm_handle_guest_abort", 0xA10),
    "access_fault": ("kvm_handle_guest_abort", 0x7A0),
    "set_spte": ("kvm_set_spte_gfn", 0x90),
    "ioremap": ("kvm_phys_addr_ioremap", 0x12C),
    "apply_range": ("stage2_apply_range", 0xD0),
    "age": ("kvm_age_gfn", 0x4C),
    "test_age": ("kvm_test_age_gfn", 0x4C),
    "init": ("kvm_init_stage2_mmu", 0x74),
    "destroy": ("kvm_free_stage2_pgd", 0x6C),
    "host_stage2": ("__kvm_nvhe_host_stage2_set_owner_locked", 0x58),
    "host_prepare": ("__kvm_nvhe_kvm_host_prepare_stage2", 0x94),
    # helpers called from the walkers
    "kvm_host_page_count": ("stage2_unmap_walker", 0xC8),
    "stage2_memcache_zalloc_page": ("stage2_map_walk_leaf", 0x1BC),
    "zalloc_pages_exact": ("__kvm_pgtable_stage2_init", 0x80),
    # the notifier callbacks' returns
    "kvm_age_gfn": ("kvm_mmu_notifier_clear_flush_young", 0xC8),
    "kvm_test_age_gfn": ("kvm_mmu_notifier_test_young", 0xC8),
}


@dataclass(frozen=True)
class KernelImage:
    """Addresses and names of one synthetic kernel (see the module docstring).

    :param series: ``"6.1"`` or ``"5.13"``.
    :param release: the ``uname -r`` the trace records.
    :param symbols: symbol -> address.
    :param mm_ops: address of the stage-2 ``struct kvm_pgtable_mm_ops``.
    :param host_mm_ops: address of the pKVM host stage-2's mm_ops.
    :param struct_kvm_mmu: offset of ``kvm->arch.mmu`` in ``struct kvm``.
    """

    series: str
    release: str
    symbols: dict[str, int]
    mm_ops: int
    host_mm_ops: int
    struct_kvm_mmu: int

    @property
    def uname(self) -> str:
        """trace-cmd's UNAME option: ``sysname nodename release machine``."""
        return f"Linux ptreplay-gen {self.release} aarch64"

    def addr(self, symbol: str) -> int:
        """Address of ``symbol`` (0 when this kernel has no such symbol)."""
        return self.symbols.get(symbol, 0)

    def ret_site(self, site: str) -> int:
        """``__probe_ret_ip`` of a return to call site ``site`` (see ``_RET_SITES``)."""
        func, off = _RET_SITES[site]
        addr = self.symbols.get(func)
        if addr is None:  # a 6.1 name this series calls otherwise
            addr = self.symbols[_OLD_NAME[func]]
        return addr + off

    def kallsyms(self) -> str:
        """The KALLSYMS text (``/proc/kallsyms`` lines) of the symbols above, by address."""
        lines = []
        for name, addr in sorted(self.symbols.items(), key=lambda kv: (kv[1], kv[0])):
            kind = "D" if name == "_etext" else "T"
            lines.append(f"{addr:016x} {kind} {name}\n")
        return "".join(lines)


@cache
def kernel_image(series: str) -> KernelImage:
    """The synthetic kernel of a series (``"6.1"`` or ``"5.13"``)."""
    if series == "6.1":
        return KernelImage("6.1", "6.1.0-56-arm64", dict(_KALLSYMS_6_1),
                           mm_ops=0xFFFFA7F9F66D1E38, host_mm_ops=0xFFFFA7F9F66D2A40,
                           struct_kvm_mmu=0x9C8)
    if series == "5.13":
        symbols = {name: addr + _KASLR_5_13 for name, addr in _KALLSYMS_6_1.items()
                   if name not in _GONE_IN_5_13}
        for old, new in _RENAMED_5_13.items():
            symbols[old] = _KALLSYMS_6_1[new] + _KASLR_5_13
        return KernelImage("5.13", "5.13.0-1-arm64", symbols,
                           mm_ops=0xFFFFA7F9F66D1E38 + _KASLR_5_13,
                           host_mm_ops=0xFFFFA7F9F66D2A40 + _KASLR_5_13, struct_kvm_mmu=0x9A0)
    raise KeyError(f"no synthetic kernel for Linux {series} (known: 6.1, 5.13)")
