"""The stage-2 traces shipped in traces/ are what their recipe (traces/Makefile) makes."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from conftest import REPO
from synth_helpers import trace_events

from ptreplay.cli import main

TRACES = REPO / "traces"


def _recipes() -> dict[str, list[str]]:
    """target -> the ptreplay arguments its recipe runs (the Makefile's GEN line + its own)."""
    gen: list[str] = []
    out: dict[str, list[str]] = {}
    target = None
    for line in (TRACES / "Makefile").read_text().splitlines():
        if line.startswith("GEN = $(PTREPLAY) "):
            gen = shlex.split(line.split("$(PTREPLAY) ", 1)[1])
        elif line and not line.startswith(("\t", "#", " ")) and line.endswith(":"):
            target = line[:-1]
        elif line.startswith("\t$(GEN)") and target:
            out[target] = gen + shlex.split(line[len("\t$(GEN)"):])
    return out


def test_the_recipe_names_every_shipped_stage2_trace() -> None:
    shipped = {p.name for p in TRACES.glob("stage2-*.dat")}
    assert shipped and set(_recipes()) == shipped
    for path in TRACES.glob("stage2-*.dat"):
        assert path.stat().st_size < 1_000_000


@pytest.mark.parametrize("target", sorted(_recipes()))
def test_the_recipe_makes_the_shipped_trace(tmp_path: Path, target: str) -> None:
    args = [a.replace("$@", str(tmp_path / target)) for a in _recipes()[target]]
    with pytest.raises(SystemExit) as exit_:
        main(args + ["-q"])
    assert exit_.value.code in (0, None)
    made, shipped = trace_events(tmp_path / target), trace_events(TRACES / target)
    assert made == shipped
    side = TRACES / (target + ".inject.json")
    if side.exists():
        mine = json.loads((tmp_path / (target + ".inject.json")).read_text())
        theirs = json.loads(side.read_text())
        mine.pop("trace"), theirs.pop("trace")
        assert mine == theirs
        assert made[theirs["event"]["index"]].name == theirs["event"]["name"]


def test_the_buggy_trace_is_the_clean_one_minus_the_planted_event() -> None:
    side = json.loads((TRACES / "stage2-missing-tlbi.dat.inject.json").read_text())
    clean = trace_events(TRACES / "stage2-clean.dat")
    bug = trace_events(TRACES / "stage2-missing-tlbi.dat")
    at = side["event"]["index"]
    assert len(bug) == len(clean) - 1
    assert [(e.ts, e.name, e.fields) for e in bug] == \
        [(e.ts, e.name, e.fields) for e in clean[:at] + clean[at + 1:]]
    assert clean[at].name == "__kvm_tlb_flush_vmid_ipa"


def _check_json(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    """``ptreplay check PATH --format json``: exit status and the report."""
    with pytest.raises(SystemExit) as exit_:
        main(["check", str(path), "--format", "json", "--quiet"])
    return int(exit_.value.code or 0), json.loads(capsys.readouterr().out)


def test_the_clean_trace_checks_clean(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = _check_json(TRACES / "stage2-clean.dat", capsys)
    assert (code, report["findings"]) == (0, [])


def test_the_buggy_trace_reports_the_missing_tlbi_at_the_planted_operation(
        capsys: pytest.CaptureFixture[str]) -> None:
    side = json.loads((TRACES / "stage2-missing-tlbi.dat.inject.json").read_text())
    assert side["expected_finding"] == "bbm-missing-tlbi"
    code, report = _check_json(TRACES / "stage2-missing-tlbi.dat", capsys)
    findings = report["findings"]
    assert code == 1
    op = side["operation"]
    # the TLBI's absence is a divergence from the model too; nothing else is reported
    assert {f["kind"] for f in findings} == {"bbm-missing-tlbi", "divergence-effect"}
    for f in findings:
        assert op["index"] <= f["index"] <= op["return_index"], f
    (bbm,) = [f for f in findings if f["kind"] == "bbm-missing-tlbi"]
    # the entry whose break lost its only TLBI: its IPA range and level
    assert bbm["ipa"] == side["break"]["ipa"] and bbm["level"] == side["break"]["level"]
    assert side["breaks_left"] == 1
    # findings name roots and entries by kernel VA minus the linear map, and say so
    offset = int(report["notes"]["addresses"].split(" - ")[1].split()[0], 16)
    assert int(bbm["root"], 16) + offset == int(side["root"]["pgd"], 16)
    assert int(bbm["entry"], 16) + offset == int(side["break"]["ptep"], 16)
