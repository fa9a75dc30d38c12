"""Scenario files as workloads: the oracle's scenario language turned into stage-2 calls.

A scenario (``shared/conformance/oracle/FORMAT.md``, what ``ptreplay model
run`` reads) is parsed with :mod:`ptreplay.model.scenario`'s parser and
harness rules (:func:`~ptreplay.model.scenario.init_settings`);
:class:`ScenarioWorkload` yields one :class:`~ptreplay.synth.calls.Call` per
line that calls the kernel. Lines the harness handles itself make no call and
leave no event in the trace: ``dump``, and an ``init`` the harness refuses
(``ret`` -22). Each ``init`` creates a new VM (a new ``struct kvm``,
``struct kvm_pgtable`` and pgd), as the harness's one table at a time.
``mc_pages`` limits the vCPU memory cache (a ``zalloc_page`` beyond it
returns NULL); ``"mc":"none"`` passes NULL.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ptreplay.model.profiles import Profile
from ptreplay.model.scenario import ScenarioOp, init_settings, iter_scenario
from ptreplay.synth.calls import Call, Task
from ptreplay.synth.driver import OpResult, Root, Stage2Driver

__all__ = ["ScenarioWorkload"]

_ADDR_SIZE = ("unmap", "wrprotect", "flush")
_ADDR_ONLY = ("mkyoung", "mkold", "is_young")


class ScenarioWorkload:
    """The calls of a scenario (see the module docstring).

    :param lines: the scenario text, line by line.
    :param source: its name, for errors.
    :param driver: the model driver.
    :param profile: the model profile (which prot names exist).
    :raises ScenarioError: while iterating, at the first bad line.
    """

    def __init__(self, lines: Iterable[str], source: str, driver: Stage2Driver,
                 profile: Profile, *, kvm_mmu_offset: int = 0x9C8) -> None:
        self.lines = lines
        self.source = source
        self.driver = driver
        self.profile = profile
        self.kvm_mmu_offset = kvm_mmu_offset
        self.root: Root | None = None
        self.task = Task(268, "qemu-system-aar", 0)
        self.cmdlines = {268: "qemu-system-aar"}
        self._mc = 0

    def __iter__(self) -> Iterator[Call]:
        for op in iter_scenario(self.lines, self.source):
            call = self._call(op)
            if call is not None:
                yield call

    def done(self, call: Call, result: OpResult) -> None:
        """After a call: a destroyed (or failed) table is no longer live."""
        if call.op == "destroy" or (call.op == "init" and result.ret != 0):
            self.root = None

    def _call(self, op: ScenarioOp) -> Call | None:
        name = op.op
        if name == "init":
            if self.root is not None:
                raise op.error("init while a page table is live (destroy it first)")
            settings = init_settings(op, self.profile)
            if settings is None:
                return None  # the harness refuses it: no kernel call
            root = self.driver.new_root(fwb=settings.fwb, mm_cmo=settings.mm_cmo,
                                        kvm_mmu_offset=self.kvm_mmu_offset)
            self.root = root
            self._mc = self.driver.memcache_ptr()
            return Call(root.id, "init", {"vtcr": settings.vtcr, "flags": settings.flags,
                                          "force_pte": int(settings.force_pte)},
                        self.task, "init")
        if name not in ("map", "set_owner", "relax_perms", "destroy", "dump") + _ADDR_SIZE \
                + _ADDR_ONLY:
            raise op.error(f"unknown op {name!r}")
        if self.root is None:
            raise op.error(f"{name} before init (no live page table)")
        if name == "dump":
            return None
        rid = self.root.id
        if name == "destroy":
            return Call(rid, "destroy", {}, self.task, "destroy")
        if name in _ADDR_ONLY:
            return Call(rid, name, {"addr": op.number("addr")}, self.task, "plain")
        if name in _ADDR_SIZE:
            return Call(rid, name, {"addr": op.number("addr"), "size": op.number("size")},
                        self.task, "plain")
        if name == "relax_perms":
            return Call(rid, name, {"addr": op.number("addr"),
                                    "prot": op.names("prot", self.profile.prot_names, "prot")},
                        self.task, "plain")
        mc = op.memcache()
        limit = None if mc is None else mc.limit
        mc_ptr = 0 if mc is None else self._mc
        if name == "map":
            args = {"addr": op.number("addr"), "size": op.number("size"),
                    "phys": op.number("phys"),
                    "prot": op.names("prot", self.profile.prot_names, "prot")}
        else:
            args = {"addr": op.number("addr"), "size": op.number("size"),
                    "owner_id": op.number("owner_id") & 0xFF}
        return Call(rid, name, args, self.task, "plain", mc=mc_ptr, mc_limit=limit)
