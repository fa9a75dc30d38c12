"""The differential checker: a trace's observed effects against the model's prediction.

The kernel oracle's effect logs stand in for both sides: the prediction is the
log's effects, the "observed" effects are the same effects restricted to what
the arm64 recordings probe (get/put, alloc/free, TLBI, cache maintenance),
then changed on purpose.
"""

from __future__ import annotations

import io

from test_checks_effects import oracle_lines

from ptreplay.checks.differential import effect_kind
from ptreplay.checks.engine import EffectChecker
from ptreplay.checks.stream import Observed, Step, StreamInfo, read_effect_log

PROBED = frozenset({"get", "put", "alloc", "free", "tlbi", "cmo"})


def _steps(name: str) -> list[Step]:
    lines = oracle_lines("linux-6.1", name)
    return list(read_effect_log(io.BytesIO(("\n".join(lines) + "\n").encode()), "t"))


def _as_trace(steps: list[Step]) -> list[Step]:
    """Predicted effects without their input indexes; observations with trace indexes."""
    out = []
    for step in steps:
        observed = [Observed(e, (step.effect_base or 0) + i, ts=i)
                    for i, e in enumerate(step.effects) if effect_kind(e) in PROBED]
        out.append(Step(step.op, list(step.effects), observed=observed, observed_kinds=PROBED,
                        predicted_ret=step.op.ret if step.op else NotImplemented))
    return out


def _check(steps: list[Step]):
    checker = EffectChecker(StreamInfo("t", "linux-6.1"))
    for step in steps:
        checker.feed(step)
    return checker.finish()


def test_agreeing_observations_give_no_divergence():
    for name in ("08_split_2m_block", "14_unmap_pages_free_tables", "902_random_seed2"):
        assert [f for f in _check(_as_trace(_steps(name)))
                if f.kind.startswith("divergence")] == []


def test_an_erased_put_is_the_divergence_and_later_ones_are_found_too():
    steps = _as_trace(_steps("14_unmap_pages_free_tables"))
    unmap = next(s for s in steps if s.op and s.op.name == "unmap")
    puts = [o for o in unmap.observed if effect_kind(o.effect) == "put"]
    unmap.observed.remove(puts[0])
    destroy = steps[-1]
    destroy.observed = destroy.observed[:-1]            # and the last free of destroy
    found = [f for f in _check(steps) if f.kind.startswith("divergence")]
    assert [f.kind for f in found] == ["divergence-effect", "divergence-effect"]
    first, second = found
    assert first.op_index == unmap.op.index and first.op.startswith("unmap")
    assert "missing effect(s) {\"ev\":\"put\"" in first.explanation
    assert first.index == puts[0].index + 1            # where it should have been
    assert second.op_index == destroy.op.index and "\"ev\":\"free\"" in second.explanation


def test_a_changed_tlbi_and_an_extra_get():
    steps = _as_trace(_steps("08_split_2m_block"))
    split = [s for s in steps if s.op and s.op.name == "map"][1]
    tlbi = next(o for o in split.observed if effect_kind(o.effect) == "tlbi")
    pos = split.observed.index(tlbi)
    split.observed[pos] = tlbi._replace(effect=tlbi.effect._replace(level=3))
    get = next(o for o in split.observed if effect_kind(o.effect) == "get")
    split.observed.insert(split.observed.index(get) + 1, get._replace(index=get.index + 1))
    found = [f for f in _check(steps) if f.kind.startswith("divergence")]
    assert len(found) == 2
    assert "observed {\"ev\":\"tlbi\",\"kind\":\"vmid_ipa\",\"ipa\":\"0x201000\",\"level\":3}" \
        in found[0].explanation and found[0].index == tlbi.index
    assert "unexpected effect(s) {\"ev\":\"get\"" in found[1].explanation


def test_a_changed_return_value():
    steps = _as_trace(_steps("30_error_codes"))
    step = next(s for s in steps if s.op and s.op.ret not in (0, None))
    step.op = step.op._replace(ret=0)
    found = [f for f in _check(steps) if f.kind == "divergence-return"]
    assert len(found) == 1 and found[0].op_index == step.op.index
    assert f"the model predicts {step.predicted_ret}" in found[0].explanation


def test_unprobed_kinds_are_not_compared():
    steps = _as_trace(_steps("08_split_2m_block"))
    for step in steps:
        step.observed = [o for o in step.observed if effect_kind(o.effect) in ("get", "put")]
        step.observed_kinds = frozenset({"get", "put"})
    assert [f for f in _check(steps) if f.kind.startswith("divergence")] == []
