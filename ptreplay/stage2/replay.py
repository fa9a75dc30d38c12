"""The replay driver: a trace's stage-2 operations through the model of pgtable.c.

A trace (trace.dat or raw tracefs copy) becomes, in one streaming pass:

1. events, read through the fast path with exactly the events needed
   (:class:`~ptreplay.stage2.source.Stage2Trace`), and operations with their
   observed effects (:class:`~ptreplay.stage2.operations.OperationBuilder`),
   in this process or a reader process (:class:`~ptreplay.stage2.feed.Feed`),
   as compact records (:class:`~ptreplay.stage2.records.OpRecord`);
2. per stage-2 root a model (:class:`~ptreplay.stage2.rootmodel.RootModel`)
   that replays each operation and predicts its effects and return value;
3. one :class:`ReplayStep` per operation: the prediction, the observation,
   their comparable forms (:mod:`ptreplay.stage2.compare`), the merged stream
   the checkers run on, and whether the result depends on state the trace did
   not show (``uncertain``).

The kernel profile comes from the trace (uname, probe layout) unless given.
The platform features that change the kernel's path (stage-2 FWB, whether
TLB invalidations are visible (VHE), hardware AF management) come from the
trace unless given. Operations are held back (at most ``lookahead`` of them)
while a scratch model replays them with FWB off, until one of them shows FWB
(an unmap or flush of cacheable memory that did, or did not, clean the data
cache) and one shows whether TLB invalidations are visible (an operation the
model says invalidates, and whether the probes fired); then the replay
starts with those values. A feature the trace has not shown by then is
assumed (FWB off, invalidations invisible: :mod:`ptreplay.stage2.platform`'s
inference, else those defaults) and reported as assumed. Hardware AF
management is decided per leaf as the trace reveals it (see
:mod:`ptreplay.stage2.rootmodel`); without an option it is adopted only
while the trace has shown no access-flag fault (``mkyoung``). A wrong
platform value shows up as divergences: with FWB assumed wrongly, unmaps
clean (or do not clean) where the model says otherwise; a TLB invalidation
that fires where they were assumed invisible is an unexpected effect.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ptreplay.effects import Cmo, Pte, Tlbi
from ptreplay.errors import InputError
from ptreplay.model.geometry import granule_for
from ptreplay.model.memory import Platform
from ptreplay.model.profiles import PROFILES, Profile
from ptreplay.stage2.compare import Comparer, Difference, differences, merge
from ptreplay.stage2.feed import Feed
from ptreplay.stage2.kernels import KernelInfo
from ptreplay.stage2.operations import CONCURRENT, NO_ENTRY, UNCERTAIN_FLAGS, Gap, Root
from ptreplay.stage2.platform import (
    Feature,
    PlatformEvidence,
    PlatformFeatures,
    features_from_dmesg,
)
from ptreplay.stage2.records import Note, OpRecord
from ptreplay.stage2.rootmodel import RootModel
from ptreplay.stage2.source import TLBI_PROBES, Stage2Trace

__all__ = [
    "ReplayConfig",
    "ReplayStep",
    "Replay",
    "UnsupportedKernel",
    "REPLAYED_KINDS",
    "REPLAY_PROFILES",
]

#: The model profiles the replay drives. The model also has linux-6.12 (and its 16 KiB
#: build), whose traces need what this replay does not do yet: parallel faults on one
#: table (interleaved resumable walks, cmpxchg races), RCU-deferred table frees
#: (``free_unlinked``), ``split`` and range TLBIs.
REPLAY_PROFILES = ("linux-5.13", "linux-6.1")

#: Operation kinds the model replays.
REPLAYED_KINDS = frozenset(["init", "map", "set_owner", "unmap", "wrprotect", "relax_perms",
                            "mkyoung", "mkold", "is_young", "flush", "destroy"])

_SINGLE_PAGE = frozenset(["relax_perms", "mkyoung", "mkold", "is_young"])
_ARGS = {kind: frozenset(names) for kind, names in {
    "map": ("addr", "size", "phys", "prot", "mc"),
    "set_owner": ("addr", "size", "mc", "owner_id"),
    "unmap": ("addr", "size"), "wrprotect": ("addr", "size"), "flush": ("addr", "size"),
    "relax_perms": ("addr", "prot"), "mkyoung": ("addr",), "mkold": ("addr",),
    "is_young": ("addr",), "destroy": (), "init": (),
}.items()}
#: Operations that may allocate table pages.
_ALLOCATING = frozenset(["map", "set_owner"])
_AF_REVEALED = frozenset(["mkold", "mkyoung", "is_young", "map"])
_UNSURE = UNCERTAIN_FLAGS | {CONCURRENT}
_MAX_ADOPTIONS_KEPT = 4096
_TOP = 1 << 64


class UnsupportedKernel(InputError):
    """The trace's kernel has no model profile (or cannot be identified)."""


@dataclass(frozen=True)
class ReplayConfig:
    """What the user decided instead of the trace.

    :param profile: the model profile (``linux-6.1``); None: from the trace.
    :param fwb: / ``hw_af`` / ``vhe``: platform features; None: from the trace.
    :param lookahead: operations held back at most while FWB and VHE are undecided.
    :param jobs: 2: read the trace in a second process; 1: in this one.
    """

    profile: str | None = None
    fwb: bool | None = None
    hw_af: bool | None = None
    vhe: bool | None = None
    lookahead: int = 16384
    jobs: int = 1


@dataclass(slots=True, eq=False)
class ReplayStep:
    """One operation replayed.

    :param op: the operation as the trace showed it.
    :param model: the root's model (None when the operation could not be replayed).
    :param predicted: the model's effects (with ``PageCount`` queries).
    :param predicted_ret: the model's return value; ``NotImplemented`` when not replayed.
    :param pseen: the predicted effects in comparable form (``op.seen`` are the
        observed ones).
    :param merged: the effect stream for the checkers, ``None`` when it is ``predicted``
        itself (the observations equal the prediction); ``merged_index`` the event
        ordinal each effect comes from (``None``: the operation's).
    :param uncertain: the result depends on state the trace did not show; ``why`` says
        which.
    """

    op: OpRecord
    model: RootModel | None
    predicted: list[Any] = field(default_factory=list)
    predicted_ret: Any = NotImplemented
    pseen: list[tuple] = field(default_factory=list)
    merged: list[Any] | None = None
    merged_index: list[int] | None = None
    uncertain: bool = False
    why: str | None = None
    #: whether the observed return value / effects differ from the model's (set when
    #: replayed).
    ret_diverges: bool = False
    effects_diverge: bool = False
    #: the model's effects are page_count queries only (nothing for the checkers).
    effects_only_queries: bool = False
    #: for an init: the table's ``(ia_bits, start_level)`` (from the root's next operation).
    geometry: tuple[int, int] | None = None

    @property
    def index(self) -> int:
        """The operation's first event ordinal."""
        return self.op.first_index

    @property
    def oseen(self) -> list[tuple]:
        """The observed effects in comparable form."""
        return self.op.seen

    def stream(self) -> tuple[list[Any], list[int] | None]:
        """The merged effect stream and its event ordinals (None: the operation's);
        ``PageCount`` queries may be in it (they are not effects)."""
        if self.merged is None:
            return self.predicted, None
        return self.merged, self.merged_index

    @property
    def replayed(self) -> bool:
        """Whether the model replayed the operation."""
        return self.predicted_ret is not NotImplemented

    @property
    def diverges(self) -> bool:
        """Return value or effects differ."""
        return self.ret_diverges or self.effects_diverge

    def differences(self) -> list[Difference]:
        """Where the observed effects differ from the prediction (see
        :func:`~ptreplay.stage2.compare.differences`)."""
        if self.predicted_ret is NotImplemented or not self.effects_diverge:
            return []
        op = self.op
        return differences(self.pseen, op.seen, op.seen_index, op.seen_ts, self.index, op.ts)


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
        #: adoptions of a hardware-set AF: (op ordinal, entry PA, root id, timestamp).
        self.adopted: list[tuple[int, int, int, int | None]] = []
        #: how many there were (the list keeps the first ones: they matter only until the
        #: trace says whether the CPU manages AF, and memory must not grow with the trace).
        self.adoptions = 0
        self._fresh_next = 0
        self._pending_init: dict[int, ReplayStep] = {}
        #: maps with and without a memory cache.
        self.maps_with_mc = 0
        self.maps_without_mc = 0

    # --- addresses -------------------------------------------------------------------------

    def _offset(self, va: int) -> int:
        """``VA - PA`` of table pages: the kernel's own linear-map offset when the replay
        learnt it before starting (table pages then have their real PAs), else the top 16
        bits of the first one seen (the linear map's base, 0xffff000000000000 with 48-bit
        VAs), so that a table page's address in the model is its kernel virtual address
        without them."""
        if self.linear_offset is None:
            known = self.replay.kernel_linear_offset
            self.linear_offset = known if known is not None else va & ~((1 << 48) - 1)
            self.comparer = Comparer(self.linear_offset, self.kinds)
            self.comparer.cmo_offset = known
        return self.linear_offset

    def _fresh(self, npages: int) -> int:
        """Addresses for pages the model allocates and the kernel did not: the top of the
        48-bit space, where no table page of the trace lands."""
        assert self.linear_offset is not None
        self._fresh_next += npages * self.page_size
        return self.linear_offset + (1 << 48) - self._fresh_next

    # --- records --------------------------------------------------------------------------

    def process(self, rec: OpRecord | Gap | Note, out: list[ReplayStep | Gap]) -> None:
        """Replay one record; appends to ``out`` the steps it completes (an init waits for
        the next operation of its root, which gives its geometry)."""
        if type(rec) is not OpRecord:
            if type(rec) is Note:
                self.replay._note(rec)  # type: ignore[arg-type]
                return
            for live in self.models.values():
                live.forget()
            self._count("gaps")
            out.append(rec)  # type: ignore[arg-type]
            return
        op: OpRecord = rec  # type: ignore[assignment]
        kind = op.kind
        root_id = op.root
        if kind not in REPLAYED_KINDS or root_id is None:
            out.append(self._unreplayed(op, "the call was not seen" if NO_ENTRY in op.flags
                                        else f"{kind} is not modelled"))
            return
        if kind == "map":
            mc = op.args.get("mc")
            if mc:
                self.maps_with_mc += 1
            elif mc is not None:
                self.maps_without_mc += 1
        elif kind == "mkyoung" and self.replay.first_mkyoung is None:
            self.replay.first_mkyoung = op.first_index
            self.replay.first_mkyoung_ts = op.ts
        model: RootModel | None = self.models.get(root_id)
        if self._pending_init:
            pending = self._pending_init.pop(root_id, None)
            if pending is not None:
                if model is not None and op.ia_bits is not None and \
                        op.start_level is not None:
                    self._geometry(model, op)
                if model is not None and model.pgt is not None:
                    pending.geometry = (model.pgt.ia_bits, model.pgt.start_level)
                out.append(pending)
        if kind == "init":
            step = self._init(op)
            if step is not None:
                out.append(step)
            return
        if model is None:
            if op.pgd is None:
                out.append(self._unreplayed(op, "the root's pgd is not known"))
                return
            model = RootModel(root_id, self.profile, self.platform, self._offset(op.pgd),
                              self._fresh, known=False)
            model.adopt(op.pgd, op.ia_bits, op.start_level)
            self.models[root_id] = model
        elif model.provisional and op.ia_bits is not None and op.start_level is not None:
            self._geometry(model, op)
        if model.pgt is None:
            out.append(self._unreplayed(op, "the root's init failed or it was destroyed"))
            return
        args = op.args
        if not args.keys() >= _ARGS[kind]:
            missing = ", ".join(sorted(_ARGS[kind] - args.keys()))
            out.append(self._unreplayed(op, f"the probe does not show {missing}"))
            return
        why = None
        if op.flags and not _UNSURE.isdisjoint(op.flags):
            why = "the trace's record of the call is incomplete (" + ", ".join(
                f for f in op.flags if f in _UNSURE) + ")"
        if model.unknown.ranges:
            lo, hi = _range(kind, args, self.page_size)
            if model.touches_unknown(lo, hi):
                why = why or ("it touches IPA space whose earlier state the trace does not show"
                              if model.adopted_root and not model.lost
                              else "it touches IPA space whose state is unknown after lost "
                              "events")
        index = op.first_index
        hw: Pte | None = None
        if (model.af_unknown and kind in _AF_REVEALED and self.hw_af is not False
                and (self.hw_af or self.replay.first_mkyoung is None
                     or self.replay.first_mkyoung > index)):
            hw = model.adopt_af(kind, args["addr"], op.ret, index)
            if hw is not None:
                self.adoptions += 1
                if len(self.adopted) < _MAX_ADOPTIONS_KEPT:
                    self.adopted.append((index, hw.ptep, root_id, op.ts))
        allocs = ([r[2] for r in op.seen if r[0] == "alloc" or r[0] == "alloc_fail"]
                  if kind in _ALLOCATING else [])
        ret = model.run(kind, args, allocs)
        effects = model.take_effects()
        if self.hw_af is not False and (kind == "mkold" or model.af_unknown):
            model.note_stores(kind, effects)
        if kind == "unmap" and model.unknown.ranges and ret == 0 and why is None:
            model.learn_unmapped(args["addr"], args["addr"] + args["size"])
        step = self._compare(op, model, effects, ret, index)
        if hw is not None:
            if step.merged is None:
                step.merged = [hw, *effects]
            else:
                step.merged.insert(0, hw)
                if step.merged_index is not None:
                    step.merged_index.insert(0, index)
        if why is not None:
            step.uncertain = True
            step.why = why
        if kind == "destroy":
            del self.models[root_id]
        out.append(step)

    def _geometry(self, model: RootModel, op: OpRecord) -> None:
        assert op.ia_bits is not None and op.start_level is not None
        if not model.geometry(op.ia_bits, op.start_level):
            self._count("geometry_corrected")

    def finish(self) -> list[ReplayStep]:
        """Inits still waiting for their root's geometry (as the pgd's size suggests it)."""
        return [self._pending_init.pop(root_id) for root_id in sorted(self._pending_init)]

    def _init(self, op: OpRecord) -> ReplayStep | None:
        assert op.root is not None
        allocs: list[int | None] = []
        size = None
        for r in op.seen:
            if r[0] == "alloc":
                allocs.append(r[2])
                size = r[3]
            elif r[0] == "alloc_fail":
                allocs.append(None)
        first = next((a for a in allocs if a), None)
        if first is None and self.linear_offset is None:
            return self._unreplayed(op, "no pgd allocation was seen")
        model = RootModel(op.root, self.profile, self.platform,
                          self._offset(first or 0), self._fresh, known=True)
        flags = int(op.args.get("flags", 0) or 0)
        ret = model.init(flags, first, size, None, None, allocs,
                         int(op.args.get("force_pte_cb", 0) or 0))
        effects = model.take_effects()
        self.models[op.root] = model
        step = self._compare(op, model, effects, ret, op.first_index)
        if model.pgt is not None:
            step.geometry = (model.pgt.ia_bits, model.pgt.start_level)
        if op.uncertain:
            step.uncertain = True
            step.why = "the trace's record of the call is incomplete"
        if ret == 0 and not op.uncertain:
            self._pending_init[op.root] = step  # until its geometry is known
            return None
        return step

    def _compare(self, op: OpRecord, model: RootModel, effects: list[Any], ret: Any,
                 index: int) -> ReplayStep:
        comparer = self.comparer
        assert comparer is not None
        seen = op.seen
        obs = op.ret
        ret_diverges = obs != ret and (obs is None or ret is None
                                       or (int(obs) - int(ret)) % _TOP != 0)
        stats = self.stats
        stats[op.kind] = stats.get(op.kind, 0) + 1
        same, queries = comparer.matches(effects, seen)
        if same:  # the common case: the merged stream is the prediction
            return ReplayStep(op, model, effects, ret, seen, None, None,
                              ret_diverges=ret_diverges,
                              effects_only_queries=len(effects) == queries)
        pseen, where = comparer.predicted(effects)
        if comparer.cmo_offset is None:
            comparer.learn_cmo_offset(pseen, seen, op.seen_index)
        refcount = model.mm_ops.refcount
        off = comparer.table_offset
        merged, merged_index = merge(effects, where, pseen, seen, op.seen_index, comparer,
                                     index, lambda pa: refcount.get(pa + off, 1))
        return ReplayStep(op, model, effects, ret, pseen, merged, merged_index,
                          ret_diverges=ret_diverges, effects_diverge=merged is not None,
                          effects_only_queries=len(effects) == comparer.queries)

    def _unreplayed(self, op: OpRecord, why: str) -> ReplayStep:
        """A step for an operation the model cannot replay: its observations only."""
        self._count("unreplayed")
        if op.root is not None and op.root in self.models:
            self.models[op.root].forget()
        merged: list[Any] = []
        index: list[int] = []
        comparer = self.comparer
        if comparer is not None:
            counts: dict[int, int] = {}

            def count(pa: int, delta: int) -> int:
                counts[pa] = counts.get(pa, 1) + delta
                return counts[pa]

            for r, i in zip(op.seen, op.seen_index, strict=True):
                e = comparer.effect(r, count)
                if e is not None:
                    merged.append(e)
                    index.append(i)
        return ReplayStep(op, self.models.get(op.root) if op.root is not None else None,
                          merged=merged, merged_index=index, uncertain=True,
                          why=f"not replayed: {why}")

    def _count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1


class Replay:
    """Replays the stage-2 operations of a trace through the model.

    :param trace: the trace.
    :param config: profile, platform and process decisions of the user.
    :param progress: called now and then with the number of events read so far.
    :raises UnsupportedKernel: no profile replays the trace's kernel.
    """

    def __init__(self, trace: Stage2Trace, config: ReplayConfig | None = None,
                 progress: Callable[[int], None] | None = None) -> None:
        self.trace = trace
        self.config = config or ReplayConfig()
        self.progress = progress
        self.kernel: KernelInfo = trace.kernel(REPLAY_PROFILES)
        name = self.config.profile
        if name is None:
            if not self.kernel.covered:
                message = self.kernel.message()
                if self.kernel.profile in PROFILES:
                    message = (f"{message.split(':')[0]}: the model has profile "
                               f"{self.kernel.profile}, but replaying its traces is not "
                               "supported yet (parallel faults, RCU-deferred table frees, "
                               f"range TLBIs); replayed profiles: {', '.join(REPLAY_PROFILES)}")
                raise UnsupportedKernel(message, trace.source)
            assert self.kernel.profile is not None
            name = self.kernel.profile
        if name not in REPLAY_PROFILES:
            why = ("replaying its traces is not supported yet" if name in PROFILES
                   else "no such profile")
            raise UnsupportedKernel(f"profile {name!r}: {why} (replayed profiles: "
                                    f"{', '.join(REPLAY_PROFILES)})", trace.source)
        self.profile: Profile = PROFILES[name]
        try:
            self.granule = granule_for(trace.page_size)
        except ValueError as err:
            raise InputError(str(err), trace.source) from None
        self.evidence = PlatformEvidence()
        #: the features the replay used (set when the replay starts).
        self.platform: PlatformFeatures | None = None
        #: what the whole trace showed of the features still open when the replay started.
        self.platform_final: PlatformFeatures | None = None
        #: the operations layer's roots (after :meth:`steps` ran out).
        self.roots: dict[int, Root] = {}
        self.stats: dict[str, int] = {}
        #: event ordinal of the first mkyoung (an access-flag fault handled by KVM).
        self.first_mkyoung: int | None = None
        self.first_mkyoung_ts: int | None = None
        self.engine: _Engine | None = None
        self.events_read = 0
        cfg = self.config
        self._fwb: Feature | None = (Feature("fwb", cfg.fwb, "override", "given as an option")
                                     if cfg.fwb is not None else None)
        self._vhe: Feature | None = (Feature("vhe", cfg.vhe, "override", "given as an option")
                                     if cfg.vhe is not None else None)
        self._scout: _Engine | None = None
        self._open = False
        #: the kernel's linear-map offset (``VA - PA``), when the trace showed it before the
        #: replay started (cache maintenance of a mapped page, a table descriptor stored).
        self.kernel_linear_offset: int | None = None
        # Entry stores compare table descriptors, which hold table pages' real PAs: the
        # model's table pages must have them too, so the offset is needed first.
        self._needs_linear = trace.has_event("stage2_pte_store")
        self._boot_log: list[str] = []
        #: hardware AF management as the trace's boot-log lines say it, if they do.
        self.hw_af_marker: Feature | None = None

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
        """Predicted -> comparable records (holds the learnt kernel linear-map offset)."""
        return self.engine.comparer if self.engine is not None else None

    @property
    def adopted(self) -> list[tuple[int, int, int, int | None]]:
        """Hardware-AF adoptions: (op ordinal, entry PA, root id, timestamp)."""
        return self.engine.adopted if self.engine is not None else []

    # --- the stream ----------------------------------------------------------------------

    def steps(self) -> Iterator[ReplayStep | Gap]:
        """Replay the trace; yields a :class:`ReplayStep` per operation (and a
        :class:`~ptreplay.stage2.operations.Gap` where events were lost), in the order
        the operations completed (an init as late as the next operation of its root)."""
        feed = Feed(self.trace, self.config.jobs, self.progress)
        held: deque[OpRecord | Gap] | None = deque()  # before the replay starts
        if self._decided():
            self._start()
            held = None
        engine = self.engine
        out: list[ReplayStep | Gap] = []
        for batch in feed.batches():
            if held is None:
                assert engine is not None
                process = engine.process
                if self._open:
                    for rec in batch:
                        if type(rec) is OpRecord:
                            self.evidence.observe(rec)  # type: ignore[arg-type]
                        process(rec, out)
                else:
                    for rec in batch:
                        process(rec, out)
                yield from out
                out.clear()
                continue
            for rec in batch:
                if held is None:
                    assert engine is not None
                    engine.process(rec, out)
                    continue
                if type(rec) is Note:
                    self._note(rec)  # type: ignore[arg-type]
                else:
                    held.append(rec)  # type: ignore[arg-type]
                    self._scout_op(rec)  # type: ignore[arg-type]
                if self._decided() or len(held) >= self.config.lookahead:
                    self._start()
                    engine = self.engine
                    assert engine is not None
                    while held:
                        engine.process(held.popleft(), out)
                    held = None
            yield from out
            out.clear()
        if held is not None:
            self._start()
            engine = self.engine
            assert engine is not None
            while held:
                engine.process(held.popleft(), out)
            yield from out
            out.clear()
        assert engine is not None
        yield from engine.finish()
        self.events_read = feed.events_read
        self.roots = feed.roots
        self._finish()
        for key, value in feed.stats.items():
            self.stats["ops." + key] = value
        self.stats.update(engine.stats)

    # --- platform ----------------------------------------------------------------------------

    def _decided(self) -> bool:
        return (self._fwb is not None and self._vhe is not None
                and (self.kernel_linear_offset is not None or not self._needs_linear))

    def _scout_op(self, rec: OpRecord | Gap) -> None:
        """Before the replay starts: observe the platform, and run the scratch model to find
        the first operation that shows FWB or the visibility of TLB invalidations."""
        if type(rec) is Note:
            self._note(rec)  # type: ignore[arg-type]
            return
        if type(rec) is not OpRecord:
            if self._scout is not None:
                self._scout.process(rec, [])
            return
        op: OpRecord = rec  # type: ignore[assignment]
        if op.kind == "mkyoung" and self.first_mkyoung is None:
            self.first_mkyoung = op.first_index
            self.first_mkyoung_ts = op.ts
        self.evidence.observe(op)  # type: ignore[arg-type]
        if self._scout is None:
            self._scout = _Engine(self, Platform(granule=self.granule, fwb=False),
                                  self.trace.observable(tlbi=True), self.config.hw_af)
        out: list[ReplayStep | Gap] = []
        self._scout.process(op, out)
        for step in out:
            if isinstance(step, ReplayStep) and not step.uncertain and step.replayed:
                self._decide(step)

    def _decide(self, step: ReplayStep) -> None:
        op = step.op
        seen = op.seen
        if self.kernel_linear_offset is None:
            self._learn_linear(step)
        if self._fwb is None and op.kind in ("unmap", "flush") and \
                "cmo:dcache_clean_inval_poc" in self.trace.observable(tlbi=False):
            cleans = any(type(e) is Cmo and e.kind == "dcache_clean_inval_poc"
                         for e in step.predicted)
            if cleans:
                what = "an unmap" if op.kind == "unmap" else "a flush"
                if any(r[0] == "cmo" and r[1] == "dcache_clean_inval_poc" for r in seen):
                    self._fwb = Feature("fwb", False, "trace", f"{what} of cacheable memory "
                                        "cleaned the data cache", op.first_index)
                else:
                    self._fwb = Feature("fwb", True, "trace", f"{what} of cacheable memory did "
                                        "not clean the data cache (stage2_unmap_walker and "
                                        "kvm_pgtable_stage2_flush skip it only with FWB)",
                                        op.first_index)
        if self._vhe is None and any(type(e) is Tlbi for e in step.predicted):
            tlbi = next((i for r, i in zip(seen, op.seen_index, strict=True)
                         if r[0] == "tlbi"), None)
            if tlbi is not None:
                self._vhe = Feature("vhe", True, "trace", "TLB invalidation helpers ran at EL1",
                                    tlbi)
            elif any(self.trace.has_event(p) for p in TLBI_PROBES):
                self._vhe = Feature("vhe", False, "trace", "an operation invalidated the TLB "
                                    "and its probes did not fire (they run at EL2: nVHE)",
                                    op.first_index)

    def _note(self, note: Note) -> None:
        """A ``trace_marker`` line: the machine's boot-log lines about its platform (what a
        capture script or ``ptreplay gen`` writes there) decide what they name."""
        text = note.text.strip()
        if not ("CPU features: detected:" in text or ("kvm [" in text and "mode" in text)):
            return
        self._boot_log.append(text)
        if not any("kvm [" in line for line in self._boot_log):
            return  # the platform block ends with KVM's mode line
        found = features_from_dmesg("\n".join(self._boot_log))
        where = "the machine's boot-log lines in the trace (trace_marker)"
        if self.config.fwb is None:
            self._fwb = Feature("fwb", found["fwb"], "trace", where, note.index)
        if self.config.vhe is None:
            self._vhe = Feature("vhe", found["vhe"], "trace", where, note.index)
        if self.config.hw_af is None:
            self.hw_af_marker = Feature("hw_af", found["hw_af"], "trace", where, note.index)
            if self.engine is not None:
                self.engine.hw_af = found["hw_af"]

    def _learn_linear(self, step: ReplayStep) -> None:
        """The kernel's linear-map offset, from the scratch model's first cache maintenance
        of a mapped page or first table descriptor that the trace shows too."""
        scout = self._scout
        assert scout is not None
        if scout.comparer is not None and scout.comparer.cmo_offset is not None:
            self.kernel_linear_offset = scout.comparer.cmo_offset
            return
        model = step.model
        if model is None or not self._needs_linear:
            return
        off = model.m.linear_offset
        mask = self.granule.pte_addr_mask
        pages = model.m.pages
        stored = {r[2]: r[3][1] for r in step.op.seen if r[0] == "pte"}
        for e in step.predicted:
            if type(e) is Pte and e.new & 3 == 3 and (e.new & mask) + off in pages:
                seen_new = stored.get(e.ptep + off)
                if seen_new is not None and seen_new & ~mask == e.new & ~mask:
                    self.kernel_linear_offset = (e.new & mask) + off - (seen_new & mask)
                return

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
        hw_af_mode = cfg.hw_af
        if cfg.hw_af is None and self.hw_af_marker is not None:
            hw_af = self.hw_af_marker
            hw_af_mode = hw_af.value
        elif cfg.hw_af is None:
            hw_af = Feature("hw_af", None, "per leaf", "adopted where the trace shows the "
                            "hardware set AF, while no access-flag fault was handled")
        self.platform = PlatformFeatures(fwb=fwb, hw_af=hw_af, tlb_range=inferred.tlb_range,
                                         vhe=vhe, mc=inferred.mc)
        self._open = fwb.source == "assumed" or vhe.source == "assumed"
        model_platform = Platform(granule=self.granule, fwb=bool(fwb.value),
                                  hw_af=bool(cfg.hw_af) if cfg.hw_af is not None else True)
        self.engine = _Engine(self, model_platform, self.trace.observable(tlbi=bool(vhe.value)),
                              hw_af_mode)
        self._scout = None

    def _finish(self) -> None:
        self.platform_final = self.evidence.infer(self.kernel.series)
        assert self.engine is not None
        if self.config.hw_af is None and self.first_mkyoung is not None:
            self.stats["af_adoptions_contradicted"] = sum(
                1 for a in self.engine.adopted if a[0] < self.first_mkyoung)

    def platform_lines(self) -> list[str]:
        """What the replay used, one line per feature, with where it came from."""
        assert self.platform is not None
        lines = []
        for f in (self.platform.fwb, self.platform.vhe):
            lines.append(f.describe())
        adopted = self.adopted
        engine = self.engine
        if self.config.hw_af is not None or self.hw_af_marker is not None:
            lines.append(self.platform.hw_af.describe())
        elif self.first_mkyoung is not None:
            lines.append("hw_af=no (trace: the kernel handled an access-flag fault (mkyoung), "
                         f"ts {self.first_mkyoung_ts})")
        elif adopted:
            count = engine.adoptions if engine is not None else len(adopted)
            lines.append(f"hw_af=yes (trace: the hardware set the access flag of {count} "
                         f"aged leaves again, first at ts {adopted[0][3]})")
        else:
            lines.append("hw_af=unknown (trace: no aged leaf was seen young again)")
        with_mc = engine.maps_with_mc if engine is not None else 0
        total = with_mc + (engine.maps_without_mc if engine is not None else 0)
        lines.append(f"mc=per operation ({with_mc} of {total} maps passed a memory cache)")
        return lines


def _range(kind: str, args: dict[str, Any], page: int) -> tuple[int, int]:
    """The IPA range an operation touches."""
    if kind == "destroy":
        return 0, _TOP
    addr = int(args.get("addr", 0))
    if kind in _SINGLE_PAGE:
        return addr, addr + page
    return addr, addr + int(args.get("size", page))
