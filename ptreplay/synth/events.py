"""The probe events a real kernel fires for one stage-2 call, in the kernel's order.

For a :class:`~ptreplay.synth.calls.Call` and what the model did
(:class:`~ptreplay.synth.driver.OpResult`), :class:`EventBuilder` lays out
the events the capture kit's probes and the kvm:* tracepoints produce on a
real kernel of the series:

1. the caller's context events (``kvm_guest_fault``, ``kvm_unmap_hva_range``
   + ``kvm_unmap_gfn_range``, ``kvm_age_hva`` + ``kvm_age_gfn``,
   ``kvm_init_stage2_mmu``, ``kvm_free_stage2_pgd`` ...; see ``_CALLERS``);
2. the entry kprobe of the pgtable.c function: ``pgt``, the arguments, and
   ``ia_bits`` / ``start_level`` / ``pgd`` read from ``struct kvm_pgtable``
   at entry, as the series' probe definition says;
3. the effect probes in the order the model made the calls, laid out by the
   effects <-> events table (:mod:`ptreplay.capture.probe_effects`): the
   memory-cache allocation and its return, ``kvm_s2_zalloc_pages_exact`` and
   its return, ``kvm_host_get_page`` / ``kvm_s2_put_page`` with the entry's
   address, ``kvm_host_page_count`` and its return, the CMO helpers with the
   guest page's linear-map address, the TLB helpers (VHE only: in nVHE they
   run at EL2 where kprobes cannot see them), ``kvm_s2_free_pages_exact``;
   the ``ptreplay:stage2_pte_store`` instrumentation event per entry store
   when asked (``pte_events``);
4. the return kretprobe (``ret`` / ``pte``, the caller's return address);
5. the caller's events after the call (``kvm_age_gfn__return``, the TLB
   flush ``kvm_flush_remote_tlbs`` makes when a page was young ...).

Events of the series that do not exist (a probe the kernel has no symbol
for) are left out, as a real recording would lack them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ptreplay.capture.catalog import event_schema, load_probe_set, load_tracepoints
from ptreplay.capture.probe_effects import ProbeEffects, probe_effects
from ptreplay.effects import Pte, Tlbi
from ptreplay.synth.calls import OP_FUNCS, Call
from ptreplay.synth.driver import OpResult, Root
from ptreplay.synth.kernel import KernelImage
from ptreplay.synth.recorder import Seen

__all__ = ["Ev", "EventBuilder", "EntrySnapshot", "INIT_FUNCS"]

#: the init function per series.
INIT_FUNCS = {"5.13": "kvm_pgtable_stage2_init_flags", "6.1": "__kvm_pgtable_stage2_init"}

# Kernel threads and sites: caller -> return site of the stage-2 call (KernelImage._RET_SITES).
_SITES = {
    "fault": "fault_map", "fault_relax": "fault_relax", "access_fault": "access_fault",
    "set_spte": "set_spte", "ioremap": "ioremap", "notifier_unmap": "apply_range",
    "range_cont": "apply_range", "memslot_flush": "apply_range", "unmap_vm": "apply_range",
    "dirty_log": "apply_range", "wp_region": "apply_range", "toggle_cache": "apply_range",
    "age": "age", "test_age": "test_age", "init": "init", "destroy": "destroy",
    "host": "host_stage2", "host_init": "host_prepare",
}
# A plain call (a scenario line) returns where its usual caller would.
_PLAIN_SITES = {
    "map": "fault_map", "relax_perms": "fault_relax", "mkyoung": "access_fault",
    "set_owner": "host_stage2", "unmap": "apply_range", "wrprotect": "apply_range",
    "flush": "apply_range", "mkold": "age", "is_young": "test_age", "init": "init",
    "destroy": "destroy",
}
_HELPER_SITES = {
    "stage2_memcache_zalloc_page": "stage2_memcache_zalloc_page",
    "kvm_s2_zalloc_pages_exact": "zalloc_pages_exact",
    "kvm_host_zalloc_pages_exact": "zalloc_pages_exact",
    "kvm_host_page_count": "kvm_host_page_count",
    "kvm_age_gfn": "kvm_age_gfn",
    "kvm_test_age_gfn": "kvm_test_age_gfn",
}


class Ev(NamedTuple):
    """An event before its timestamp.

    :param role: ``entry`` / ``return`` (of the stage-2 call), ``planted`` (the injected
        event), ``removed`` (a placeholder where an injection removed an event: it takes a
        timestamp but is not written), or ``""``.
    """

    system: str
    name: str
    fields: dict[str, int]
    cpu: int
    pid: int
    role: str = ""


class EntrySnapshot(NamedTuple):
    """``struct kvm_pgtable`` fields the entry probe reads, taken before the call."""

    ia_bits: int
    start_level: int
    pgd: int


class EventBuilder:
    """Lays out the events of each call (see the module docstring).

    :param image: the synthetic kernel (addresses).
    :param vhe: whether TLB helpers are visible (VHE) or run at EL2 (nVHE).
    :param pte_events: emit the ``ptreplay:stage2_pte_store`` instrumentation events.
    """

    def __init__(self, image: KernelImage, *, vhe: bool = True, pte_events: bool = False) -> None:
        self.image = image
        self.series = image.series
        self.vhe = vhe
        self.pte_events = pte_events
        self.probes: ProbeEffects = probe_effects(self.series, instrumented=pte_events)
        names = {e.definition.event for e in load_probe_set(self.series).entries}
        self.known = names | set(load_tracepoints(self.series))
        self._fields: dict[str, tuple[str, ...]] = {}
        self._systems: dict[str, str] = {}

    # -- layout helpers -------------------------------------------------------------

    def exists(self, name: str) -> bool:
        """Whether the series' probe set or tracepoints have event ``name``."""
        return name in self.known

    def field_names(self, name: str) -> tuple[str, ...]:
        """The fields of event ``name`` after the common header."""
        names = self._fields.get(name)
        if names is None:
            schema = event_schema(self.series, name)
            names = self._fields[name] = tuple(f.name for f in schema.fields)
            self._systems[name] = schema.system
        return names

    def system(self, name: str) -> str:
        """The event's system (``kprobes``, ``kvm``, ``ptreplay``)."""
        self.field_names(name)
        return self._systems[name]

    def _probe(self, name: str, values: dict[str, int], task_cpu: int, pid: int,
               role: str = "", ret_site: str | None = None) -> Ev:
        """An event of ``name`` with its fields taken from ``values`` (0 when absent)."""
        names = self.field_names(name)
        fields = {n: values.get(n, 0) for n in names}
        if "__probe_ip" in fields:
            fields["__probe_ip"] = self.image.addr(name)
        if "__probe_func" in fields:
            fields["__probe_func"] = self.image.addr(name[:-8])
            fields["__probe_ret_ip"] = self.image.ret_site(ret_site) if ret_site else 0
        return Ev(self.system(name), name, fields, task_cpu, pid, role)

    def func(self, op: str) -> str:
        """The pgtable.c function of an operation in this series."""
        return INIT_FUNCS[self.series] if op == "init" else OP_FUNCS[op]

    # -- one call ---------------------------------------------------------------------

    def call_events(self, call: Call, root: Root, snap: EntrySnapshot,
                    result: OpResult) -> list[Ev]:
        """Every event of one call, context included, in the kernel's order."""
        out = self.call_start(call, root, snap)
        out += self.effect_events(call, root, result.seen)
        out += self.call_end(call, root, result)
        return out

    def call_start(self, call: Call, root: Root, snap: EntrySnapshot) -> list[Ev]:
        """The caller's context events and the entry probe (all known before the call)."""
        cpu, pid = call.task.cpu, call.task.pid
        out = self._context_before(call, root)
        func = self.func(call.op)
        a = call.args
        values = dict(a)
        values.update(pgt=root.pgt_ptr, mc=call.mc, ia_bits=snap.ia_bits,
                      start_level=snap.start_level, pgd=snap.pgd, mmu=root.mmu, arch=root.mmu,
                      mm_ops=self.image.host_mm_ops if root.host else self.image.mm_ops,
                      flags=a.get("flags", 0),
                      force_pte_cb=self.image.addr("__kvm_nvhe_host_stage2_force_pte_cb")
                      if a.get("force_pte") else 0)
        out.append(self._probe(func, values, cpu, pid, "entry"))
        return out

    def effect_events(self, call: Call, root: Root, seen: list[Seen]) -> list[Ev]:
        """The effect probes of (part of) a call's records, in order."""
        cpu, pid = call.task.cpu, call.task.pid
        out: list[Ev] = []
        mmu, mc = root.mmu, call.mc
        image = self.image
        for s in seen:
            effect = s.effect
            if effect is None:
                # an injection removed what the kernel would have done here: a placeholder
                # that takes its time but writes nothing
                out.append(Ev("", "", {}, cpu, pid, "removed"))
                continue
            t = type(effect)
            if t is Tlbi and not self.vhe:
                continue
            if t is Pte and not self.pte_events:
                continue
            probe = self.probes.probe_for(effect, s.sized)
            if probe is None:
                continue
            role = "planted" if s.planted else ""
            for i, (system, name, fields) in enumerate(probe.encode(effect, s.addr, mmu, mc)):
                if system == "kprobes":
                    if i == 0:
                        fields = {"__probe_ip": image.addr(name), **fields}
                    else:
                        fields = {"__probe_func": image.addr(probe.event),
                                  "__probe_ret_ip": image.ret_site(
                                      _HELPER_SITES[probe.event]), **fields}
                out.append(Ev(system, name, fields, cpu, pid, role))
        return out

    def call_end(self, call: Call, root: Root, result: OpResult) -> list[Ev]:
        """The return probe and the caller's events after the call."""
        cpu, pid = call.task.cpu, call.task.pid
        func = self.func(call.op)
        site = _SITES.get(call.caller) or _PLAIN_SITES[call.op]
        ret_name = func + "__return"
        ret_values: dict[str, int] = {}
        rnames = self.field_names(ret_name)
        if len(rnames) > 2:
            ret_values[rnames[2]] = 0 if result.ret is None else int(result.ret)
        role = "planted" if result.ret_planted else "return"
        out = [self._probe(ret_name, ret_values, cpu, pid, role, site)]
        out += self._context_after(call, root, result)
        return out

    # -- context ------------------------------------------------------------------------

    def _add(self, where: list[Ev], call: Call, name: str, values: dict[str, int],
             site: str | None = None) -> None:
        if self.exists(name):
            where.append(self._probe(name, values, call.task.cpu, call.task.pid,
                                     ret_site=site))

    def _context_before(self, call: Call, root: Root) -> list[Ev]:
        """The caller's events before the call."""
        c = call.ctx
        kvm, mmu = root.kvm, root.mmu
        a = call.args
        pre: list[Ev] = []
        add = self._add
        caller = call.caller
        gfn = a.get("addr", 0) >> 12
        npages = max(1, a.get("size", 0x1000) >> 12)
        hva = c.get("hva", 0)
        if caller in ("fault", "fault_relax", "access_fault"):
            add(pre, call, "kvm_guest_fault", {"vcpu_pc": c.get("vcpu_pc", 0),
                                               "hsr": c.get("hsr", 0),
                                               "hxfar": c.get("far", 0), "ipa": c.get("ipa", 0)})
            if caller == "access_fault":
                add(pre, call, "kvm_access_fault", {"ipa": c.get("ipa", 0)})
        elif caller == "set_spte":
            add(pre, call, "kvm_set_spte_hva", {"hva": hva})
            add(pre, call, "kvm_set_spte_gfn", {"kvm": kvm, "start_gfn": gfn,
                                                "end_gfn": gfn + 1, "pte": c.get("host_pte", 0)})
        elif caller == "notifier_unmap":
            add(pre, call, "kvm_unmap_hva_range", {"start": hva, "end": hva + npages * 0x1000})
            add(pre, call, "kvm_unmap_gfn_range", {"kvm": kvm, "start_gfn": gfn,
                                                   "end_gfn": gfn + npages, "may_block": 1})
        elif caller == "memslot_flush":
            if c.get("first", True):
                add(pre, call, "kvm_arch_flush_shadow_memslot", {"kvm": kvm,
                                                                 "slot": c.get("slot", 0)})
        elif caller == "unmap_vm":
            if c.get("first", True):
                add(pre, call, "stage2_unmap_vm", {"kvm": kvm})
        elif caller == "age":
            add(pre, call, "kvm_age_hva", {"start": hva, "end": hva + 0x1000})
            add(pre, call, "kvm_age_gfn", {"kvm": kvm, "start_gfn": gfn, "end_gfn": gfn + 1})
        elif caller == "test_age":
            add(pre, call, "kvm_test_age_hva", {"hva": hva})
            add(pre, call, "kvm_test_age_gfn", {"kvm": kvm, "start_gfn": gfn,
                                                "end_gfn": gfn + 1})
        elif caller == "dirty_log":
            add(pre, call, "kvm_arch_mmu_enable_log_dirty_pt_masked",
                {"kvm": kvm, "slot": c.get("slot", 0), "gfn_offset": c.get("gfn_offset", 0),
                 "mask": c.get("mask", 0)})
        elif caller == "toggle_cache":
            if c.get("first", True):
                add(pre, call, "kvm_toggle_cache", {"vcpu_pc": c.get("vcpu_pc", 0), "was": 0,
                                                    "now": 1})
        elif caller == "ioremap":
            if c.get("first", True):
                add(pre, call, "kvm_phys_addr_ioremap",
                    {"kvm": kvm, "guest_ipa": c.get("guest_ipa", 0), "pa": c.get("pa", 0),
                     "size": c.get("size", 0), "writable": c.get("writable", 1)})
        elif caller == "init":
            add(pre, call, "kvm_init_stage2_mmu", {"kvm": kvm, "mmu": mmu})
        elif caller == "destroy":
            add(pre, call, "kvm_free_stage2_pgd", {"mmu": mmu})
        return pre

    def _context_after(self, call: Call, root: Root, result: OpResult) -> list[Ev]:
        """The caller's events after the call (returns of the callers, TLB flushes)."""
        post: list[Ev] = []
        caller = call.caller
        kvm, mmu = root.kvm, root.mmu
        cpu, pid = call.task.cpu, call.task.pid
        if caller in ("age", "test_age"):
            gfn_name = "kvm_age_gfn" if caller == "age" else "kvm_test_age_gfn"
            young = _young(call.op, result.ret)
            self._add(post, call, gfn_name + "__return", {"young": young}, gfn_name)
            if caller == "age" and young:
                self._remote_flush(post, kvm, mmu, cpu, pid)
        if call.ctx.get("flush_after"):
            self._remote_flush(post, kvm, mmu, cpu, pid)
        return post

    def _remote_flush(self, out: list[Ev], kvm: int, mmu: int, cpu: int, pid: int) -> None:
        """``kvm_flush_remote_tlbs(kvm)`` -> ``__kvm_tlb_flush_vmid(&kvm->arch.mmu)`` (VHE)."""
        if self.exists("kvm_flush_remote_tlbs"):
            out.append(self._probe("kvm_flush_remote_tlbs", {"kvm": kvm}, cpu, pid))
        if self.vhe and self.exists("__kvm_tlb_flush_vmid"):
            out.append(self._probe("__kvm_tlb_flush_vmid", {"mmu": mmu}, cpu, pid))


def _young(op: str, ret: Any) -> int:
    """Whether the aged page was young: mkold returns the old PTE, is_young a bool."""
    if ret is None:
        return 0
    if op == "mkold":
        return int(bool(ret & 1) and bool(ret & (1 << 10)))
    return int(bool(ret))
