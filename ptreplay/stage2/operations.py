"""From trace events to stage-2 operations with their observed effects.

A trace of the capture kit's probes (schemas/kprobes) is a time-ordered
stream of entry and return events of the stage-2 API of
arch/arm64/kvm/hyp/pgtable.c (``kvm_pgtable_stage2_map`` ...
``kvm_pgtable_stage2_destroy``), of the mm_ops callbacks and TLB helpers
those functions call (``kvm_host_get_page``, ``kvm_s2_put_page``,
``__kvm_tlb_flush_vmid_ipa`` ...), of their callers in mmu.c and of kvm:*
tracepoints. :class:`OperationBuilder` turns that stream into
:class:`Operation` records:

* entry and return probes are paired per task (a kretprobe fires on the task
  that made the call), with nesting: helper calls (``kvm_host_page_count``,
  ``stage2_memcache_zalloc_page``, ``kvm_pgtable_stage2_create_unlinked``)
  nest inside an operation, operations never nest in each other;
* the effect probes that fire between an operation's entry and return on its
  task become its :attr:`Operation.effects`, as :mod:`ptreplay.effects`
  records holding kernel virtual addresses (the allocation effects tie those
  addresses to table pages); which event shows which effect is the table of
  :mod:`ptreplay.capture.probe_effects` (``ptreplay gen`` reads it the other
  way), including the ``ptreplay:stage2_pte_store`` instrumentation
  tracepoint, whose events become :class:`~ptreplay.effects.Pte` stores;
* each operation is attributed to its stage-2 root (the ``pgt`` pointer, its
  ``pgd``) and VM (the ``struct kvm`` of ``kvm_init_stage2_mmu`` or of the
  calling context); a root first seen without its init is flagged, since
  its earlier state is unknown;
* a call without a return (trace ended, events lost, the next call already
  started), a return without its call (the trace began mid-call) and a call
  during which events were lost are flagged uncertain; 6.12's parallel
  faults on one root from different CPUs are flagged concurrent;
* tables that 6.6+ frees through RCU (``stage2_free_unlinked_table_rcu_cb``
  -> ``kvm_pgtable_stage2_free_unlinked``, in softirq on whatever task the
  CPU was running) become their own ``free_unlinked`` operations, keyed by
  CPU, ending with the ``put_page`` of the table itself.

Memory is proportional to the live state (open calls, live roots, live
table pages), never to the trace length. Operations come out when they
complete, so in the order of their return events.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from ptreplay.capture.probe_effects import (
    BY_EVENT,
    COUNT_NOT_OBSERVED,
    CreateUnlinked,
    EffectProbe,
    PageCount,
    TlbFlushRange,
)
from ptreplay.effects import AllocFail, Effect, Put, Rcu

__all__ = [
    "TraceEvent",
    "EventLike",
    "PageCount",
    "TlbFlushRange",
    "CreateUnlinked",
    "Observed",
    "Operation",
    "Root",
    "Gap",
    "OperationBuilder",
    "operations",
    "OP_KINDS",
    "LOST_EVENTS",
    "COUNT_NOT_OBSERVED",
    "NO_RETURN",
    "NO_ENTRY",
    "LOST",
    "ROOT_FIRST_SEEN",
    "CONCURRENT",
    "MIGRATED",
    "UNCERTAIN_FLAGS",
]

#: Name of a lost-events marker in the event stream (``.cpu`` lost events;
#: ``.fields["count"]`` how many, when known).
LOST_EVENTS = "lost_events"

# Operation flags.
NO_RETURN = "no_return"  #: the call's return was not seen
NO_ENTRY = "no_entry"  #: the return was seen without its call (trace began mid-call)
LOST = "lost_events"  #: events were lost on the operation's CPU while it ran
#: first operation seen on a root whose init is not in the trace
ROOT_FIRST_SEEN = "root_first_seen"
CONCURRENT = "concurrent"  #: another task was inside a stage-2 call on the same root
MIGRATED = "migrated"  #: the return fired on another CPU than the call

#: Flags that make an operation's record incomplete.
UNCERTAIN_FLAGS = frozenset([NO_RETURN, NO_ENTRY, LOST])


class EventLike(Protocol):
    """What the builder needs of a trace event (the reader's events have more)."""

    index: int
    cpu: int
    ts: int
    pid: int
    name: str
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """A plain event of the generic protocol (tests, text reports)."""

    index: int
    cpu: int
    ts: int
    pid: int
    name: str
    fields: Mapping[str, Any]


# --- effect records beyond ptreplay.effects: declared with the probe table ----------

ObservedEffect = Effect | PageCount | TlbFlushRange | CreateUnlinked


class Observed(NamedTuple):
    """An effect seen in the trace, with where it was seen.

    :param effect: the effect; addresses are kernel virtual addresses, Get/Put/PageCount
        addresses are page-aligned and their ``count`` is :data:`COUNT_NOT_OBSERVED`
        for Get/Put.
    :param index: event index of the probe that showed it (for an allocation or a
        page count: the return probe).
    :param ts: timestamp (ns) of that event.
    :param cpu: CPU of that event.
    :param addr: the exact address the probe saw where it differs from the effect's
        (the entry address of get_page/put_page/page_count), else ``None``.
    :param mmu: the ``struct kvm_s2_mmu *`` a TLB invalidation named, else ``None``.
    """

    effect: ObservedEffect
    index: int  # type: ignore[assignment]  # shadows tuple.index
    ts: int
    cpu: int
    addr: int | None = None
    mmu: int | None = None


@dataclass(slots=True, eq=False)
class Root:
    """One stage-2 page table as the trace shows it.

    :param id: sequential id (a ``pgt`` address can be reused by a later VM).
    :param pgt: ``struct kvm_pgtable *``.
    :param pgd: kernel VA of the root table page(s), once seen.
    :param mmu: ``struct kvm_s2_mmu *``, once seen (init, TLB invalidations, callers).
    :param vm: ``struct kvm *``, once seen (``kvm_init_stage2_mmu``, callers).
    :param init_seen: whether the trace holds this root's init (else its state before
        :attr:`first_index` is unknown).
    :param destroy_seen: whether the trace holds this root's destroy.
    :param retired: no longer live: destroyed, its init failed, or another root took its
        ``pgt``/``pgd`` (a destroy the trace did not show).
    """

    id: int
    pgt: int
    pgd: int | None = None
    mmu: int | None = None
    vm: int | None = None
    ia_bits: int | None = None
    start_level: int | None = None
    init_seen: bool = False
    first_index: int | None = None
    destroy_seen: bool = False
    retired: bool = False


@dataclass(slots=True, eq=False)
class Operation:
    """One stage-2 call with what the trace showed of it.

    :param kind: ``init``, ``map``, ``set_owner``, ``unmap``, ``wrprotect``,
        ``relax_perms``, ``mkyoung``, ``mkold``, ``is_young``, ``test_clear_young``,
        ``flush``, ``split``, ``destroy`` or ``free_unlinked`` (see :data:`OP_KINDS`).
    :param func: the kernel function (``kvm_pgtable_stage2_map``).
    :param root: :attr:`Root.id`, ``None`` when unknown (a return without its call).
    :param entry_fields: the entry probe's fields as the trace gave them (see :attr:`args`).
    :param ret: the return value (``None``: void, or the return was not seen); a
        kvm_pte_t for mkyoung/mkold, 0/1 for is_young/test_clear_young.
    :param ts: entry timestamp in ns (``None`` without an entry).
    :param index: entry event index (``None`` without an entry).
    :param effects: the observed effects, in trace order.
    :param context: the last caller/tracepoint event of the task before the call
        (``kvm_guest_fault``, ``kvm_unmap_gfn_range``, ``kvm_set_spte_gfn``, ...).
    :param flags: see :data:`UNCERTAIN_FLAGS` and the other flag constants.
    """

    kind: str
    func: str
    cpu: int
    pid: int
    root: int | None = None
    pgt: int | None = None
    pgd: int | None = None
    vm: int | None = None
    mmu: int | None = None
    ia_bits: int | None = None
    start_level: int | None = None
    entry_fields: Mapping[str, Any] = field(default_factory=dict)
    ret: int | None = None
    ts: int | None = None
    ts_return: int | None = None
    index: int | None = None
    index_return: int | None = None
    effects: list[Observed] = field(default_factory=list)
    context: str | None = None
    context_index: int | None = None
    flags: set[str] = field(default_factory=set)

    @property
    def args(self) -> dict[str, Any]:
        """The call's arguments by probe field name (``addr``, ``size``, ``phys``, ``prot``,
        ``mc``, ``flags``, ``owner_id``, ``mkold``, ``level``, ...): the entry fields
        without ``__probe_ip`` and the ones kept as attributes (pgt, pgd, ia_bits,
        start_level, mmu/arch)."""
        return {k: v for k, v in self.entry_fields.items()
                if k not in _NOT_ARGS and not k.startswith("common_")}

    @property
    def uncertain(self) -> bool:
        """Whether the record may be incomplete (missing entry/return, lost events)."""
        return not self.flags.isdisjoint(UNCERTAIN_FLAGS)

    @property
    def first_index(self) -> int:
        """The first event index of the operation (entry, else return)."""
        if self.index is not None:
            return self.index
        assert self.index_return is not None
        return self.index_return


class Gap(NamedTuple):
    """Events were lost on ``cpu`` at ``index``/``ts`` (``count`` of them, -1 if unknown):
    any root may have missed operations from here on."""

    index: int  # type: ignore[assignment]  # shadows tuple.index
    cpu: int
    ts: int
    count: int  # type: ignore[assignment]  # shadows tuple.count


# --- what each probed function is ---------------------------------------------

#: Stage-2 API function -> operation kind.
OP_KINDS: dict[str, str] = {
    "kvm_pgtable_stage2_map": "map",
    "kvm_pgtable_stage2_set_owner": "set_owner",
    "kvm_pgtable_stage2_unmap": "unmap",
    "kvm_pgtable_stage2_wrprotect": "wrprotect",
    "kvm_pgtable_stage2_relax_perms": "relax_perms",
    "kvm_pgtable_stage2_mkyoung": "mkyoung",
    "kvm_pgtable_stage2_mkold": "mkold",
    "kvm_pgtable_stage2_is_young": "is_young",
    "kvm_pgtable_stage2_test_clear_young": "test_clear_young",
    "kvm_pgtable_stage2_flush": "flush",
    "kvm_pgtable_stage2_split": "split",
    "__kvm_pgtable_stage2_init": "init",
    "kvm_pgtable_stage2_init_flags": "init",
    "kvm_pgtable_stage2_destroy": "destroy",
}

# Effect probes (ptreplay.capture.probe_effects, the table ptreplay gen reads the other way):
# calls with a return probe nest in an operation as helpers; the others are entry-only.
_HELPERS = frozenset(p.event for p in BY_EVENT.values() if p.ret)
_ENTRY_EFFECTS = frozenset(p.event for p in BY_EVENT.values() if not p.ret)
_ZALLOC_EXACT = frozenset(p.event for p in BY_EVENT.values()
                          if p.ret and p.sized and p.effect.__name__ == "Alloc")

# Callers and tracepoints that say why the next stage-2 call of the task happens.
_CONTEXTS = frozenset([
    "kvm_guest_fault", "kvm_access_fault", "kvm_toggle_cache", "kvm_set_way_flush",
    "kvm_unmap_hva_range", "kvm_set_spte_hva", "kvm_age_hva", "kvm_test_age_hva",
    "kvm_unmap_gfn_range", "kvm_set_spte_gfn", "kvm_age_gfn", "kvm_test_age_gfn",
    "kvm_arch_flush_shadow_memslot", "kvm_arch_mmu_enable_log_dirty_pt_masked",
    "kvm_mmu_wp_memory_region", "kvm_mmu_split_memory_region", "kvm_stage2_wp_range",
    "stage2_wp_range", "stage2_unmap_vm", "kvm_phys_addr_ioremap", "kvm_flush_remote_tlbs",
    "kvm_arch_flush_remote_tlbs", "kvm_arch_flush_remote_tlbs_range", "kvm_init_stage2_mmu",
    "kvm_uninit_stage2_mmu", "kvm_free_stage2_pgd",
])

# Open calls kept per task at most (real nesting is 3: operation, create_unlinked, helper).
_MAX_DEPTH = 16

# Entry probe fields that are not call arguments.
_NOT_ARGS = frozenset(["__probe_ip", "pgt", "pgd", "ia_bits", "start_level", "mmu", "arch"])
_RETURN_META = frozenset(["__probe_func", "__probe_ret_ip"])


def _ret_value(fields: Mapping[str, Any]) -> int | None:
    value = fields.get("ret")
    if value is not None:
        return int(value)
    for key in ("pte", "young", "virt", "count", "table"):
        if key in fields:
            return int(fields[key])
    for key, value in fields.items():
        if key not in _RETURN_META and not key.startswith("common_"):
            return int(value)
    return None


def _opt_int(fields: Mapping[str, Any], key: str) -> int | None:
    value = fields.get(key)
    return None if value is None else int(value)


@dataclass(slots=True, eq=False)
class _Frame:
    """An open call on a task: an operation, or a helper nested in one."""

    func: str
    event: EventLike
    op: Operation | None = None  # set for stage-2 operations


@dataclass(slots=True, eq=False)
class _Deferred:
    """An RCU-deferred table free running on a CPU (``free_unlinked``)."""

    op: Operation
    pgtable: int | None = None
    counted: bool = False  # page_count(pgtable) seen: the next put_page(pgtable) ends it


class OperationBuilder:
    """Turns a time-ordered event stream into :class:`Operation` and :class:`Gap` records.

    Call :meth:`feed` for each event (and :meth:`lost_events` where the reader reports
    lost events, unless the stream carries :data:`LOST_EVENTS` markers), then
    :meth:`finish`; completed records accumulate in :attr:`ready` (or use
    :func:`operations`).

    :param page_size: the kernel's PAGE_SIZE (the trace header's page size), used to
        turn get/put/page_count entry addresses into table-page addresses.
    """

    def __init__(self, page_size: int = 4096) -> None:
        if page_size <= 0 or page_size & (page_size - 1):
            raise ValueError(f"page size must be a power of two, not {page_size}")
        self.page_mask = ~(page_size - 1)
        self.ready: list[Operation | Gap] = []
        self.roots: dict[int, Root] = {}  # every root seen, by id
        self.stats: dict[str, int] = {}
        self._live: dict[int, Root] = {}  # pgt -> its current root
        self._stacks: dict[int, list[_Frame]] = {}
        self._deferred: dict[int, _Deferred] = {}  # cpu -> RCU free in progress
        self._context: dict[int, EventLike] = {}
        self._inflight: dict[int, dict[int, Operation]] = {}  # root id -> task -> op
        self._mmu_vm: dict[int, int] = {}  # struct kvm_s2_mmu * -> struct kvm *
        self._table_root: dict[int, int] = {}  # table page VA -> root id
        self._root_tables: dict[int, set[int]] = {}
        self._next_root = 0
        entry_handlers = {name: self._on_op_entry for name in OP_KINDS}
        entry_handlers.update({name: self._on_helper_entry for name in _HELPERS})
        entry_handlers.update({name: self._on_context for name in _CONTEXTS})
        entry_handlers.update({name: self._on_effect for name in _ENTRY_EFFECTS})
        entry_handlers.update({
            "stage2_free_unlinked_table_rcu_cb": self._on_rcu_cb,
            "kvm_pgtable_stage2_free_unlinked": self._on_free_unlinked,
            LOST_EVENTS: self._on_lost_marker,
        })
        entry_handlers.update({name + "__return": self._on_return for name in OP_KINDS})
        entry_handlers.update({name + "__return": self._on_return for name in _HELPERS})
        self._handlers = entry_handlers

    # --- public --------------------------------------------------------------

    def feed(self, ev: EventLike) -> None:
        """Take the next event of the trace (events must come in trace order)."""
        handler = self._handlers.get(ev.name)
        if handler is None:
            self._count("ignored")
            return
        handler(ev)

    def _count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1

    def lost_events(self, cpu: int, ts: int, index: int, count: int = -1) -> None:
        """Events were lost on ``cpu`` just before ``index``: flag what was running there."""
        self.ready.append(Gap(index, cpu, ts, count))
        self._count("gaps")
        for stack in self._stacks.values():
            for frame in stack:
                if frame.op is not None and frame.op.cpu == cpu:
                    frame.op.flags.add(LOST)
        deferred = self._deferred.get(cpu)
        if deferred is not None:
            deferred.op.flags.add(LOST)

    def finish(self) -> None:
        """End of trace: every call still open lost its return."""
        for cpu in sorted(self._deferred):
            self._close_deferred(cpu, complete=False)
        pending = []
        for stack in self._stacks.values():
            pending += [f.op for f in stack if f.op is not None]
        self._stacks.clear()
        for op in sorted(pending, key=lambda o: o.first_index):
            op.flags.add(NO_RETURN)
            self._emit(op)

    # --- stage-2 operations --------------------------------------------------

    # Calls are keyed by task (a kretprobe fires on the task that made the call);
    # pid 0 is each CPU's idle task, keyed -1 - cpu.

    def _on_op_entry(self, ev: EventLike) -> None:
        cpu = ev.cpu
        if self._deferred and cpu in self._deferred:
            self._close_deferred(cpu, complete=False)
        key = ev.pid or -1 - cpu
        stack = self._stacks.get(key)
        if stack is None:
            stack = self._stacks[key] = []
        # Stage-2 operations do not nest: an open one lost its return.
        while stack:
            self._drop_frame(stack.pop())
        name = ev.name
        f = ev.fields
        get = f.get
        kind = OP_KINDS[name]
        op = Operation(kind, name, cpu, ev.pid, ts=ev.ts, index=ev.index, entry_fields=f,
                       pgt=get("pgt"), pgd=get("pgd"))
        if kind == "init":
            op.mmu = get("mmu", get("arch"))
        ctx = self._context.get(key)
        if ctx is not None:
            op.context = ctx.name
            op.context_index = ctx.index
        pgt = op.pgt
        if pgt is not None:
            root = self._live.get(pgt)
            if (root is None or op.kind == "init"
                    or (op.pgd is not None and root.pgd is not None and op.pgd != root.pgd)):
                root = self._new_root(op, ev)
            op.root = root.id
            if root.pgd is None and op.pgd is not None:
                root.pgd = op.pgd
                self._own_table(root, op.pgd)
            if root.ia_bits is None and "ia_bits" in f:
                root.ia_bits, root.start_level = f["ia_bits"], get("start_level")
            if ctx is not None:
                if root.vm is None and "kvm" in ctx.fields:
                    root.vm = ctx.fields["kvm"]
                if root.mmu is None and ctx.name == "kvm_free_stage2_pgd":
                    root.mmu = ctx.fields.get("mmu")
            inflight = self._inflight.get(root.id)
            if inflight is None:
                inflight = self._inflight[root.id] = {}
            elif inflight:
                op.flags.add(CONCURRENT)
                for other in inflight.values():
                    other.flags.add(CONCURRENT)
            inflight[key] = op
        stack.append(_Frame(name, ev, op))

    def _new_root(self, op: Operation, ev: EventLike) -> Root:
        """A root starts: at its init, or at its first operation when the init is not seen."""
        assert op.pgt is not None
        old = self._live.get(op.pgt)
        if old is not None:
            self._retire(old)
        root = Root(self._next_root, op.pgt, first_index=ev.index)
        self._next_root += 1
        self.roots[root.id] = root
        self._live[op.pgt] = root
        self._root_tables[root.id] = set()
        if op.kind == "init":
            root.init_seen = True
            if op.mmu is not None:
                root.mmu = op.mmu
                root.vm = self._mmu_vm.get(op.mmu)
        else:
            op.flags.add(ROOT_FIRST_SEEN)
        return root

    def _retire(self, root: Root) -> None:
        root.retired = True
        if self._live.get(root.pgt) is root:
            del self._live[root.pgt]
        for va in self._root_tables.pop(root.id, ()):
            if self._table_root.get(va) == root.id:
                del self._table_root[va]
        self._inflight.pop(root.id, None)

    def _own_table(self, root: Root, va: int) -> None:
        self._table_root[va] = root.id
        tables = self._root_tables.get(root.id)
        if tables is not None:
            tables.add(va)

    def _on_helper_entry(self, ev: EventLike) -> None:
        key = ev.pid or -1 - ev.cpu
        stack = self._stacks.get(key)
        if stack is None:
            stack = self._stacks[key] = []
        if len(stack) >= _MAX_DEPTH:
            # Returns went missing without an operation boundary: forget the oldest helper.
            for i, frame in enumerate(stack):
                if frame.op is None:
                    del stack[i]
                    self._count("helper_without_return")
                    break
        stack.append(_Frame(ev.name, ev))

    def _on_return(self, ev: EventLike) -> None:
        func = ev.name[:-8]  # without "__return"
        key = ev.pid or -1 - ev.cpu
        stack = self._stacks.get(key) or []
        if stack and stack[-1].func == func:
            frame = stack.pop()
        else:
            for depth in range(len(stack) - 1, -1, -1):
                if stack[depth].func == func:
                    break
            else:
                self._unpaired_return(ev, func, key)
                return
            while len(stack) > depth + 1:
                self._drop_frame(stack.pop())
            frame = stack.pop()
        if frame.op is not None:
            if self._deferred and ev.cpu in self._deferred:
                # A task's call returns: no softirq is running on its CPU any more.
                self._close_deferred(ev.cpu, complete=False)
            self._complete(frame.op, ev, key)
        else:
            self._helper_done(frame, ev, stack)

    def _complete(self, op: Operation, ev: EventLike, key: int) -> None:
        op.ret = _ret_value(ev.fields)
        op.ts_return = ev.ts
        op.index_return = ev.index
        if ev.cpu != op.cpu:
            op.flags.add(MIGRATED)
        if op.root is not None:
            inflight = self._inflight.get(op.root)
            if inflight:
                inflight.pop(key, None)
            root = self.roots[op.root]
            if op.kind == "init" and op.ret not in (None, 0):
                self._retire(root)
            elif op.kind == "destroy":
                root.destroy_seen = True
                self._retire(root)
        self._emit(op)

    def _emit(self, op: Operation) -> None:
        if op.root is not None:
            root = self.roots[op.root]
            if root.vm is None and root.mmu is not None:
                root.vm = self._mmu_vm.get(root.mmu)
            if op.pgd is None:
                op.pgd = root.pgd
            if op.mmu is None:
                op.mmu = root.mmu
            op.vm = root.vm
            op.ia_bits = root.ia_bits
            op.start_level = root.start_level
        stats = self.stats
        stats[op.kind] = stats.get(op.kind, 0) + 1
        if op.flags and op.uncertain:
            stats["uncertain"] = stats.get("uncertain", 0) + 1
        self.ready.append(op)

    def _drop_frame(self, frame: _Frame) -> None:
        """A frame whose return never came: emit its operation as such."""
        if frame.op is not None:
            frame.op.flags.add(NO_RETURN)
            if frame.op.root is not None:
                inflight = self._inflight.get(frame.op.root, {})
                for k, v in list(inflight.items()):
                    if v is frame.op:
                        del inflight[k]
            self._emit(frame.op)
        else:
            self._count("helper_without_return")

    def _unpaired_return(self, ev: EventLike, func: str, key: int) -> None:
        """A return whose call is not in the trace (it began mid-call, or events were lost)."""
        if func in OP_KINDS:
            self._close_deferred_on(ev.cpu)
            op = Operation(OP_KINDS[func], func, ev.cpu, ev.pid, flags={NO_ENTRY})
            op.ret = _ret_value(ev.fields)
            op.ts_return, op.index_return = ev.ts, ev.index
            self._emit(op)
            return
        stack = self._stacks.get(key, [])
        self._helper_done(_Frame(func, ev), ev, stack)

    # --- effects -------------------------------------------------------------

    def _target(self, ev: EventLike, stack: list[_Frame] | None = None) -> Operation | None:
        """The operation an effect seen on ``ev``'s task and CPU belongs to."""
        if self._deferred:
            deferred = self._deferred.get(ev.cpu)
            if deferred is not None:
                return deferred.op
        if stack is None:
            stack = self._stacks.get(ev.pid or -1 - ev.cpu)
        if stack:
            for frame in reversed(stack):
                if frame.op is not None:
                    return frame.op
        return None

    def _add(self, ev: EventLike, effect: ObservedEffect, addr: int | None = None,
             mmu: int | None = None, stack: list[_Frame] | None = None) -> Operation | None:
        op = self._target(ev, stack)
        if op is None:
            self._count("effect_outside_operation")
            return None
        op.effects.append(Observed(effect, ev.index, ev.ts, ev.cpu, addr, mmu))
        return op

    def _helper_done(self, frame: _Frame, ev: EventLike, stack: list[_Frame]) -> None:
        func, entry = frame.func, frame.event
        probe: EffectProbe = BY_EVENT[func]
        entry_fields = None if entry is ev else entry.fields
        effect, addr, _ = probe.decode(entry_fields, ev.fields, self.page_mask)
        kind = type(effect)
        if func in _ZALLOC_EXACT and any(f.func in _ZALLOC_EXACT for f in stack):
            return  # the inner allocator of a probed kvm_s2_zalloc_pages_exact
        if kind is CreateUnlinked:
            table = (effect.pa or 0) & 0xFFFFFFFFFFFFFFFF
            effect = CreateUnlinked(table, *(-1 if v is None else v for v in effect[1:]))
        op = self._add(ev, effect, addr, stack=stack)
        if kind is PageCount:
            deferred = self._deferred.get(ev.cpu)
            if deferred is not None and addr is not None and addr == deferred.pgtable:
                deferred.counted = True
            return
        if op is None or op.root is None:
            return
        table = effect.pa if kind is not AllocFail else 0
        if kind is CreateUnlinked and not (table and table < 2**64 - 4096):
            return
        if table:
            root = self.roots[op.root]
            if func in _ZALLOC_EXACT and op.kind == "init" and root.pgd is None:
                root.pgd = table
            self._own_table(root, table)

    def _on_effect(self, ev: EventLike) -> None:
        """An entry-only effect probe (get/put, free, CMO, TLBI, call_rcu, entry store)."""
        effect, addr, mmu = BY_EVENT[ev.name].decode(ev.fields, None, self.page_mask)
        op = self._add(ev, effect, addr, mmu)
        kind = type(effect)
        if kind is Put:
            deferred = self._deferred.get(ev.cpu)
            if deferred is not None and deferred.counted and deferred.pgtable == addr:
                # kvm_pgtable_stage2_free_unlinked() ends with page_count(pgtable),
                # put_page(pgtable) (an earlier put_page(pgtable) is the one of the table's
                # entry 0).
                self._close_deferred(ev.cpu, complete=True)
        elif mmu is not None:
            self._learn_mmu(op, mmu)

    def _learn_mmu(self, op: Operation | None, mmu: int | None) -> None:
        if op is None or op.root is None or mmu is None:
            return
        root = self.roots[op.root]
        if root.mmu is None:
            root.mmu = mmu

    # --- RCU-deferred table frees (6.6+) --------------------------------------

    def _open_deferred(self, ev: EventLike) -> _Deferred:
        self._close_deferred_on(ev.cpu)
        op = Operation("free_unlinked", ev.name, ev.cpu, ev.pid, ts=ev.ts, index=ev.index,
                       entry_fields={})
        deferred = _Deferred(op)
        self._deferred[ev.cpu] = deferred
        return deferred

    def _on_rcu_cb(self, ev: EventLike) -> None:
        self._open_deferred(ev)

    def _on_free_unlinked(self, ev: EventLike) -> None:
        deferred = self._deferred.get(ev.cpu)
        if deferred is None or deferred.pgtable is not None:
            deferred = self._open_deferred(ev)
        f = ev.fields
        pgtable = int(f["pgtable"])
        level = _opt_int(f, "level")
        deferred.pgtable = pgtable
        op = deferred.op
        op.func = ev.name
        op.entry_fields = {"pgtable": pgtable, "level": level}
        root_id = self._table_root.get(pgtable)
        if root_id is not None:
            op.root = root_id
            op.pgt = self.roots[root_id].pgt
        op.effects.append(Observed(Rcu("callback", "free_unlinked_table", pgtable, level),
                                   ev.index, ev.ts, ev.cpu))

    def _close_deferred_on(self, cpu: int) -> None:
        if cpu in self._deferred:
            self._close_deferred(cpu, complete=False)

    def _close_deferred(self, cpu: int, complete: bool) -> None:
        deferred = self._deferred.pop(cpu)
        op = deferred.op
        if not complete:
            op.flags.add(NO_RETURN)
        last = op.effects[-1] if op.effects else None
        op.ts_return = last.ts if last is not None else op.ts
        op.index_return = last.index if last is not None else op.index
        self._emit(op)

    # --- context -------------------------------------------------------------

    def _on_context(self, ev: EventLike) -> None:
        if self._deferred and ev.cpu in self._deferred:
            self._close_deferred(ev.cpu, complete=False)
        self._context[ev.pid or -1 - ev.cpu] = ev
        if ev.name == "kvm_init_stage2_mmu":
            kvm, mmu = _opt_int(ev.fields, "kvm"), _opt_int(ev.fields, "mmu")
            if kvm is not None and mmu is not None:
                self._mmu_vm[mmu] = kvm

    def _on_lost_marker(self, ev: EventLike) -> None:
        count = ev.fields.get("count", -1) if ev.fields else -1
        self.lost_events(ev.cpu, ev.ts, ev.index, int(count))


def operations(events: Iterable[EventLike], page_size: int = 4096) -> Iterator[Operation | Gap]:
    """Stream the operations (and gaps) of an event stream, as they complete.

    :param events: the trace's events in trace order (the generic event protocol).
    :param page_size: the kernel's PAGE_SIZE.
    """
    builder = OperationBuilder(page_size)
    ready = builder.ready
    handlers = builder._handlers
    ignored = 0
    for ev in events:
        handler = handlers.get(ev.name)  # OperationBuilder.feed(), without a call per event
        if handler is None:
            ignored += 1
            continue
        handler(ev)
        if ready:
            yield from ready
            ready.clear()
    builder.stats["ignored"] = builder.stats.get("ignored", 0) + ignored
    builder.finish()
    yield from ready
    ready.clear()
