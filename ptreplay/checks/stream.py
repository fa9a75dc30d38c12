"""What the checkers consume: a stream of operations and their effects.

Every input becomes the same shape. An effect log (``ptreplay model run``
output, shared/conformance/oracle/FORMAT.md) is a sequence of :class:`Step`:
one operation line and the effects printed after it. A trace (issue
"stage-2 traces end to end") becomes Steps too: the operation read from its
entry/return probes, the effects the model predicts for it in
``Step.effects``, and the effects the trace observed in ``Step.observed``.
The checkers rebuild whatever page-table state they need from the effects
("shadow" tables, :mod:`ptreplay.checks.shadow`), never from model internals.

Event indexes: an operation has the index of its event in the input (its
line in an effect log, 0-based; its event in a trace). Effects read from the
input have their own indexes (``effect_base + i``); predicted effects have
none and findings about them point at their operation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any, NamedTuple

from ptreplay.effects import Effect
from ptreplay.formats.effectlog import read_effect_lines

__all__ = ["Operation", "Observed", "Step", "StreamInfo", "format_op", "op_int",
           "read_effect_log"]


class Operation(NamedTuple):
    """One stage-2 page-table operation.

    :param name: ``init``, ``map``, ``set_owner``, ``unmap``, ``wrprotect``,
        ``relax_perms``, ``mkyoung``, ``mkold``, ``is_young``, ``flush``,
        ``destroy`` (and harness queries such as ``dump``).
    :param args: the operation's arguments as read (JSON values; numbers may
        be hex strings, see :func:`op_int`).
    :param ret: the return value (int, an old PTE for mkyoung/mkold, or None).
    :param index: event index of the operation in the input.
    :param line: 1-based line in a text input, if any.
    :param cpu: CPU that ran it, if known.
    :param ts: timestamp in ns, if known.
    :param root: PA of the stage-2 pgd it works on, if known (traces); None
        means "the current page table" (effect logs hold one at a time).
    """

    name: str
    args: dict[str, Any]
    ret: Any
    index: int  # type: ignore[assignment]  # (shadows tuple.index)
    line: int | None = None
    cpu: int | None = None
    ts: int | None = None
    root: int | None = None


class Observed(NamedTuple):
    """An effect a trace observed, with its own place in the trace."""

    effect: Effect
    index: int  # type: ignore[assignment]  # (shadows tuple.index)
    ts: int | None = None
    cpu: int | None = None


@dataclass(slots=True)
class Step:
    """One operation and the effects to check.

    :param op: the operation; None for effects seen before any operation.
    :param effects: the effects in order (read from an effect log, or the
        model's prediction for ``op``).
    :param effect_base: event index of ``effects[0]`` when the effects were
        read from the input (effect ``i`` is at ``effect_base + i``); None when
        they are predicted (findings then point at the operation).
    :param effect_indexes: the event index of each effect, when they are not
        consecutive (overrides ``effect_base``).
    :param observed: effects a trace observed for ``op``, for the
        differential checker; None when the input has no observations.
    :param observed_kinds: effect kinds (``"get"``, ``"put"``, ``"tlbi"`` ...)
        the trace can observe at all; predicted effects of other kinds are not
        compared.
    :param predicted_ret: the model's return value, when ``op.ret`` is the
        observed one (differential checking); ``NotImplemented`` when unknown.
    """

    op: Operation | None
    effects: list[Effect] = field(default_factory=list)
    effect_base: int | None = None
    effect_indexes: list[int] | None = None
    observed: list[Observed] | None = None
    observed_kinds: frozenset[str] | None = None
    predicted_ret: Any = NotImplemented


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What is known about a whole stream.

    :param source: file name (or ``-``) for messages.
    :param profile: kernel profile name (``linux-6.1``).
    :param complete: True when the stream starts before every page table it
        touches was created (an effect log, a trace recorded from VM start);
        False when state may predate it: unseen state is then unknown, and
        findings that depend on it are marked uncertain.
    """

    source: str
    profile: str
    complete: bool = True


def op_int(args: dict[str, Any], key: str, default: int | None = None) -> int | None:
    """A numeric operation argument: JSON int, or a string read like C ``strtoull(s, 0)``."""
    value = args.get(key, default)
    if value is None or isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            text = value.strip().lower()
            if text.startswith("0x"):
                return int(text, 16)
            if len(text) > 1 and text.startswith("0"):
                return int(text, 8)
            return int(text, 10)
        except ValueError:
            return default
    return default


def format_op(op: Operation) -> str:
    """``map addr=0x200000 size=0x1000 phys=0x100200000 prot=R,W -> 0``."""
    parts = [op.name]
    for key, value in op.args.items():
        if isinstance(value, list):
            text = ",".join(str(v) for v in value)
        elif isinstance(value, bool) or value is None:
            text = str(value).lower()
        elif isinstance(value, int):
            text = f"{value:#x}" if key in ("addr", "size", "phys") else str(value)
        else:
            text = str(value)
        parts.append(f"{key}={text}")
    text = " ".join(parts)
    if op.ret is not None:
        ret = f"{op.ret:#x}" if isinstance(op.ret, int) and op.name in ("mkyoung", "mkold") \
            and op.ret > 1 else str(op.ret)
        text += f" -> {ret}"
    return text


def read_effect_log(stream: IO[bytes], source: str = "-") -> Iterator[Step]:
    """One :class:`Step` per operation of the effect log on ``stream`` (streaming).

    Event indexes are 0-based line numbers; effects before the first
    operation form a step whose ``op`` is None. Malformed lines raise
    :class:`~ptreplay.errors.TraceFormatError` naming the line.
    """
    step: Step | None = None
    for line in read_effect_lines(stream, source):
        index = line.index
        if line.op is not None:
            if step is not None:
                yield step
            op = Operation(line.op.name, line.op.args, line.op.ret, index, line=index + 1)
            step = Step(op, effect_base=index + 1)
            continue
        if step is None:
            step = Step(None, effect_base=index)
        base = step.effect_base or 0
        if step.effect_indexes is None and base + len(step.effects) != index:
            step.effect_indexes = [base + i for i in range(len(step.effects))]
        if step.effect_indexes is not None:
            step.effect_indexes.append(index)
        step.effects.append(line.effect)  # type: ignore[arg-type]
    if step is not None:
        yield step
