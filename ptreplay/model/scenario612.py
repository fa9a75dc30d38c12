"""Scenarios on the linux-6.12 profiles: the oracle's 6.12 harness over ``stage2_612``.

Everything of :class:`~ptreplay.model.scenario.ScenarioRunner` holds (input
and output format, ``init`` refusals, one table at a time, one bump
allocator per run, in the profile's page size); what the 6.12 harness adds
(FORMAT.md, "6.12 additions"):

* ``init``: ``tlb_range`` (``system_supports_tlb_range()``); the pgd from
  ``mmu->vtcr``;
* ``map``: ``flags``, the caller's ``enum kvm_pgtable_walk_flags`` (``SHARED``,
  ``HANDLE_FAULT``, ``SKIP_BBM_TLBI``, ``SKIP_CMO``); ``prot`` may name
  ``NORMAL_NC``;
* ``split``: ``kvm_pgtable_stage2_split`` with ``mmu->split_page_cache``
  holding ``mc_pages`` pages (default 1048576) for the op, leftovers dropped;
* ``test_clear_young``: ``kvm_pgtable_stage2_test_clear_young`` (``ret`` 0/1);
  ``mkold`` / ``is_young`` run it on the page of ``addr`` (6.12 has neither
  function), so their ``ret`` is 0/1 as well;
* after every operation the RCU grace period ends: the callbacks it queued
  (deferred table frees) run, in order, before the checks; the checks add
  "no ``KVM_INVALID_PTE_LOCKED`` entry left, no RCU read section open".
"""

from __future__ import annotations

from typing import Any

from ptreplay.model import stage2_612
from ptreplay.model.scenario import ScenarioOp, ScenarioRunner
from ptreplay.model.state import check_shared_walk_state
from ptreplay.model.structs import KvmPgtable

__all__ = ["ScenarioRunner612", "SPLIT_CACHE_PAGES"]

#: Pages in ``mmu->split_page_cache`` for a ``split`` without ``mc_pages``: "enough".
SPLIT_CACHE_PAGES = 1 << 20


class ScenarioRunner612(ScenarioRunner):
    """Runs scenario operations like the oracle's 6.12 harness (see the module docs)."""

    s2: Any = stage2_612

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ops.update({
            "split": self._split,
            "test_clear_young": self._test_clear_young,
        })

    def _call(self, op: ScenarioOp) -> Any:
        ret = super()._call(op)
        # The oracle ends an RCU grace period when each operation returns.
        if self._mm_ops is not None:
            self._mm_ops.m.rcu_barrier()
        return ret

    def _check(self, op: ScenarioOp, pgt: KvmPgtable) -> None:
        super()._check(op, pgt)
        for problem in check_shared_walk_state(pgt):
            self.problems.append((op.line, problem))

    # -- operations -----------------------------------------------------------

    def _map(self, op: ScenarioOp, pgt: KvmPgtable) -> int:
        addr, size, phys = op.number("addr"), op.number("size"), op.number("phys")
        prot = self._prot(op)
        flags = op.names("flags", self.profile.map_flag_names, "flag", required=False)
        return stage2_612.kvm_pgtable_stage2_map(pgt, addr, size, phys, prot, op.memcache(),
                                                 flags)

    def _mkold(self, op: ScenarioOp, pgt: KvmPgtable) -> int:
        return int(stage2_612.kvm_pgtable_stage2_test_clear_young(pgt, op.number("addr"), 1,
                                                                  True))

    def _is_young(self, op: ScenarioOp, pgt: KvmPgtable) -> int:
        return int(stage2_612.kvm_pgtable_stage2_test_clear_young(pgt, op.number("addr"), 1,
                                                                  False))

    def _test_clear_young(self, op: ScenarioOp, pgt: KvmPgtable) -> int:
        addr, size = op.number("addr"), op.number("size", 1)
        mkold = op.boolean("mkold", False)
        return int(stage2_612.kvm_pgtable_stage2_test_clear_young(pgt, addr, size, mkold))

    def _split(self, op: ScenarioOp, pgt: KvmPgtable) -> int:
        addr, size = op.number("addr"), op.number("size")
        mc = pgt.mmu.split_page_cache
        mc.nobjs = op.number("mc_pages", SPLIT_CACHE_PAGES)
        try:
            return stage2_612.kvm_pgtable_stage2_split(pgt, addr, size, mc)
        finally:
            mc.nobjs = 0  # leftover objects are dropped after the op
