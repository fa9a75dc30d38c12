"""Check a trace: its replay through the model, and the checkers on the merged stream.

:func:`check_trace` runs :class:`~ptreplay.stage2.replay.Replay` over a trace
and feeds every replayed operation to the checker stack
(:class:`~ptreplay.checks.engine.EffectChecker`) as one
:class:`~ptreplay.checks.stream.Step` whose effects are the *merged* stream:
what the trace observed for the kinds of effects it observes (get/put,
allocations, frees, cache maintenance, TLB invalidations where they fire), the
model's prediction for the others (entry stores, barriers). A missing TLBI, a
double put or a missing invalid write in the trace therefore reaches the
break-before-make, refcount and ownership checkers. Where observation and
prediction differ, the difference itself is a finding (``divergence-effect``,
``divergence-return``), at the event where it is: the first observation
involved, or the event right after which a predicted effect is missing.

Findings about operations whose result depends on state the trace did not
show (a root first seen after its init, lost events, an incomplete call) are
marked ``uncertain``. Event indexes in findings are those of the whole trace
(what ``ptreplay events`` and ``trace-cmd report`` count); table pages and
entries are named by their kernel virtual addresses.

:func:`run_trace` is the ``trace`` input source of ``ptreplay check`` and
``ptreplay maps`` (registered in :mod:`ptreplay.checks.inputs`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from ptreplay.checks.engine import EffectChecker
from ptreplay.checks.findings import Finding
from ptreplay.checks.inputs import CheckOptions, CheckRun
from ptreplay.checks.stream import Operation, Step, StreamInfo
from ptreplay.effects import Alloc
from ptreplay.errors import InputError
from ptreplay.stage2.compare import Difference, describe
from ptreplay.stage2.feed import fewer_collections
from ptreplay.stage2.replay import Replay, ReplayConfig, ReplayStep
from ptreplay.stage2.source import Stage2Trace
from ptreplay.trace import open_trace

__all__ = ["TraceCheck", "check_trace", "run_trace", "MAX_UNCERTAIN"]

#: Uncertain findings listed at most (the rest are counted in a note): a trace that
#: starts late diverges wherever the unseen state matters.
MAX_UNCERTAIN = 200

_EVENT = re.compile(r"\bevent (\d+)")
_LIFECYCLE = frozenset(["init", "destroy"])
_SIZED = frozenset(["map", "set_owner", "unmap", "wrprotect", "flush"])
_PTE_RETURN = frozenset(["mkyoung", "mkold"])
# Pointer arguments, printed in hex in the operation texts of findings.
_POINTER_ARG = re.compile(r"\b(mc|mmu|mm_ops|force_pte_cb)=(\d+)")
_TABLE_RECORDS = frozenset(["get", "put", "page_count", "alloc", "free"])


@dataclass
class TraceCheck:
    """What checking a trace gives.

    :param findings: in report order, event indexes of the whole trace.
    :param replay: the replay (profile, platform, statistics).
    :param checker: the checker stack (its shadow tables give the maps).
    :param steps: operations checked.
    :param divergences: / ``uncertain_divergences``: operations whose observed effects
        or return value differ from the model's.
    :param snapshots: for each root destroyed before the end (or the ``at`` point):
        its shadow state just before its destroy, as (root pgd PA, text) pairs made
        by ``snapshot``.
    :param notes: facts for the report (kernel, profile, platform ...).
    """

    findings: list[Finding]
    replay: Replay
    checker: EffectChecker
    steps: int = 0
    divergences: int = 0
    uncertain_divergences: int = 0
    snapshots: list[tuple[int, Any]] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)


def check_trace(path: str, config: ReplayConfig | None = None, *,
                progress: Callable[[int], None] | None = None, until_ts: int | None = None,
                until_index: int | None = None,
                snapshot: Callable[[EffectChecker, int], Any] | None = None,
                on_step: Callable[[ReplayStep], None] | None = None) -> TraceCheck:
    """Replay and check the trace at ``path``.

    :param config: profile, platform and process decisions (default: from the trace).
    :param progress: called with the number of events read so far.
    :param until_ts: stop after the operations that returned by this timestamp (ns).
    :param until_index: stop after the operations that returned by this event (its index
        as ``ptreplay events`` numbers them).
    :param snapshot: called with the checker and a root's pgd (model PA) right before
        that root's destroy is checked; what it returns is kept in
        :attr:`TraceCheck.snapshots`.
    :param on_step: called with each replayed step after it was checked.
    """
    with open_trace(path) as trace, fewer_collections():
        st = Stage2Trace(trace)
        replay = Replay(st, config, progress)
        checker = EffectChecker(StreamInfo(path, replay.profile.name, complete=True))
        ctx = checker.ctx
        run = TraceCheck([], replay, checker)
        pending: list[_Div] = []  # divergences, in ordinals
        listed = dropped = 0
        adopted_seen: set[int] = set()
        feed = checker.feed
        findings = ctx.findings
        # ``until_index`` counts every event of the trace; the replay counts those it reads
        last = st.ordinals_until(until_index) - 1 if until_index is not None else None
        for step in replay.steps():
            if type(step) is not ReplayStep:
                continue  # a Gap: the replay made the roots unknown
            op = step.op
            if until_ts is not None and (op.ts_return or op.ts or 0) > until_ts:
                break
            if last is not None and (
                    op.index_return if op.index_return is not None else op.first_index
            ) > last:
                break
            model = step.model
            if model is not None:
                root_pa = model.pgd_pa
                if model.adopted_root and model.root_id not in adopted_seen:
                    adopted_seen.add(model.root_id)
                    feed(_adoption(op, model))
            else:
                root_pa = None
            if snapshot is not None and op.kind == "destroy" and root_pa is not None:
                run.snapshots.append((root_pa, snapshot(checker, root_pa)))
            before = len(findings)
            cop = None
            if step.merged is None:
                # An operation with no effects is nothing to the checkers: every per-operation
                # state of theirs starts empty and ends empty.
                if not step.effects_only_queries or op.kind in _LIFECYCLE:
                    cop = _operation(op, step, root_pa)
                    feed(Step(cop, step.predicted))
            else:
                cop = _operation(op, step, root_pa)
                feed(Step(cop, step.merged, effect_indexes=step.merged_index))
            run.steps += 1
            if on_step is not None:
                on_step(step)
            if not (step.ret_diverges or step.effects_diverge or step.uncertain):
                continue
            offset = replay.linear_offset or 0
            if cop is None:
                cop = _operation(op, step, root_pa)
            divs = _divergences(step, cop, root_pa, offset) if step.replayed else []
            if divs:
                if step.uncertain:
                    run.uncertain_divergences += 1
                else:
                    run.divergences += 1
            if not step.uncertain:
                pending.extend(divs)
                continue
            new = findings[before:]
            del findings[before:]
            for f in new:
                if listed < MAX_UNCERTAIN:
                    findings.append(f.with_(uncertain=True))
                    listed += 1
                else:
                    dropped += 1
            for d in divs:
                if listed < MAX_UNCERTAIN:
                    pending.append(d)
                    listed += 1
                else:
                    dropped += 1
        first = replay.first_mkyoung
        if replay.config.hw_af is None and first is not None:
            for index, _pa, _root, _ts in replay.adopted:
                if index < first:
                    pending.append(_Div(
                        "divergence-return", "the model took the access flag the hardware set "
                        "from this operation's return value, but event {mkyoung} shows the "
                        "kernel handling access-flag faults: there is no hardware AF "
                        "management", index, False, None, None, (first,)))
        notes = _notes(replay, run, dropped)
        run.findings, run.notes = _finish(st, checker.finish(), pending, notes)
    return run


@dataclass
class _Div:
    """A divergence finding before event ordinals became event indexes."""

    kind: str
    text: str
    index: int
    after: bool
    ts: int | None
    cpu: int | None
    related: tuple[int, ...]
    root: int | None = None
    ipa: tuple[int, int] | None = None
    table: int | None = None
    op: Operation | None = None
    uncertain: bool = False


def _operation(op: Any, step: ReplayStep, root_pa: int | None) -> Operation:
    """The checkers' record of an operation (event ordinal as index)."""
    args = op.args
    if op.kind == "init" and step.geometry is not None and step.model is not None:
        args = dict(args)
        args["ia_bits"], args["start_level"] = step.geometry
        args["fwb"] = step.model.m.platform.fwb
    return Operation(op.kind, args, op.ret, op.first_index, None, op.cpu, op.ts, root_pa)


def _adoption(op: Any, model: Any) -> Step:
    """A root first seen after its init: the checkers learn it exists (its pgd pages),
    as if by an init at its first operation."""
    pgt = model.pgt
    size = len([p for p in range(pgt.pgd, pgt.pgd + 16 * model.granule.page_size,
                                 model.granule.page_size) if p in model.m.pages])
    pa = model.pgd_pa
    cop = Operation("init", {"ia_bits": pgt.ia_bits, "start_level": pgt.start_level,
                             "fwb": model.m.platform.fwb, "adopted": True}, 0,
                    op.first_index, None, op.cpu, op.ts, pa)
    return Step(cop, [Alloc(pa, size * model.granule.page_size)],
                effect_indexes=[op.first_index])


def _divergences(step: ReplayStep, cop: Operation, root_pa: int | None,
                 offset: int) -> list[_Div]:
    """Divergence findings of a step, in ordinals (converted at the end)."""
    op = step.op
    out: list[_Div] = []
    ipa = _ipa(op)
    root = root_pa
    if step.ret_diverges:
        got, want = op.ret, step.predicted_ret
        if op.kind in _PTE_RETURN and got is not None and want is not None:
            text = (f"{op.kind} returned {got:#x}, the model predicts {want:#x} "
                    f"(bits {(got ^ want):#x} differ)")
        else:
            text = f"{op.kind} returned {got}, the model predicts {want}"
        index = op.index_return if op.index_return is not None else op.first_index
        out.append(_Div("divergence-return", text, index, False, op.ts_return, op.cpu, (),
                        root, ipa, None, cop, step.uncertain))
    for d in step.differences():
        out.append(_Div("divergence-effect", _explain(op.kind, d, offset), d.index, d.after,
                        d.ts, op.cpu, d.related, root, ipa, _table(d, offset), cop,
                        step.uncertain))
    return out


def _ipa(op: Any) -> tuple[int, int] | None:
    addr = op.args.get("addr")
    if addr is None:
        return None
    size = op.args.get("size", 4096) if op.kind in _SIZED else 4096
    return addr, addr + size


def _table(d: Difference, offset: int) -> int | None:
    for r in (*d.observed, *d.predicted):
        if r[0] in _TABLE_RECORDS and r[2] is not None:
            return int(r[2]) - offset
    return None


def _explain(kind: str, d: Difference, offset: int) -> str:
    pred = describe(d.predicted, offset)
    obs = describe(d.observed, offset)
    if d.tag == "missing":
        return f"{kind}: the model predicts {pred}; the trace does not show it"
    if d.tag == "unexpected":
        return f"{kind}: the trace shows {obs}, which the model does not predict"
    return f"{kind}: the trace shows {obs} where the model predicts {pred}"


def _finish(st: Stage2Trace, findings: list[Finding], pending: list[_Div],
            notes: dict[str, str]) -> tuple[list[Finding], dict[str, str]]:
    """Findings and notes with the whole trace's event indexes (one more pass over the
    trace, for the events they name)."""
    ordinals: set[int] = set()
    for f in findings:
        for v in (f.index, f.op_index, *f.related):
            if v is not None:
                ordinals.add(v)
    for d in pending:
        ordinals.add(d.index)
        ordinals.update(d.related)
        if d.op is not None:
            ordinals.add(d.op.index)
    for text in (*(f.explanation for f in findings), *notes.values()):
        ordinals.update(int(m) for m in _EVENT.findall(text))
    index = st.event_indexes(ordinals) if ordinals else {}

    def at(v: int | None) -> int | None:
        return None if v is None else index.get(v, v)

    def text_at(text: str) -> str:
        return _EVENT.sub(lambda m: f"event {at(int(m.group(1)))}", text)

    out = []
    for f in findings:
        out.append(f.with_(
            explanation=text_at(f.explanation), index=at(f.index), op_index=at(f.op_index),
            op=None if f.op is None else _hex_pointers(f.op),
            related=tuple(at(r) for r in f.related)))
    for d in pending:
        text = d.text.replace("{mkyoung}", str(at(d.related[0]))) if d.related else d.text
        where = at(d.index)
        out.append(Finding(
            kind=d.kind, explanation=text,
            index=None if where is None else where + (1 if d.after else 0),
            root=d.root, ipa=d.ipa, table=d.table,
            cpu=d.cpu, ts=d.ts, op=_op_text(d.op) if d.op is not None else None,
            op_index=at(d.op.index) if d.op is not None else None, uncertain=d.uncertain,
            related=tuple(r for r in (at(x) for x in d.related) if r is not None)))
    return out, {key: text_at(text) for key, text in notes.items()}


def _op_text(cop: Operation) -> str:
    from ptreplay.checks.stream import format_op
    return _hex_pointers(format_op(cop))


def _hex_pointers(text: str) -> str:
    return _POINTER_ARG.sub(lambda m: f"{m.group(1)}={int(m.group(2)):#x}", text)


def _notes(replay: Replay, run: TraceCheck, uncertain_dropped: int) -> dict[str, str]:
    notes = {"kernel": replay.kernel.message() if replay.kernel.series else
             "not identified from the trace"}
    notes["profile"] = replay.profile.name + (
        " (given)" if replay.config.profile else " (from the trace)")
    if replay.platform is not None:
        for line in replay.platform_lines():
            name, _, rest = line.partition("=")
            notes[f"platform {name}"] = rest
    notes["replayed"] = (f"{run.steps} operations, {run.divergences} diverging from the model"
                         + (f", {run.uncertain_divergences} more where the state was unknown"
                            if run.uncertain_divergences else ""))
    if replay.linear_offset:
        notes["addresses"] = (f"stage-2 roots, table pages and entries are kernel virtual "
                              f"addresses - {replay.linear_offset:#x} (the linear map)")
    if uncertain_dropped:
        notes["uncertain findings"] = (f"{uncertain_dropped} more uncertain findings not "
                                       f"listed (first {MAX_UNCERTAIN} shown)")
    return notes


# --- the ``trace`` input source -------------------------------------------------------------


def run_trace(stream: IO[bytes], source: str, options: CheckOptions) -> CheckRun:
    """Check the trace ``source`` (``ptreplay check``, ``--input trace``).

    The trace is read by name (``stream`` is not used: a trace is read by pages, and
    a raw tracefs copy is a folder). ``options.replay`` holds the replay's decisions.
    """
    if source == "-":
        raise InputError("a trace is read page by page, not as a stream: give its file name",
                         source)
    config = options.replay or ReplayConfig()
    run = check_trace(source, config, progress=options.progress, until_index=options.at_index)
    checker = run.checker
    return CheckRun("trace", run.findings, run.replay.events_read, checker.shadow,
                    checker.profile, run.replay.profile.name, run.notes, fwb=dict(checker.fwb))
