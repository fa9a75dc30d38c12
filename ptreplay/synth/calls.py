"""The stage-2 calls a synthetic workload makes, and the tasks that make them.

A :class:`Call` is one call of the stage-2 API of pgtable.c
(``kvm_pgtable_stage2_map`` ...), with the arguments the model needs, the
pointer values the trace shows (``mc``), the task and CPU it runs on, and
its caller (``fault``, ``set_spte``, ``age`` ...), which decides the context
events around it and the return address its return probe shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Task", "Call", "OP_FUNCS", "RET_FIELDS"]

#: operation -> the pgtable.c function per kernel series (5.13 differs only for init).
OP_FUNCS: dict[str, str] = {
    "map": "kvm_pgtable_stage2_map",
    "set_owner": "kvm_pgtable_stage2_set_owner",
    "unmap": "kvm_pgtable_stage2_unmap",
    "wrprotect": "kvm_pgtable_stage2_wrprotect",
    "relax_perms": "kvm_pgtable_stage2_relax_perms",
    "mkyoung": "kvm_pgtable_stage2_mkyoung",
    "mkold": "kvm_pgtable_stage2_mkold",
    "is_young": "kvm_pgtable_stage2_is_young",
    "flush": "kvm_pgtable_stage2_flush",
    "destroy": "kvm_pgtable_stage2_destroy",
    "init": "__kvm_pgtable_stage2_init",
}

#: what the return value of each operation is (the return probe's field).
RET_FIELDS: dict[str, str | None] = {
    "mkyoung": "pte", "mkold": "pte", "destroy": None,
}


@dataclass(slots=True)
class Task:
    """A task that makes stage-2 calls: ``pid``, ``comm`` and the CPU it runs on now."""

    pid: int
    comm: str
    cpu: int


@dataclass(slots=True)
class Call:
    """One stage-2 call.

    :param root: the driver's root id.
    :param op: ``init``, ``map``, ``set_owner``, ``unmap``, ``wrprotect``, ``relax_perms``,
        ``mkyoung``, ``mkold``, ``is_young``, ``flush`` or ``destroy``.
    :param args: ``addr``, ``size``, ``phys``, ``prot``, ``owner_id`` as the op takes them;
        for ``init``: ``vtcr``, ``flags``, ``force_pte``.
    :param mc: the memory-cache pointer the trace shows (0: NULL).
    :param mc_limit: pages the memory cache can hand out (``None``: as many as needed).
    :param task: who calls.
    :param caller: the call site (see :mod:`ptreplay.synth.events`).
    :param ctx: values of the context events (fault address, HVA, slot, ...).
    :param planted: this call is an injected bug (a workload-level injection).
    """

    root: int
    op: str
    args: dict[str, int]
    task: Task
    caller: str = "plain"
    mc: int = 0
    mc_limit: int | None = None
    ctx: dict[str, Any] = field(default_factory=dict)
    planted: bool = False
