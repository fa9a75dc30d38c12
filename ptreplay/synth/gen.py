"""``ptreplay gen``: drive the model with a workload and write a real trace.dat.

:func:`generate` runs a workload (a scenario file, or a
:class:`~ptreplay.synth.workload.RandomWorkload`) call by call through the
model (:class:`~ptreplay.synth.driver.Stage2Driver`), lays out each call's
probe events (:class:`~ptreplay.synth.events.EventBuilder`), gives them
strictly increasing timestamps (calls on different CPUs and roots sometimes
overlap in time, their events interleaved), and streams them into a
trace.dat (:class:`~ptreplay.synth.tracefile.TraceSink`). The first events
are ``trace_marker`` notes (ftrace ``print``) with the platform in the words
of the kernel's boot log (``CPU features: detected: Stage-2 Force
Write-Back``, ``kvm [1]: VHE mode initialized successfully``), which
:func:`ptreplay.stage2.platform.features_from_dmesg` reads.

With an injection (:mod:`ptreplay.synth.inject`) the workload runs twice:
once to count the places the bug can go, then again planting it at one of
them, chosen from the seed; :attr:`GenResult.sidecar` says what was planted
and where (the sidecar file's content).

Everything is deterministic for a configuration and a seed (the same file,
byte for byte), and memory stays flat in the number of calls.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ptreplay import __version__
from ptreplay.capture.probe_effects import ADDR, MMU
from ptreplay.effects import Pte, Tlbi
from ptreplay.errors import InputError
from ptreplay.model.geometry import GRANULE_4K, kvm_pgd_pages
from ptreplay.model.profiles import get_profile
from ptreplay.synth.calls import Call
from ptreplay.synth.driver import OpResult, Root, Stage2Driver
from ptreplay.synth.events import EntrySnapshot, Ev, EventBuilder
from ptreplay.synth.inject import KINDS, Planter
from ptreplay.synth.kernel import SERIES_OF_PROFILE, kernel_image
from ptreplay.synth.scenario import ScenarioWorkload
from ptreplay.synth.tracefile import TraceSink
from ptreplay.synth.workload import RandomWorkload

__all__ = ["GenConfig", "GenOp", "GenResult", "generate", "platform_lines"]

_START_NS = 26_000_000_000  # the recordings start ~26 s after boot
_RECORDER = (257, "trace-cmd")


@dataclass
class GenConfig:
    """What to generate.

    :param profile: the model profile and kernel series (``linux-6.1``, ``linux-5.13``).
    :param scenario: scenario lines (with ``scenario_name`` for errors), or ``None``.
    :param random_ops: number of stage-2 calls of a random workload, or ``None``.
    :param seed: the seed (random workload, addresses, timing, the injection's place).
    :param version: trace.dat version, 6 or 7.
    :param compression: v7 compression: ``zstd`` or ``None``.
    :param fwb: stage-2 FWB (random workloads; a scenario's ``init`` lines say it).
    :param hw_af: hardware access-flag management.
    :param vhe: VHE (TLB helpers visible) or nVHE (they run at EL2, unseen).
    :param pte_events: emit ``ptreplay:stage2_pte_store`` events; ``None``: only when the
        injection needs them.
    :param inject: an injection kind (:data:`ptreplay.synth.inject.KINDS`), or ``None``.
    :param vms: guest VMs of a random workload.
    :param host_stage2: a pKVM-style host stage-2 with owner annotations (random workloads).
    :param cpus: CPUs.
    :param geometry: ``(ia_bits, start_level)`` of every guest (random), else varied.
    :param markers: write the platform notes (``trace_marker``) at the start.
    """

    profile: str = "linux-6.1"
    scenario: Iterable[str] | None = None
    scenario_name: str = "-"
    random_ops: int | None = None
    seed: int = 0
    version: int = 7
    compression: str | None = "zstd"
    fwb: bool = False
    hw_af: bool = True
    vhe: bool = True
    pte_events: bool | None = None
    inject: str | None = None
    vms: int = 2
    host_stage2: bool = True
    cpus: int = 2
    geometry: tuple[int, int] | None = None
    markers: bool = True


class GenOp(NamedTuple):
    """One stage-2 call as generated: what the model did and where its events went.

    ``effects`` are the visible ones, as ``(effect, addr, mmu)`` in the operations
    layer's observed form (kernel VAs; ``addr`` for get/put/page_count, ``mmu`` for TLBIs).
    """

    kind: str
    func: str
    root: int
    pgt: int
    pgd: int
    cpu: int
    pid: int
    entry_fields: dict[str, int]
    ret: int | None
    effects: list[tuple[Any, int | None, int | None]]
    index: int  # type: ignore[assignment]  # shadows tuple.index
    index_return: int


@dataclass
class GenResult:
    """What :func:`generate` wrote."""

    path: str
    events: int
    operations: int
    per_op: dict[str, int] = field(default_factory=dict)
    roots: int = 0
    warnings: dict[str, int] = field(default_factory=dict)
    sidecar: dict[str, Any] | None = None
    seconds: float = 0.0
    pte_events: bool = False


def platform_lines(fwb: bool, hw_af: bool, vhe: bool) -> list[str]:
    """The boot-log lines that state the platform (written as ``trace_marker`` notes)."""
    lines = []
    if fwb:
        lines.append("CPU features: detected: Stage-2 Force Write-Back")
    if hw_af:
        lines.append("CPU features: detected: Hardware dirty bit management")
    lines.append("kvm [1]: VHE mode initialized successfully" if vhe else
                 "kvm [1]: Hyp mode initialized successfully")
    return lines


def _check(config: GenConfig) -> None:
    if (config.scenario is None) == (config.random_ops is None):
        raise InputError("give a scenario file or --random N (one of them)", "gen")
    get_profile(config.profile)
    if config.profile not in SERIES_OF_PROFILE:
        raise InputError(f"no kernel series for profile {config.profile}", "--profile")
    if config.version not in (6, 7):
        raise InputError(f"file version must be 6 or 7, not {config.version}", "--file-version")
    if config.version == 6 and config.compression:
        raise InputError("trace.dat version 6 files are not compressed: use --compression none",
                         "--compression")
    if config.compression not in (None, "zstd"):
        raise InputError(f"unknown compression {config.compression!r} (none, zstd)",
                         "--compression")
    if not 1 <= config.cpus <= 64:
        raise InputError(f"--cpus must be 1..64, not {config.cpus}", "--cpus")
    if config.random_ops is not None:
        if config.random_ops < 2:
            raise InputError(f"--random needs at least 2 operations (an init and a destroy), "
                             f"not {config.random_ops}", "--random")
        if not 1 <= config.vms <= 64:
            raise InputError(f"--vms must be 1..64, not {config.vms}", "--vms")
        if config.geometry is not None:
            ia, sl = config.geometry
            if (not 32 <= ia <= 48 or not 0 <= sl <= 2 or kvm_pgd_pages(ia, sl) > 16
                    or ia <= GRANULE_4K.kvm_granule_shift(sl)):
                raise InputError(f"geometry ia_bits={ia} start_level={sl} is not one the "
                                 "workload can use (ia_bits 32..48, start level 0..2, at most "
                                 "16 concatenated pgd pages)", "--ia-bits")
    kind = KINDS.get(config.inject) if config.inject else None
    if config.inject and kind is None:
        raise InputError(f"unknown injection {config.inject!r} (known: {', '.join(KINDS)})",
                         "--inject")
    if kind is not None:
        if kind.needs_vhe and not config.vhe:
            raise InputError(f"{kind.name} needs --vhe: TLB invalidations are not visible in "
                             "an nVHE trace", "--inject")
        if kind.needs_pte_events and config.pte_events is False:
            raise InputError(f"{kind.name} needs --pte-events: the bug is only visible in the "
                             "entry stores", "--inject")
        if kind.needs_host and (config.random_ops is None or not config.host_stage2):
            raise InputError(f"{kind.name} needs a random workload with a host stage-2 "
                             "(--random N --host-stage2)", "--inject")


class _Run:
    """One pass of a workload through the model (and, when writing, into a trace)."""

    #: write long calls while they run (tests turn it off to compare)
    stream_long_calls = True

    def __init__(self, config: GenConfig, planter: Planter | None, sink: TraceSink | None,
                 pte_events: bool, on_op: Callable[[GenOp], None] | None,
                 progress: Callable[[int], None] | None) -> None:
        self.config = config
        self.planter = planter
        self.sink = sink
        self.on_op = on_op
        self.progress = progress
        profile = get_profile(config.profile)
        self.series = SERIES_OF_PROFILE[config.profile]
        self.image = kernel_image(self.series)
        seed = config.seed
        hooks = planter if planter is not None and planter.kind.level == "mm" else None
        self.driver = Stage2Driver(profile, random.Random(f"addresses:{seed}"), hooks)
        self.builder = EventBuilder(self.image, vhe=config.vhe, pte_events=pte_events)
        self.clock = random.Random(f"timing:{seed}")
        self.ts = _START_NS + self.clock.randrange(1_000_000_000)
        self.pte_events = pte_events
        mmu_off = self.image.struct_kvm_mmu
        if config.random_ops is not None:
            self.workload: Any = RandomWorkload(
                self.driver, config.random_ops, seed, vms=config.vms,
                host=config.host_stage2, cpus=config.cpus, fwb=config.fwb,
                hw_af=config.hw_af, geometry=config.geometry,
                planter=planter if planter is not None and planter.kind.level == "workload"
                else None, kvm_mmu_offset=mmu_off)
        else:
            assert config.scenario is not None
            self.workload = ScenarioWorkload(config.scenario, config.scenario_name, self.driver,
                                             profile, kvm_mmu_offset=mmu_off)
        self.operations = 0
        self.per_op: dict[str, int] = {}
        self.sidecar: dict[str, Any] | None = None
        self._pending: list[tuple[Call, Root, EntrySnapshot, OpResult, list[Ev],
                                  dict | None]] = []
        self._marked = False
        self._stream: _Streamed | None = None

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> None:
        driver = self.driver
        planter = self.planter
        writing = self.sink is not None
        # A long call (a destroy, a memslot-wide unmap) goes out while it runs, so memory
        # stays bounded by the recorder's spill size; not with an injection, whose planter
        # looks at whole calls.
        streaming = writing and planter is None and self.stream_long_calls
        recorder = driver.recorder
        for call in self.workload:
            root = driver.roots[call.root]
            snap = EntrySnapshot(root.ia_bits, root.start_level, root.pgd)
            if streaming:
                self._stream = None
                recorder.spill = lambda seen, c=call, r=root, sn=snap: self._spill(c, r, sn, seen)
            result = driver.run(call)
            recorder.spill = None
            planted = None
            done = result
            if planter is not None:
                ret = result.ret
                planter.on_call(call, root, result)
                planted = planter.take()
                if result.ret_planted:
                    # only the trace shows the wrong value: the workload goes on from what
                    # the call did, so the trace differs from the clean one at that event
                    done = OpResult(ret, result.seen)
            self.workload.done(call, done)
            self.operations += 1
            self.per_op[call.op] = self.per_op.get(call.op, 0) + 1
            if self.progress is not None and self.operations % 1024 == 0:
                self.progress(1024)
            if not writing:
                continue
            if self._stream is not None:
                self._finish_stream(call, root, snap, result)
                continue
            if not self._marked:
                self._markers(root)
            evs = self.builder.call_events(call, root, snap, result)
            if len(result.seen) >= recorder.spill_at:
                # a long call not written while it ran: written alone all the same, so the
                # trace is the same either way
                self._flush_pending()
                idx = self._emit_run(evs, first=True)
                if self.on_op is not None or planted is not None:
                    self._record(call, root, snap, result, evs, idx, planted)
                continue
            self._queue(call, root, snap, result, evs, planted)
        if writing:
            self._flush_pending()
        if self.progress is not None:
            self.progress(self.operations % 1024)

    # -- long calls, written while they run ------------------------------------------------

    def _spill(self, call: Call, root: Root, snap: EntrySnapshot, seen: list) -> None:
        builder = self.builder
        st = self._stream
        if st is None:
            if not self._marked:
                self._markers(root)
            self._flush_pending()
            st = self._stream = _Streamed()
            start = builder.call_start(call, root, snap)
            st.entry_fields = start[-1].fields
            st.cpu = start[-1].cpu
            idx = self._emit_run(start, first=True)
            st.entry = idx[-1]
        if self.on_op is not None:
            st.seen.extend(seen)
        self._emit_run(builder.effect_events(call, root, seen))
        seen.clear()

    def _finish_stream(self, call: Call, root: Root, snap: EntrySnapshot,
                       result: OpResult) -> None:
        st = self._stream
        assert st is not None
        self._stream = None
        builder = self.builder
        tail = builder.effect_events(call, root, result.seen)
        end = builder.call_end(call, root, result)
        idx = self._emit_run(tail + end)
        if self.on_op is not None:
            st.seen.extend(result.seen)
            whole = OpResult(result.ret, st.seen, result.ret_planted)
            self.on_op(GenOp(call.op, builder.func(call.op), root.id, root.pgt_ptr, snap.pgd,
                             st.cpu, call.task.pid,
                             {k: v for k, v in st.entry_fields.items() if k != "__probe_ip"},
                             result.ret, self._visible(whole, root), st.entry or 0,
                             idx[len(tail)] or 0))

    def _advance(self, first: bool) -> None:
        """Move the clock to the next event: a gap before a call's first event, a few
        hundred ns between the events of one call."""
        if first:
            self.ts += 2000 + int(self.clock.expovariate(1 / 150_000))
        else:
            self.ts += 150 + self.clock.randrange(2500)

    def _emit_run(self, evs: list[Ev], first: bool = False) -> list[int | None]:
        """Write events of one call in order; their indices (``None`` for placeholders)."""
        sink = self.sink
        assert sink is not None
        out: list[int | None] = []
        for ev in evs:
            self._advance(first)
            first = False
            if ev.role == "removed":
                out.append(None)
                continue
            out.append(sink.emit(self.ts, ev.cpu, ev.pid, ev.name, ev.fields))
        return out

    def _markers(self, root: Root) -> None:
        self._marked = True
        if not self.config.markers or self.sink is None:
            return
        c = self.config
        fwb = root.machine.platform.fwb
        notes = [f"ptreplay gen {__version__}: synthetic trace, profile {c.profile}, "
                 f"seed {c.seed}"] + platform_lines(fwb, c.hw_af, c.vhe)
        pid, _ = _RECORDER
        for text in notes:
            self.ts += 1000 + self.clock.randrange(20000)
            self.sink.mark(self.ts, 0, pid, text)

    # -- interleaving and timestamps --------------------------------------------------------

    def _queue(self, call: Call, root: Root, snap: EntrySnapshot, result: OpResult,
               evs: list[Ev], planted: dict | None) -> None:
        item = (call, root, snap, result, evs, planted)
        if self._pending:
            prev, prev_root = self._pending[0][0], self._pending[0][1]
            # Two guests' calls on two CPUs may overlap in time (one root's calls never do:
            # mmu_lock; the pKVM host stage-2's run at EL2 and are kept apart).
            if (len(self._pending) == 1 and not root.host and not prev_root.host
                    and prev.root != call.root and prev.task.cpu != call.task.cpu
                    and prev.task.pid != call.task.pid and self.clock.random() < 0.15):
                self._pending.append(item)
                self._flush_pending()
                return
            self._flush_pending()
        self._pending.append(item)

    def _flush_pending(self) -> None:
        """Write the pending call(s): one, or two merged event by event (the choice of which
        continues is drawn per event, so what comes before an injected event does not
        depend on it)."""
        items = self._pending
        if not items:
            return
        self._pending = []
        clock = self.clock
        sink = self.sink
        assert sink is not None
        lists = [item[4] for item in items]
        positions = [0] * len(items)
        indices: list[list[int | None]] = [[] for _ in items]
        left = [len(x) for x in lists]
        first = True
        while any(left):
            if first or len(items) == 1 or not left[1]:
                which = 0
            elif not left[0]:
                which = 1
            else:
                which = 0 if clock.random() < 0.5 else 1
            ev = lists[which][positions[which]]
            positions[which] += 1
            left[which] -= 1
            self._advance(first)
            first = False
            if ev.role == "removed":
                indices[which].append(None)
                continue
            indices[which].append(sink.emit(self.ts, ev.cpu, ev.pid, ev.name, ev.fields))
        for (call, root, snap, result, evs, planted), idx in zip(items, indices, strict=True):
            if self.on_op is not None or planted is not None:
                self._record(call, root, snap, result, evs, idx, planted)

    def _record(self, call: Call, root: Root, snap: EntrySnapshot, result: OpResult,
                evs: list[Ev], idx: list[int | None], planted: dict | None) -> None:
        func = self.builder.func(call.op)
        entry = next(i for i, ev in enumerate(evs) if ev.name == func)
        ret = next(i for i, ev in enumerate(evs) if ev.name == func + "__return")
        if self.on_op is not None:
            self.on_op(GenOp(call.op, func, root.id, root.pgt_ptr, snap.pgd, evs[entry].cpu,
                             call.task.pid,
                             {k: v for k, v in evs[entry].fields.items() if k != "__probe_ip"},
                             result.ret, self._visible(result, root), idx[entry] or 0,
                             idx[ret] or 0))
        if planted is not None:
            self.sidecar = self._sidecar(call, root, snap, result, evs, idx, entry, ret, planted)

    def _visible(self, result: OpResult, root: Root) -> list[tuple[Any, int | None, int | None]]:
        out = []
        probes = self.builder.probes
        for s in result.seen:
            e = s.effect
            if e is None:
                continue
            t = type(e)
            if (t is Tlbi and not self.config.vhe) or (t is Pte and not self.pte_events):
                continue
            probe = probes.probe_for(e, s.sized)
            if probe is None:
                continue
            sources = {src for _, src in probe.entry}
            out.append((e, s.addr if ADDR in sources else None,
                        root.mmu if MMU in sources else None))
        return out

    def _sidecar(self, call: Call, root: Root, snap: EntrySnapshot, result: OpResult,
                 evs: list[Ev], idx: list[int | None], entry: int, ret: int,
                 planted: dict) -> dict[str, Any]:
        assert self.planter is not None
        kind = self.planter.kind
        relation = "the injected event"
        removed_at = None
        gap = next((i for i, ev in enumerate(evs) if ev.role == "removed"), None)
        if gap is not None:
            after = next(i for i in range(gap + 1, len(evs)) if evs[i].role != "removed")
            removed_at = idx[after]
        if call.planted:
            at = entry
            relation = "the injected call's entry"
        else:
            at = next((i for i, ev in enumerate(evs) if ev.role == "planted"), -1)
            if at < 0:
                gap = next(i for i, ev in enumerate(evs) if ev.role == "removed")
                at = next(i for i in range(gap + 1, len(evs)) if evs[i].role != "removed")
                relation = "the first event after the one removed"
        ev = evs[at]
        details = {k: v for k, v in planted.items()
                   if k not in ("expected", "what", "accepted")}
        accepted = list(planted.get("accepted", kind.accepted))
        expected = planted["expected"]
        if expected not in accepted:
            accepted.insert(0, expected)
        return {
            "ptreplay_gen": __version__,
            "kind": kind.name,
            "expected_finding": expected,
            "accepted_findings": accepted,
            "what": planted["what"],
            "description": kind.summary,
            "shows": kind.shows,
            "event": {"index": idx[at], "name": ev.name, "system": ev.system, "cpu": ev.cpu,
                      "pid": ev.pid, "fields": ev.fields, "relation": relation},
            "operation": {"kind": call.op, "func": self.builder.func(call.op),
                          "index": idx[entry], "return_index": idx[ret], "cpu": evs[entry].cpu,
                          "pid": call.task.pid, "caller": call.caller, "args": dict(call.args),
                          "ret": result.ret},
            "root": {"pgt": root.pgt_ptr, "pgd": snap.pgd or root.pgd, "kvm": root.kvm,
                     "mmu": root.mmu, "ia_bits": root.ia_bits,
                     "start_level": root.start_level, "host_stage2": root.host},
            "ipa": details.pop("ipa", call.args.get("addr")),
            **({"removed_at": removed_at} if removed_at is not None else {}),
            **details,
            "profile": self.config.profile,
            "seed": self.config.seed,
            "candidates": self.planter.total if self.planter.total is not None
            else self.planter.count,
            "candidate": self.planter.target,
        }


@dataclass
class _Streamed:
    """A long call being written while it runs."""

    entry: int | None = None
    cpu: int = 0
    entry_fields: dict[str, int] = field(default_factory=dict)
    seen: list = field(default_factory=list)  # all its records (only to report them)


def generate(config: GenConfig, out_path: str | os.PathLike[str], *,
             on_op: Callable[[GenOp], None] | None = None,
             progress: Callable[[int], None] | None = None) -> GenResult:
    """Generate a trace (see the module docstring).

    :param config: what to generate.
    :param out_path: the trace.dat to write.
    :param on_op: called with every :class:`GenOp` (tests, round trips).
    :param progress: called with the number of calls done since the last call.
    :raises InputError: a bad configuration or scenario (one line, where).
    """
    start = time.perf_counter()
    _check(config)
    kind = KINDS.get(config.inject) if config.inject else None
    pte_events = config.pte_events if config.pte_events is not None else bool(
        kind is not None and kind.needs_pte_events)
    if config.scenario is not None and not isinstance(config.scenario, list):
        config.scenario = list(config.scenario)  # read twice with an injection
    planter = None
    if kind is not None:
        profile = get_profile(config.profile)
        no_hint = profile.tlbi_no_level_hints
        counter = Planter(kind, hw_af=config.hw_af, no_hint=no_hint)
        _Run(config, counter, None, pte_events, None, None).run()
        if counter.count == 0:
            raise InputError(f"no place to plant {kind.name} in this workload "
                             f"({_why_none(kind.name, config)})", "--inject")
        pick = random.Random(f"inject:{config.seed}:{kind.name}")
        planter = Planter(kind, pick.randrange(counter.count), pick.random(),
                          hw_af=config.hw_af, no_hint=no_hint)
        planter.total = counter.count
    series = SERIES_OF_PROFILE[config.profile]
    sink = TraceSink(kernel_image(series), version=config.version,
                     compression=config.compression if config.version == 7 else None,
                     cpus=config.cpus, instrumented=pte_events)
    run = _Run(config, planter, sink, pte_events, on_op, progress)
    try:
        run.run()
    except BaseException:
        sink.close()
        raise
    cmdlines = dict(run.workload.cmdlines)
    cmdlines[_RECORDER[0]] = _RECORDER[1]
    sink.finish(out_path, cmdlines)
    sidecar = run.sidecar
    if sidecar is not None:
        sidecar["trace"] = os.fspath(out_path)
    return GenResult(os.fspath(out_path), sink.count, run.operations, run.per_op,
                     len(run.driver.roots), dict(run.driver.recorder.warnings), sidecar,
                     time.perf_counter() - start, pte_events)


def _why_none(kind: str, config: GenConfig) -> str:
    if kind == "missing-cmo":
        return "no cache maintenance happens: FWB, or nothing cacheable was mapped"
    if kind == "lost-owner":
        return "the host stage-2 never owned a page: use more operations"
    return "no operation does what this bug changes: use more operations or another seed"
