"""The replay driver: a trace's stage-2 operations through the model of pgtable.c.

A trace (trace.dat or raw tracefs copy) becomes, in one streaming pass:

1. events, read through the fast path with exactly the events needed
   (:class:`~ptreplay.stage2.source.Stage2Trace`);
2. operations with their observed effects
   (:class:`~ptreplay.stage2.operations.OperationBuilder`);
3. per stage-2 root a model (:class:`~ptreplay.stage2.rootmodel.RootModel`)
   that replays each operation and predicts its effects and return value;
4. one :class:`ReplayStep` per operation: the prediction, the observation,
   their comparable forms (:mod:`ptreplay.stage2.compare`), the merged stream
   the checkers run on, and whether the result depends on state the trace did
   not show (``uncertain``).

The kernel profile comes from the trace (uname, probe layout) unless given.
The platform features that change the kernel's path (stage-2 FWB, whether
TLB invalidations are visible (VHE), hardware AF management) are inferred
from the trace (:mod:`ptreplay.stage2.platform`) unless given: operations
are held back (at most ``lookahead`` of them) until the trace has shown
FWB and VHE, then the replay starts with those values; a feature the trace
has not shown by then is assumed (FWB off, TLB invalidations not visible)
and reported as assumed. Hardware AF management is decided per leaf as the
trace reveals it (see :mod:`ptreplay.stage2.rootmodel`); without an option
it is adopted only while the trace has shown no access-flag fault, and
every adoption is reported again as a divergence if the trace later shows
one. A wrong platform value therefore shows up as divergences.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ptreplay.effects import Alloc, AllocFail, Cmo, Pte, Tlbi
from ptreplay.errors import InputError
from ptreplay.model.geometry import granule_for
from ptreplay.model.memory import Platform
from ptreplay.model.profiles import PROFILES, Profile
from ptreplay.stage2.compare import Comparer, Difference, differences, merge
from ptreplay.stage2.kernels import KernelInfo
from ptreplay.stage2.operations import (
    CONCURRENT,
    LOST_EVENTS,
    NO_ENTRY,
    UNCERTAIN_FLAGS,
    Gap,
    Operation,
    OperationBuilder,
    Root,
)
from ptreplay.stage2.platform import Feature, PlatformEvidence, PlatformFeatures
from ptreplay.stage2.rootmodel import RootModel
from ptreplay.stage2.source import TLBI_PROBES, ScanEvent, Stage2Trace
from ptreplay.trace import LOST

__all__ = [
    "ReplayConfig",
    "ReplayStep",
    "Replay",
    "UnsupportedKernel",
    "REPLAYED_KINDS",
]

#: Operation kinds the model replays.
REPLAYED_KINDS = frozenset(["init", "map", "set_owner", "unmap", "wrprotect", "relax_perms",
                            "mkyoung", "mkold", "is_young", "flush", "destroy"])

_SINGLE_PAGE = frozenset(["relax_perms", "mkyoung", "mkold", "is_young"])
_ARGS = {
    "map": ("addr", "size", "phys", "prot", "mc"),
    "set_owner": ("addr", "size", "mc", "owner_id"),
    "unmap": ("addr", "size"), "wrprotect": ("addr", "size"), "flush": ("addr", "size"),
    "relax_perms": ("addr", "prot"), "mkyoung": ("addr",), "mkold": ("addr",),
    "is_young": ("addr",), "destroy": (), "init": (),
}
_AF_REVEALED = frozenset(["mkold", "mkyoung", "is_young", "map"])
_ALLOCS = (Alloc, AllocFail)
_TOP = 1 << 64


class UnsupportedKernel(InputError):
    """The trace's kernel has no model profile (or cannot be identified)."""


@dataclass(frozen=True)
class ReplayConfig:
    """What the user decided instead of the trace.

    :param profile: the model profile (``linux-6.1``); None: from the trace.
    :param fwb: / ``hw_af`` / ``vhe``: platform features; None: from the trace.
    :param lookahead: operations held back at most while FWB and VHE are undecided.
    """

    profile: str | None = None
    fwb: bool | None = None
    hw_af: bool | None = None
    vhe: bool | None = None
    lookahead: int = 16384


@dataclass(slots=True, eq=False)
class ReplayStep:
    """One operation replayed.

    :param op: the operation as the trace showed it.
    :param model: the root's model (None when the operation could not be replayed).
    :param predicted: the model's effects (with ``PageCount`` queries).
    :param predicted_ret: the model's return value; ``NotImplemented`` when not replayed.
    :param pseen: / ``oseen``: predicted and observed effects in comparable form;
        ``used`` the observations behind ``oseen``.
    :param merged: the effect stream for the checkers; ``merged_index`` the event
        ordinal each effect comes from.
    :param uncertain: the result depends on state the trace did not show; ``why`` says
        which.
    """

    op: Operation
    model: RootModel | None
    predicted: list[Any] = field(default_factory=list)
    predicted_ret: Any = NotImplemented
    pseen: list[tuple] = field(default_factory=list)
    oseen: list[tuple] = field(default_factory=list)
    used: list[Any] = field(default_factory=list)
    merged: list[Any] = field(default_factory=list)
    merged_index: list[int] = field(default_factory=list)
    uncertain: bool = False
    why: str | None = None

    @property
    def index(self) -> int:
        """The operation's first event ordinal."""
        return self.op.first_index

    @property
    def ret_diverges(self) -> bool:
        """Whether the observed return value differs from the model's."""
        return self.predicted_ret is not NotImplemented and not _same_ret(
            self.op.ret, self.predicted_ret)

    @property
    def effects_diverge(self) -> bool:
        """Whether the observed effects differ from the model's (observed kinds only)."""
        return self.predicted_ret is not NotImplemented and self.pseen != self.oseen

    @property
    def diverges(self) -> bool:
        """Return value or effects differ."""
        return self.ret_diverges or self.effects_diverge

    def differences(self) -> list[Difference]:
        """Where the observed effects differ from the prediction (see
        :func:`~ptreplay.stage2.compare.differences`)."""
        if self.predicted_ret is NotImplemented:
            return []
        return differences(self.pseen, self.oseen, self.used, self.index, self.op.ts)


def _same_ret(observed: Any, predicted: Any) -> bool:
    if observed is None or predicted is None:
        return observed is predicted
    return bool((int(observed) - int(predicted)) % _TOP == 0)


class _Engine:
    """Roots, their models and the comparison: everything but the trace and the platform
    decisions. The replay runs one; while the platform is undecided a scratch one runs
    ahead with FWB off to find the first operation that decides it."""

    def __init__(self, replay: Replay, platform: Platform, kinds: frozenset[str],
                 hw_af: bool | None) -> None:
        self.replay = replay
        self.profile = replay.profile
        self.platform = platform
        self.kinds = kinds
        self.hw_af = hw_af
        self.page_size = platform.granule.page_size
        self.models: dict[int, RootModel] = {}
        self.linear_offset: int | None = None
        self.comparer: Comparer | None = None
        self.stats: dict[str, int] = {}
        #: adoptions of a hardware-set AF: (op ordinal, entry PA, root id).
        self.adopted: list[tuple[int, int, int]] = []
        self._fresh_next = 0
        self._pending_init: dict[int, ReplayStep] = {}

    # --- addresses -------------------------------------------------------------------------

    def _offset(self, va: int) -> int:
        """``VA - PA`` of table pages: the first one seen lands in the middle of 48 bits."""
        if self.linear_offset is None:
            self.linear_offset = (va & ~0xFFF) - (1 << 47)
            self.comparer = Comparer(self.linear_offset, self.kinds)
        return self.linear_offset

    def _fresh(self, npages: int) -> int:
        """Addresses for pages the model allocates and the kernel did not: the top of the
        48-bit space, where no table page of the trace lands."""
        assert self.linear_offset is not None
        self._fresh_next += npages * self.page_size
        return self.linear_offset + (1 << 48) - self._fresh_next

    # --- records --------------------------------------------------------------------------

    def process(self, rec: Operation | Gap) -> Iterator[ReplayStep | Gap]:
        """Replay one record of the operations layer."""
        if type(rec) is Gap:
            for model in self.models.values():
                model.forget()
            self._count("gaps")
            yield rec
            return
        op = rec
        assert isinstance(op, Operation)
        if op.kind not in REPLAYED_KINDS or op.root is None:
            yield self._unreplayed(op, "the call was not seen" if NO_ENTRY in op.flags
                                   else f"{op.kind} is not modelled")
            return
        root_id = op.root
        pending = self._pending_init.pop(root_id, None)
        model = self.models.get(root_id)
        fields = op.entry_fields
        ia_bits, start_level = fields.get("ia_bits"), fields.get("start_level")
        if model is not None and ia_bits is not None and start_level is not None:
            if model.provisional and not model.geometry(ia_bits, start_level):
                self._count("geometry_corrected")
        if pending is not None:
            yield pending
        if op.kind == "init":
            yield from self._init(op)
            return
        if model is None:
            if op.pgd is None:
                yield self._unreplayed(op, "the root's pgd is not known")
                return
            model = RootModel(root_id, self.profile, self.platform, self._offset(op.pgd),
                              self._fresh, known=False)
            model.adopt(op.pgd, ia_bits, start_level)
            self.models[root_id] = model
        if model.pgt is None:
            yield self._unreplayed(op, "the root's init failed or it was destroyed")
            return
        kind = op.kind
        args = op.args
        for name in _ARGS[kind]:
            if name not in args:
                yield self._unreplayed(op, f"the probe does not show {name}")
                return
        why = None
        flags = op.flags
        if flags and (not flags.isdisjoint(UNCERTAIN_FLAGS) or CONCURRENT in flags):
            why = "the trace's record of the call is incomplete (" + ", ".join(
                sorted(flags & (UNCERTAIN_FLAGS | {CONCURRENT}))) + ")"
        if model.unknown:
            lo, hi = _range(kind, args, self.page_size)
            if model.touches_unknown(lo, hi):
                root = self.replay.roots.get(root_id)
                why = why or ("it touches IPA space whose earlier state the trace does not show"
                              if root is None or not root.init_seen
                              else "it touches IPA space whose state is unknown after lost "
                              "events")
        index = op.first_index
        hw: Pte | None = None
        if (model.af_unknown and kind in _AF_REVEALED and self.hw_af is not False
                and (self.hw_af or self.replay.first_mkyoung is None
                     or self.replay.first_mkyoung > index)):
            hw = model.adopt_af(kind, args["addr"], op.ret, index)
            if hw is not None:
                self.adopted.append((index, hw.ptep, root_id))
        allocs = [o.effect.pa if type(o.effect) is Alloc else None
                  for o in op.effects if type(o.effect) in _ALLOCS]
        ret = model.run(kind, args, allocs)
        effects = model.take_effects()
        if self.hw_af is not False:
            model.note_stores(kind, effects)
        if kind == "unmap" and model.unknown and ret == 0 and why is None:
            model.learn_unmapped(args["addr"], args["addr"] + args["size"])
        step = self._compare(op, model, effects, ret, index)
        if hw is not None:
            step.merged.insert(0, hw)
            step.merged_index.insert(0, index)
        if why is not None:
            step.uncertain = True
            step.why = why
        self._count(kind)
        if kind == "destroy":
            del self.models[root_id]
        yield step

    def finish(self) -> Iterator[ReplayStep]:
        """Inits still waiting for their root's geometry."""
        for root_id in sorted(self._pending_init):
            yield self._pending_init.pop(root_id)

    def _init(self, op: Operation) -> Iterator[ReplayStep]:
        assert op.root is not None
        allocs: list[int | None] = []
        size = None
        for o in op.effects:
            if type(o.effect) is Alloc:
                allocs.append(o.effect.pa)
                size = o.effect.size
            elif type(o.effect) is AllocFail:
                allocs.append(None)
        first = next((a for a in allocs if a), None)
        if first is None and self.linear_offset is None:
            yield self._unreplayed(op, "no pgd allocation was seen")
            return
        model = RootModel(op.root, self.profile, self.platform,
                          self._offset(first or 0), self._fresh, known=True)
        flags = int(op.entry_fields.get("flags", 0) or 0)
        ret = model.init(flags, first, size, None, None, allocs)
        effects = model.take_effects()
        self.models[op.root] = model
        step = self._compare(op, model, effects, ret, op.first_index)
        if op.uncertain:
            step.uncertain = True
            step.why = "the trace's record of the call is incomplete"
        self._count("init")
        if ret == 0 and not op.uncertain:
            self._pending_init[op.root] = step  # until its geometry is known
        else:
            yield step

    def _compare(self, op: Operation, model: RootModel, effects: list[Any], ret: Any,
                 index: int) -> ReplayStep:
        comparer = self.comparer
        assert comparer is not None
        pseen, where = comparer.predicted(effects)
        root = self.replay.roots.get(model.root_id)
        oseen, used = comparer.observed(op.effects, root.mmu if root is not None else None)
        if comparer.cmo_offset is None:
            comparer.learn_cmo_offset(pseen, oseen, used)
        merged, merged_index = merge(effects, where, pseen, oseen, used, comparer, index)
        step = ReplayStep(op, model, effects, ret, pseen, oseen, used, merged, merged_index)
        if step.diverges:
            self._count("divergent_ops")
        return step

    def _unreplayed(self, op: Operation, why: str) -> ReplayStep:
        """A step for an operation the model cannot replay: its observations only."""
        self._count("unreplayed")
        if op.root is not None and op.root in self.models:
            self.models[op.root].forget()
        comparer = self.comparer
        merged: list[Any] = []
        index: list[int] = []
        if comparer is not None:
            for o in op.effects:
                e = comparer.effect(o)
                if type(e).__name__ != "PageCount":
                    merged.append(e)
                    index.append(o.index)
        return ReplayStep(op, self.models.get(op.root) if op.root is not None else None,
                          merged=merged, merged_index=index, uncertain=True,
                          why=f"not replayed: {why}")

    def _count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1


class Replay:
    """Replays the stage-2 operations of a trace through the model.

    :param trace: the trace.
    :param config: profile and platform decisions of the user.
    :param progress: called now and then with the number of events read so far.
    :raises UnsupportedKernel: no profile replays the trace's kernel.
    """

    def __init__(self, trace: Stage2Trace, config: ReplayConfig | None = None,
                 progress: Callable[[int], None] | None = None) -> None:
        self.trace = trace
        self.config = config or ReplayConfig()
        self.progress = progress
        self.kernel: KernelInfo = trace.kernel(tuple(PROFILES))
        name = self.config.profile
        if name is None:
            if not self.kernel.covered:
                raise UnsupportedKernel(self.kernel.message(), trace.source)
            assert self.kernel.profile is not None
            name = self.kernel.profile
        if name not in PROFILES:
            raise UnsupportedKernel(
                f"unknown profile {name!r} (available: {', '.join(PROFILES)})", trace.source)
        self.profile: Profile = PROFILES[name]
        try:
            self.granule = granule_for(trace.page_size)
        except ValueError as err:
            raise InputError(str(err), trace.source) from None
        self.evidence = PlatformEvidence()
        #: the features the replay used (set when the replay starts).
        self.platform: PlatformFeatures | None = None
        #: the features the whole trace shows (set at the end).
        self.platform_final: PlatformFeatures | None = None
        self.roots: dict[int, Root] = {}
        self.stats: dict[str, int] = {}
        #: event ordinal of the first mkyoung (an access-flag fault handled by KVM).
        self.first_mkyoung: int | None = None
        self.engine: _Engine | None = None
        self.events_read = 0
        cfg = self.config
        self._fwb: Feature | None = (Feature("fwb", cfg.fwb, "override", "given as an option")
                                     if cfg.fwb is not None else None)
        self._vhe: Feature | None = (Feature("vhe", cfg.vhe, "override", "given as an option")
                                     if cfg.vhe is not None else None)
        self._scout: _Engine | None = None

    @property
    def kinds(self) -> frozenset[str]:
        """The observed effect kinds the replay compares."""
        return self.engine.kinds if self.engine is not None else frozenset()

    @property
    def linear_offset(self) -> int | None:
        """``VA - PA`` of table pages in the model."""
        return self.engine.linear_offset if self.engine is not None else None

    @property
    def comparer(self) -> Comparer | None:
        """Observed -> comparable records (holds the learnt kernel linear-map offset)."""
        return self.engine.comparer if self.engine is not None else None

    @property
    def adopted(self) -> list[tuple[int, int, int]]:
        """Hardware-AF adoptions: (op ordinal, entry PA, root id)."""
        return self.engine.adopted if self.engine is not None else []

    # --- the stream ----------------------------------------------------------------------

    def steps(self) -> Iterator[ReplayStep | Gap]:
        """Replay the trace; yields a :class:`ReplayStep` per operation (and a
        :class:`~ptreplay.stage2.operations.Gap` where events were lost), in the order
        the operations completed (an init as late as the next operation of its root)."""
        builder = OperationBuilder(self.trace.page_size)
        self.roots = builder.roots
        handlers = builder._handlers
        ready = builder.ready
        held: deque[Operation | Gap] | None = deque()
        if self._decided():
            self._start()
            held = None
        progress = self.progress
        keys = self.trace.fields
        n = 0
        # Stage2Trace.events(), inlined: one generator less per event.
        for ts, cpu, name, vals in self.trace.trace.scan(keys, lost=True):
            if name is LOST:
                handlers[LOST_EVENTS](ScanEvent(n, cpu, ts, 0, LOST_EVENTS, {"count": vals[0]}))
            else:
                fields = dict(zip(keys[name], vals, strict=True))
                handlers[name](ScanEvent(n, cpu, ts, vals[0], name, fields))
                n += 1
                if not n & 0x3FFF and progress is not None:
                    progress(n)
            if ready:
                for rec in ready:
                    if held is None:
                        yield from self._process(rec)
                        continue
                    held.append(rec)
                    self._scout_op(rec)
                    if self._decided() or len(held) >= self.config.lookahead:
                        self._start()
                        while held:
                            yield from self._process(held.popleft())
                        held = None
                ready.clear()
        builder.finish()
        self.events_read = n
        if progress is not None:
            progress(n)
        for rec in ready:
            if held is None:
                yield from self._process(rec)
            else:
                held.append(rec)
                self._scout_op(rec)
        ready.clear()
        if held is not None:
            self._start()
            while held:
                yield from self._process(held.popleft())
        assert self.engine is not None
        yield from self.engine.finish()
        self._finish()
        for key, value in builder.stats.items():
            self.stats["ops." + key] = value
        for key, value in self.engine.stats.items():
            self.stats[key] = value

    def _process(self, rec: Operation | Gap) -> Iterator[ReplayStep | Gap]:
        if type(rec) is Operation:
            if rec.kind == "mkyoung" and self.first_mkyoung is None:  # type: ignore[union-attr]
                self.first_mkyoung = rec.first_index  # type: ignore[union-attr]
            if self._open:
                self.evidence.observe(rec)  # type: ignore[arg-type]
        assert self.engine is not None
        yield from self.engine.process(rec)

    # --- platform ----------------------------------------------------------------------------

    def _decided(self) -> bool:
        return self._fwb is not None and self._vhe is not None

    def _scout_op(self, rec: Operation | Gap) -> None:
        """Before the replay starts: observe the platform, and run the scratch model to find
        the first operation that shows FWB or the visibility of TLB invalidations."""
        if type(rec) is not Operation:
            if self._scout is not None:
                for _ in self._scout.process(rec):
                    pass
            return
        op = rec
        assert isinstance(op, Operation)
        if op.kind == "mkyoung" and self.first_mkyoung is None:
            self.first_mkyoung = op.first_index
        self.evidence.observe(op)
        if self._scout is None:
            self._scout = _Engine(self, Platform(granule=self.granule, fwb=False),
                                  self.trace.observable(tlbi=True), self.config.hw_af)
        for step in self._scout.process(op):
            if isinstance(step, ReplayStep) and not step.uncertain and \
                    step.predicted_ret is not NotImplemented:
                self._decide(step)

    def _decide(self, step: ReplayStep) -> None:
        op = step.op
        observed = op.effects
        if self._fwb is None and op.kind in ("unmap", "flush") and \
                "cmo:dcache_clean_inval_poc" in self.trace.observable(tlbi=False):
            cleans = any(type(e) is Cmo and e.kind == "dcache_clean_inval_poc"
                         for e in step.predicted)
            if cleans:
                seen = any(type(o.effect) is Cmo and o.effect.kind == "dcache_clean_inval_poc"
                           for o in observed)
                what = "an unmap" if op.kind == "unmap" else "a flush"
                if seen:
                    self._fwb = Feature("fwb", False, "trace", f"{what} of cacheable memory "
                                        "cleaned the data cache", op.first_index)
                else:
                    self._fwb = Feature("fwb", True, "trace", f"{what} of cacheable memory did "
                                        "not clean the data cache (stage2_unmap_walker and "
                                        "kvm_pgtable_stage2_flush skip it only with FWB)",
                                        op.first_index)
        if self._vhe is None and any(type(e) is Tlbi for e in step.predicted):
            tlbi = next((o for o in observed if type(o.effect) is Tlbi), None)
            if tlbi is not None:
                self._vhe = Feature("vhe", True, "trace", "TLB invalidation helpers ran at EL1",
                                    tlbi.index)
            elif any(self.trace.has_event(p) for p in TLBI_PROBES):
                self._vhe = Feature("vhe", False, "trace", "an operation invalidated the TLB "
                                    "and its probes did not fire (they run at EL2: nVHE)",
                                    op.first_index)

    @property
    def _open(self) -> bool:
        """Whether some feature is still to be confirmed by the rest of the trace."""
        return self.platform is not None and (
            self.platform.fwb.source == "assumed" or self.platform.vhe.source == "assumed")

    def _start(self) -> None:
        cfg = self.config
        inferred = self.evidence.infer(self.kernel.series, {"hw_af": cfg.hw_af})
        fwb = self._fwb or inferred.fwb
        if fwb.value is None:
            fwb = Feature("fwb", False, "assumed", "the trace had not shown it when the replay "
                          "started: assumed absent")
        vhe = self._vhe or inferred.vhe
        if vhe.value is None:
            vhe = Feature("vhe", False, "assumed", "the trace had not shown it when the replay "
                          "started: TLB invalidations assumed invisible")
        hw_af = inferred.hw_af
        if cfg.hw_af is None:
            hw_af = Feature("hw_af", None, "per leaf", "adopted where the trace shows the "
                            "hardware set AF, while no access-flag fault was handled")
        self.platform = PlatformFeatures(fwb=fwb, hw_af=hw_af, tlb_range=inferred.tlb_range,
                                         vhe=vhe, mc=inferred.mc)
        model_platform = Platform(granule=self.granule, fwb=bool(fwb.value),
                                  hw_af=bool(cfg.hw_af) if cfg.hw_af is not None else True)
        self.engine = _Engine(self, model_platform, self.trace.observable(tlbi=bool(vhe.value)),
                              cfg.hw_af)
        self._scout = None

    def _finish(self) -> None:
        self.platform_final = self.evidence.infer(self.kernel.series)
        assert self.engine is not None
        if self.config.hw_af is None and self.first_mkyoung is not None:
            self.stats["af_adoptions_contradicted"] = sum(
                1 for a in self.engine.adopted if a[0] < self.first_mkyoung)


def _range(kind: str, args: dict[str, Any], page: int) -> tuple[int, int]:
    """The IPA range an operation touches."""
    if kind == "destroy":
        return 0, _TOP
    addr = int(args.get("addr", 0))
    if kind in _SINGLE_PAGE:
        return addr, addr + page
    return addr, addr + int(args.get("size", page))
