"""The report of one ``ptreplay check`` run, and its JSON form.

A :class:`Report` is what every writer (text, JSON, JUnit, SARIF) prints and
what ``ptreplay diff`` compares: the input, the kind of input and kernel
profile, counts, and the findings in their deterministic order. The JSON form
is described by schemas/report.schema.json; addresses are ``"0x..."``
strings as in the oracle's effect logs, so reports are byte-identical for the
same input.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ptreplay import __version__
from ptreplay.checks.findings import KINDS, Finding, finding_sort_key
from ptreplay.errors import InputError

__all__ = ["Report", "report_to_json", "report_from_json", "fingerprint", "REPORT_FORMAT"]

REPORT_FORMAT = 1


@dataclass
class Report:
    """The findings of one check and what they are about.

    :param input: the file checked (``-`` for stdin).
    :param input_kind: ``effects``, ``casemate`` or ``trace``.
    :param profile: the kernel profile used (None for casemate logs).
    :param findings: in report order (see :func:`finding_sort_key`).
    :param events: events (lines, records) checked.
    :param notes: facts about the input worth printing (a casemate log's own
        expected verdict, ...), as ``key -> text``.
    """

    input: str
    input_kind: str
    profile: str | None
    findings: list[Finding] = field(default_factory=list)
    events: int = 0
    notes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.findings = sorted(self.findings, key=finding_sort_key)

    @property
    def by_kind(self) -> dict[str, int]:
        """Finding counts per kind, in catalogue order."""
        counts = Counter(f.kind for f in self.findings)
        order = list(KINDS)
        return {k: counts[k] for k in sorted(counts, key=lambda k: (
            order.index(k) if k in order else len(order), k))}

    @property
    def errors(self) -> int:
        """Findings of severity ``error``."""
        return sum(1 for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> int:
        """Findings of severity ``warning``."""
        return sum(1 for f in self.findings if f.severity == "warning")

    @property
    def clean(self) -> bool:
        """No findings at all."""
        return not self.findings


def _hex(value: int | None) -> str | None:
    return None if value is None else f"{value:#x}"


def _range(value: tuple[int, int] | None) -> list[str] | None:
    return None if value is None else [f"{value[0]:#x}", f"{value[1]:#x}"]


def finding_to_json(f: Finding) -> dict[str, Any]:
    """One finding as a JSON object (fields in a fixed order, absent ones omitted)."""
    obj: dict[str, Any] = {
        "kind": f.kind,
        "severity": f.severity,
        "explanation": f.explanation,
        "fingerprint": fingerprint(f),
    }
    for key, value in (("index", f.index), ("line", f.line), ("cpu", f.cpu), ("ts", f.ts)):
        if value is not None:
            obj[key] = value
    for key, text in (("root", _hex(f.root)), ("table", _hex(f.table)),
                      ("entry", _hex(f.entry))):
        if text is not None:
            obj[key] = text
    for key, pair in (("ipa", _range(f.ipa)), ("pa", _range(f.pa))):
        if pair is not None:
            obj[key] = pair
    if f.level is not None:
        obj["level"] = f.level
    if f.op is not None:
        obj["op"] = f.op
    if f.op_index is not None:
        obj["op_index"] = f.op_index
    if f.src is not None:
        obj["src"] = f.src
    if f.uncertain:
        obj["uncertain"] = True
    if f.related:
        obj["related"] = list(f.related)
    return obj


def report_to_json(report: Report) -> str:
    """The report as JSON text (deterministic: fixed key order, two-space indent)."""
    obj = {
        "format": REPORT_FORMAT,
        "tool": {"name": "ptreplay", "version": __version__},
        "input": report.input,
        "input_kind": report.input_kind,
        "profile": report.profile,
        "events": report.events,
        "summary": {
            "findings": len(report.findings),
            "errors": report.errors,
            "warnings": report.warnings,
            "uncertain": sum(1 for f in report.findings if f.uncertain),
            "by_kind": report.by_kind,
        },
        "notes": report.notes,
        "findings": [finding_to_json(f) for f in report.findings],
    }
    return json.dumps(obj, indent=2) + "\n"


def fingerprint(f: Finding) -> str:
    """What identifies a finding across two runs, whatever the event numbering.

    Kind, IPA range, level, operation and source location: event indexes,
    timestamps and table-page addresses change between runs of the same
    workload, the place in the guest's address space and the code that did it
    do not.
    """
    op = f.op.split(" -> ")[0] if f.op else ""
    parts = [f.kind, f"{f.ipa[0]:#x}" if f.ipa else "", f"{f.ipa[1]:#x}" if f.ipa else "",
             str(f.level if f.level is not None else ""), op, f.src or ""]
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def _num(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            pass
    raise InputError(f"{where}: expected a number, got {value!r}")


def _pair(value: Any, where: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2:
        raise InputError(f"{where}: expected [start, end]")
    start, end = _num(value[0], where), _num(value[1], where)
    assert start is not None and end is not None
    return start, end


def report_from_json(text: str, source: str = "-") -> Report:
    """Read a report written by :func:`report_to_json` (for ``ptreplay diff``)."""
    try:
        obj = json.loads(text)
    except ValueError as err:
        raise InputError(f"not a ptreplay JSON report ({err})", source) from None
    if not isinstance(obj, dict) or obj.get("format") != REPORT_FORMAT or \
            not isinstance(obj.get("findings"), list):
        raise InputError("not a ptreplay JSON report (missing \"format\": 1 or \"findings\")",
                         source)
    findings = []
    for n, item in enumerate(obj["findings"]):
        where = f"findings[{n}]"
        if not isinstance(item, dict) or not isinstance(item.get("kind"), str) \
                or not isinstance(item.get("explanation"), str):
            raise InputError(f"{where}: a finding needs \"kind\" and \"explanation\"", source)
        try:
            findings.append(Finding(
                kind=item["kind"], explanation=item["explanation"],
                index=_num(item.get("index"), where), root=_num(item.get("root"), where),
                ipa=_pair(item.get("ipa"), where), pa=_pair(item.get("pa"), where),
                table=_num(item.get("table"), where), entry=_num(item.get("entry"), where),
                level=_num(item.get("level"), where), cpu=_num(item.get("cpu"), where),
                ts=_num(item.get("ts"), where), op=item.get("op"),
                op_index=_num(item.get("op_index"), where), line=_num(item.get("line"), where),
                src=item.get("src"), uncertain=bool(item.get("uncertain", False)),
                related=tuple(_num(i, where) or 0 for i in item.get("related", []))))
        except InputError as err:
            raise err.located(source) from None
    notes = obj.get("notes")
    if not isinstance(notes, dict):
        notes = {}
    return Report(input=str(obj.get("input", source)),
                  input_kind=str(obj.get("input_kind", "")),
                  profile=obj.get("profile"), findings=findings,
                  events=int(obj.get("events", 0) or 0),
                  notes={str(k): str(v) for k, v in notes.items()})
