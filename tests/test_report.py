"""Reports: JSON against its schema, round trips, determinism, JUnit, SARIF, diff."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import jsonschema
import pytest
from conftest import CONFORMANCE, require_shared
from hypothesis import given, settings
from hypothesis import strategies as st
from test_casemate_verdicts import check_log
from test_checks_effects import check_lines, find_line, oracle_lines

from ptreplay.checks.findings import KINDS, Finding
from ptreplay.errors import InputError
from ptreplay.report import (
    Report,
    diff_reports,
    diff_to_json,
    fingerprint,
    render,
    report_from_json,
    report_to_json,
)
from ptreplay.resources import schemas_dir


def _mutated_report() -> Report:
    lines = oracle_lines("linux-6.1", "14_unmap_pages_free_tables")
    op = find_line(lines, op="unmap", addr="0x2000")
    del lines[find_line(lines, op, ev="tlbi")]
    put = find_line(lines, op, ev="put")
    del lines[put]
    return Report("run.jsonl", "effects", "linux-6.1", check_lines(lines), events=len(lines))


def _casemate_report(name: str) -> Report:
    require_shared()
    findings, reader = check_log((CONFORMANCE / "casemate" / "logs" / name).read_bytes(), name)
    return Report(name, "casemate", None, findings, events=reader.records,
                  notes={"log's own verdict": str(reader.expected)})


@pytest.fixture(scope="module")
def reports() -> list[Report]:
    return [_mutated_report(), _casemate_report("bad_race.log"),
            _casemate_report("good_bbm.log")]


def test_json_report_follows_its_schema(reports):
    schema = json.loads((schemas_dir() / "report.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    for report in reports:
        jsonschema.validate(json.loads(report_to_json(report)), schema)
    assert len(reports[0].findings) >= 2


def test_json_report_round_trips(reports):
    for report in reports:
        back = report_from_json(report_to_json(report))
        assert back.findings == report.findings
        assert (back.input, back.input_kind, back.profile, back.events, back.notes) == \
            (report.input, report.input_kind, report.profile, report.events, report.notes)
        assert report_to_json(back) == report_to_json(report)


@pytest.mark.parametrize("fmt", ["text", "json", "junit", "sarif"])
def test_every_format_is_deterministic(fmt):
    assert render(_mutated_report(), fmt) == render(_mutated_report(), fmt)


def test_text_report(reports):
    text = render(reports[0], "text")
    assert "error[bbm-missing-tlbi] event " in text
    assert "in unmap addr=0x2000 size=0x1000 -> 0" in text
    assert text.rstrip().endswith("effects, linux-6.1)")
    assert "clean (21 events checked, casemate)" in render(reports[2], "text")
    assert " uncertain " not in text.splitlines()[-1]


def test_text_summary_counts_uncertain_findings(reports):
    import dataclasses

    report = reports[0]
    doubtful = [dataclasses.replace(report.findings[0], uncertain=True), *report.findings[1:]]
    text = render(Report(report.input, report.input_kind, report.profile, doubtful,
                         events=report.events), "text")
    assert "(uncertain)" in text
    assert "warning(s), 1 uncertain [" in text.splitlines()[-1]


def test_junit_report(reports):
    root = ET.fromstring(render(reports[0], "junit"))
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == len(KINDS)
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed == {f.kind for f in reports[0].findings}
    assert root.get("failures") == str(len(failed))
    clean = ET.fromstring(render(reports[2], "junit"))
    assert clean.get("failures") == "0"


def test_sarif_report(reports):
    sarif = json.loads(render(reports[1], "sarif"))
    assert sarif["version"] == "2.1.0"
    run = sarif["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(KINDS)
    assert len(run["results"]) == len(reports[1].findings) == 2
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["locations"][0]["physicalLocation"]["region"]["startLine"] == 4
        assert result["level"] == "error"
        assert len(result["partialFingerprints"]["ptreplay/v1"]) == 16


# --- diff -----------------------------------------------------------------------------------

def _finding(kind: str, ipa: int, index: int, level: int = 3) -> Finding:
    return Finding(kind, f"{kind} at {ipa:#x}", index=index, ipa=(ipa, ipa + 0x1000),
                   level=level, op=f"unmap addr={ipa:#x} -> 0", table=0x40000000 + index)


def test_diff_matches_by_fingerprint_not_by_event():
    old = Report("a", "effects", "linux-6.1", [_finding("refcount-leak", 0x1000, 5),
                                                _finding("bbm-missing-tlbi", 0x2000, 9)])
    new = Report("b", "effects", "linux-6.1", [_finding("refcount-leak", 0x1000, 50),
                                                _finding("tlbi-wrong-level", 0x3000, 70)])
    d = diff_reports(old, new)
    assert [f.kind for f in d.added] == ["tlbi-wrong-level"]
    assert [f.kind for f in d.fixed] == ["bbm-missing-tlbi"]
    assert [f.index for f in d.unchanged] == [50]
    assert json.loads(diff_to_json(d))["summary"] == {"new": 1, "fixed": 1, "unchanged": 1}


_findings = st.lists(st.builds(_finding, st.sampled_from(list(KINDS)[:6]),
                               st.sampled_from([0x1000, 0x2000, 0x3000]),
                               st.integers(0, 1000)), max_size=8)


@settings(max_examples=60, deadline=None)
@given(_findings, _findings)
def test_diff_properties(a, b):
    ra, rb = Report("a", "effects", None, a), Report("b", "effects", None, b)
    d = diff_reports(ra, rb)
    assert len(d.added) + len(d.unchanged) == len(b)
    assert len(d.fixed) + len(d.unchanged) == len(a)
    assert not diff_reports(ra, ra).added and not diff_reports(ra, ra).fixed
    back = diff_reports(rb, ra)
    assert len(back.added) == len(d.fixed) and len(back.fixed) == len(d.added)
    assert sorted(map(fingerprint, d.added)) == sorted(map(fingerprint, back.fixed))


@pytest.mark.parametrize("text,what", [
    ("not json", "not a ptreplay JSON report"),
    ("[]", "missing \"format\": 1"),
    ('{"format": 1, "findings": [{"kind": 3}]}', "findings[0]"),
    ('{"format": 1, "findings": [{"kind": "x", "explanation": "y", "ipa": [1]}]}',
     "findings[0]: expected [start, end]"),
    ('{"format": 1, "findings": [{"kind": "x", "explanation": "y", "index": "zz"}]}',
     "expected a number"),
])
def test_bad_reports_are_input_errors(text, what):
    with pytest.raises(InputError) as err:
        report_from_json(text, "r.json")
    assert what in err.value.message()
    assert err.value.source == "r.json"
