"""``ptreplay diff``: compare two JSON reports; exit 1 when the second has new findings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import click
import typer

from ptreplay.cli.app import app, write_output
from ptreplay.errors import InputError
from ptreplay.report import diff_reports, diff_to_json, diff_to_text, report_from_json

__all__ = ["diff"]

_EXAMPLES = (
    "Example:\n\n"
    "ptreplay check old.jsonl --format json -o old.json\n\n"
    "ptreplay check new.jsonl --format json -o new.json\n\n"
    "ptreplay diff old.json new.json  (exit 1 if new.json has findings old.json had not)")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as err:
        raise InputError(f"cannot read: {err.strerror}", str(path)) from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", str(path)) from None


@app.command("diff", epilog=_EXAMPLES, short_help=(
    "Compare two JSON reports: new, fixed "
    "and unchanged findings."), help=(
    "Compare two reports written by `ptreplay check --format json`: findings that are new in "
    "NEW, fixed since OLD, or unchanged. Findings match by kind, IPA range, level, operation "
    "and source location, not by event number. Exit status: 0 no new findings, 1 new "
    "findings, 2 bad input."))
def diff(
    old: Annotated[Path, typer.Argument(metavar="OLD", help="The earlier JSON report.")],
    new: Annotated[Path, typer.Argument(metavar="NEW", help="The later JSON report.")],
    fmt: Annotated[str, typer.Option("--format", click_type=click.Choice(["text", "json"]),
                                     help="Output format.")] = "text",
    output: Annotated[Path | None, typer.Option("-o", "--output", metavar="FILE",
                                                help="Write to FILE, not stdout.")] = None,
) -> None:
    """Diff two JSON reports."""
    result = diff_reports(report_from_json(_read(old), str(old)),
                          report_from_json(_read(new), str(new)))
    write_output(diff_to_json(result) if fmt == "json" else diff_to_text(result), output)
    if result.added:
        raise typer.Exit(1)
