"""Reports: findings as text, JSON, JUnit XML and SARIF; the diff of two reports.

* :class:`Report` -- one check's findings and what they are about;
* :func:`render` -- a report in one of :data:`FORMATS`;
* :func:`report_from_json` -- read a JSON report back (``ptreplay diff``);
* :func:`diff_reports` -- new / fixed / unchanged findings between two reports.

:class:`Finding` is defined by the checkers (:mod:`ptreplay.checks.findings`)
and re-exported here.
"""

from __future__ import annotations

from ptreplay.checks.findings import KINDS, Finding, finding_sort_key
from ptreplay.report.diff import ReportDiff, diff_reports, diff_to_json, diff_to_text
from ptreplay.report.model import Report, fingerprint, report_from_json, report_to_json
from ptreplay.report.writers import WRITERS, render

FORMATS = tuple(WRITERS)

__all__ = ["Finding", "KINDS", "finding_sort_key", "Report", "render", "FORMATS",
           "report_to_json", "report_from_json", "fingerprint", "ReportDiff", "diff_reports",
           "diff_to_text", "diff_to_json"]
