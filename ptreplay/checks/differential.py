"""Differential checker: observed effects against the model's prediction.

For a trace that carries observed effects (get/put, alloc/free, TLBI, cache
maintenance probes, ...) as well as operations, each operation's observed
effects are compared with the effects the model predicts for it, restricted
to the effect kinds the trace can observe at all. The comparison aligns the
two sequences (longest matching blocks, :class:`difflib.SequenceMatcher`), so
after the first divergence later ones are still found at their own place: a
missing effect, an unexpected one, or one that differs. Return values are
compared too.
"""

from __future__ import annotations

from difflib import SequenceMatcher
from typing import Any

from ptreplay.checks.context import Context
from ptreplay.checks.stream import Observed, Step
from ptreplay.effects import Effect, effect_to_json

__all__ = ["DifferentialChecker", "effect_kind"]

_CONTEXT = 2


def effect_kind(e: Effect) -> str:
    """The ``ev`` name of an effect (``pte``, ``tlbi``, ``get`` ...)."""
    return _KIND_NAMES.get(type(e).__name__, type(e).__name__.lower())


_KIND_NAMES = {"Pte": "pte", "Tlbi": "tlbi", "Dsb": "dsb", "Isb": "isb", "Cmo": "cmo",
               "Alloc": "alloc", "AllocFail": "alloc_fail", "Free": "free", "Get": "get",
               "Put": "put", "Warn": "warn", "Info": "info", "Table": "table",
               "HarnessError": "error", "Rcu": "rcu"}


class DifferentialChecker:
    """Compares each step's observed effects and return value with the prediction."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.divergences = 0

    def check(self, step: Step) -> None:
        """Compare ``step.observed`` with ``step.effects`` (and the return values)."""
        op = step.op
        if op is not None and step.predicted_ret is not NotImplemented \
                and not _same_ret(op.ret, step.predicted_ret):
            self.divergences += 1
            self.ctx.report("divergence-return",
                            f"{op.name} returned {_ret(op.ret)}, the model predicts "
                            f"{_ret(step.predicted_ret)}", index=op.index, line=op.line,
                            op=op, cpu=op.cpu, ts=op.ts)
        if step.observed is None:
            return
        kinds = step.observed_kinds
        predicted = [e for e in step.effects if kinds is None or effect_kind(e) in kinds]
        observed = step.observed
        seen = [o.effect for o in observed]
        if predicted == seen:
            return
        matcher = SequenceMatcher(None, predicted, seen, autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                continue
            self.divergences += 1
            self._report(step, tag, predicted, observed, i1, i2, j1, j2)

    def _report(self, step: Step, tag: str, predicted: list[Effect], observed: list[Observed],
                i1: int, i2: int, j1: int, j2: int) -> None:
        op = step.op
        anchor = observed[j1] if j1 < len(observed) else (observed[-1] if observed else None)
        index = anchor.index if anchor is not None else (op.index if op else None)
        ts = anchor.ts if anchor is not None else (op.ts if op else None)
        cpu = anchor.cpu if anchor is not None and anchor.cpu is not None else \
            (op.cpu if op else None)
        want = _list(predicted[i1:i2])
        got = _list([o.effect for o in observed[j1:j2]])
        before = _list(predicted[max(0, i1 - _CONTEXT):i1]) or "the start of the operation"
        if tag == "delete":
            text = f"missing effect(s) {want}, predicted after {before}"
        elif tag == "insert":
            text = f"unexpected effect(s) {got}, after {before}"
        else:
            text = f"observed {got} where the model predicts {want}, after {before}"
        related = tuple(o.index for o in observed[j1:j2])
        self.ctx.report("divergence-effect", text, index=index, line=None, op=op, cpu=cpu, ts=ts,
                        related=related)


def _list(effects: list[Effect]) -> str:
    if not effects:
        return ""
    shown = [effect_to_json(e) for e in effects[:3]]
    more = f" (+{len(effects) - 3} more)" if len(effects) > 3 else ""
    return " ".join(shown) + more


def _same_ret(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, int) or isinstance(a, int) and isinstance(b, str):
        try:
            return int(str(a), 0) == int(str(b), 0)
        except ValueError:
            return False
    return bool(a == b)


def _ret(value: Any) -> str:
    return "null" if value is None else str(value)
