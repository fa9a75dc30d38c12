"""Diff of two reports: which findings are new, fixed, or unchanged.

Findings are matched by :func:`ptreplay.report.model.fingerprint` (kind,
IPA range, level, operation, source location), not by event index, so the
same bug found in two recordings of the same workload matches. Equal
fingerprints are matched as multisets: two findings in the new report and
one in the old make one unchanged and one new.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field

from ptreplay.checks.findings import Finding
from ptreplay.report.model import Report, finding_to_json, fingerprint

__all__ = ["ReportDiff", "diff_reports", "diff_to_text", "diff_to_json"]


@dataclass
class ReportDiff:
    """Findings of ``new`` that ``old`` did not have, the reverse, and the common ones."""

    old: Report
    new: Report
    added: list[Finding] = field(default_factory=list)
    fixed: list[Finding] = field(default_factory=list)
    unchanged: list[Finding] = field(default_factory=list)


def diff_reports(old: Report, new: Report) -> ReportDiff:
    """Compare two reports finding by finding (see the module docstring)."""
    pool: dict[str, list[Finding]] = defaultdict(list)
    for f in old.findings:
        pool[fingerprint(f)].append(f)
    result = ReportDiff(old, new)
    for f in new.findings:
        candidates = pool.get(fingerprint(f))
        if candidates:
            candidates.pop(0)
            result.unchanged.append(f)
        else:
            result.added.append(f)
    remaining = {id(f) for fs in pool.values() for f in fs}
    result.fixed = [f for f in old.findings if id(f) in remaining]
    return result


def diff_to_text(d: ReportDiff) -> str:
    """The diff for people: new and fixed findings, then counts."""
    out = []
    for f in d.added:
        out.append(f"new {f.severity}[{f.kind}]: {f.explanation}")
    for f in d.fixed:
        out.append(f"fixed {f.severity}[{f.kind}]: {f.explanation}")
    out.append(f"{d.old.input} -> {d.new.input}: {len(d.added)} new, {len(d.fixed)} fixed, "
               f"{len(d.unchanged)} unchanged")
    return "\n".join(out) + "\n"


def diff_to_json(d: ReportDiff) -> str:
    """The diff as JSON."""
    return json.dumps({
        "old_input": d.old.input, "new_input": d.new.input,
        "summary": {"new": len(d.added), "fixed": len(d.fixed), "unchanged": len(d.unchanged)},
        "new": [finding_to_json(f) for f in d.added],
        "fixed": [finding_to_json(f) for f in d.fixed],
        "unchanged": [finding_to_json(f) for f in d.unchanged],
    }, indent=2) + "\n"
