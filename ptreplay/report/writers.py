"""Report writers: text for people, JUnit XML and SARIF 2.1.0 for CI systems.

JSON is :func:`ptreplay.report.model.report_to_json`. Every writer is a pure
function of the report, so the same input gives byte-identical output.
"""

from __future__ import annotations

import json
from typing import Any

from ptreplay import __version__
from ptreplay.checks.findings import KINDS, Finding
from ptreplay.report.model import Report, fingerprint, report_to_json

__all__ = ["write_text", "write_junit", "write_sarif", "WRITERS", "render"]


def _where(f: Finding) -> str:
    parts = []
    if f.root is not None:
        parts.append(f"stage-2 {f.root:#x}")
    if f.ipa is not None:
        parts.append(f"IPA {f.ipa[0]:#x}-{f.ipa[1]:#x}")
    if f.pa is not None:
        parts.append(f"PA {f.pa[0]:#x}-{f.pa[1]:#x}")
    if f.level is not None:
        parts.append(f"level {f.level}")
    if f.table is not None:
        parts.append(f"table {f.table:#x}")
    if f.entry is not None:
        parts.append(f"entry {f.entry:#x}")
    return ", ".join(parts)


def _when(f: Finding) -> str:
    parts = []
    if f.index is not None:
        parts.append(f"event {f.index}")
    if f.line is not None:
        parts.append(f"line {f.line}")
    if f.cpu is not None:
        parts.append(f"cpu {f.cpu}")
    if f.ts is not None:
        parts.append(f"ts {f.ts}")
    return ", ".join(parts)


def write_text(report: Report) -> str:
    """A human-readable report: one block per finding, then a summary line."""
    out = []
    for f in report.findings:
        head = f"{f.severity}[{f.kind}]"
        if f.uncertain:
            head += " (uncertain)"
        when = _when(f)
        out.append(f"{report.input}: {head} {when}: {f.explanation}" if when
                   else f"{report.input}: {head}: {f.explanation}")
        where = _where(f)
        if where:
            out.append(f"    at {where}")
        if f.op is not None:
            at = f" (event {f.op_index})" if f.op_index is not None else ""
            out.append(f"    in {f.op}{at}")
        if f.src is not None:
            out.append(f"    source {f.src}")
    for key, value in report.notes.items():
        out.append(f"{report.input}: note: {key}: {value}")
    if report.clean:
        out.append(f"{report.input}: clean ({report.events} events checked, "
                   f"{report.input_kind}{_profile(report)})")
    else:
        kinds = ", ".join(f"{n} {k}" for k, n in report.by_kind.items())
        uncertain = sum(1 for f in report.findings if f.uncertain)
        doubt = f", {uncertain} uncertain" if uncertain else ""
        out.append(f"{report.input}: {len(report.findings)} finding(s): {report.errors} "
                   f"error(s), {report.warnings} warning(s){doubt} [{kinds}] ({report.events} "
                   f"events checked, {report.input_kind}{_profile(report)})")
    return "\n".join(out) + "\n"


def _profile(report: Report) -> str:
    return f", {report.profile}" if report.profile else ""


def write_junit(report: Report) -> str:
    """JUnit XML: one test case per finding kind, failing with that kind's findings."""
    from xml.sax.saxutils import escape, quoteattr  # (loads urllib: only when asked for)

    cases = []
    by_kind: dict[str, list[Finding]] = {}
    for f in report.findings:
        by_kind.setdefault(f.kind, []).append(f)
    failures = 0
    for name, kind in KINDS.items():
        found = by_kind.pop(name, [])
        cases.append((name, kind.summary, found))
    for name, found in by_kind.items():
        cases.append((name, "", found))
    lines = []
    for name, summary, found in cases:
        attrs = f'classname={quoteattr("ptreplay." + name)} name={quoteattr(name)}'
        if not found:
            lines.append(f"    <testcase {attrs}/>")
            continue
        failures += 1
        body = "\n".join(f"{_when(f)}: {f.explanation}" + (f" [{_where(f)}]" if _where(f) else "")
                         for f in found)
        message = f"{len(found)} finding(s): {summary}" if summary else f"{len(found)} finding(s)"
        lines.append(f"    <testcase {attrs}>")
        lines.append(f"      <failure message={quoteattr(message)} "
                     f"type={quoteattr(found[0].severity)}>{escape(body)}</failure>")
        lines.append("    </testcase>")
    suite = (f'  <testsuite name={quoteattr("ptreplay check " + report.input)} '
             f'tests="{len(cases)}" failures="{failures}" errors="0" skipped="0">')
    return "\n".join(['<?xml version="1.0" encoding="UTF-8"?>',
                      f'<testsuites tests="{len(cases)}" failures="{failures}">', suite,
                      *lines, "  </testsuite>", "</testsuites>"]) + "\n"


def write_sarif(report: Report) -> str:
    """SARIF 2.1.0: one rule per finding kind, one result per finding."""
    rules: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    for i, (name, kind) in enumerate(KINDS.items()):
        index[name] = i
        rules.append({
            "id": name,
            "shortDescription": {"text": kind.summary},
            "fullDescription": {"text": f"{kind.summary}. Rule: {kind.rule}."},
            "defaultConfiguration": {"level": kind.severity},
            "properties": {"family": kind.family,
                           **({"casemate": list(kind.casemate)} if kind.casemate else {})},
        })
    results = []
    for f in report.findings:
        region = {"startLine": f.line} if f.line is not None else None
        location: dict[str, Any] = {
            "physicalLocation": {"artifactLocation": {"uri": report.input}}}
        if region:
            location["physicalLocation"]["region"] = region
        props = {k: v for k, v in (
            ("event", f.index), ("cpu", f.cpu), ("ts", f.ts),
            ("root", None if f.root is None else f"{f.root:#x}"),
            ("ipa", None if f.ipa is None else [f"{f.ipa[0]:#x}", f"{f.ipa[1]:#x}"]),
            ("level", f.level), ("operation", f.op), ("source", f.src),
            ("uncertain", f.uncertain or None)) if v is not None}
        result: dict[str, Any] = {
            "ruleId": f.kind,
            "level": f.severity,
            "message": {"text": f.explanation},
            "locations": [location],
            "partialFingerprints": {"ptreplay/v1": fingerprint(f)},
            "properties": props,
        }
        if f.kind in index:
            result["ruleIndex"] = index[f.kind]
        results.append(result)
    sarif = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "ptreplay", "version": __version__, "rules": rules}},
            "artifacts": [{"location": {"uri": report.input}}],
            "results": results,
        }],
    }
    return json.dumps(sarif, indent=2) + "\n"


WRITERS = {"text": write_text, "json": report_to_json, "junit": write_junit, "sarif": write_sarif}


def render(report: Report, fmt: str) -> str:
    """The report in format ``fmt`` (``text``, ``json``, ``junit``, ``sarif``)."""
    return WRITERS[fmt](report)
