"""``ptreplay info TRACE``: what a trace holds, without decoding event fields."""

from __future__ import annotations

from typing import Annotated

import typer

from ptreplay.cli.app import app
from ptreplay.showtrace import render_text, run_info, summarize

__all__ = ["info", "summarize", "render_text"]

_EPILOG = """\
Examples:

  ptreplay info traces/sched_syscalls_v7.dat

  ptreplay info trace.dat --format json | jq .events.total

  ptreplay info trace.dat --no-count    # metadata only, instant
"""


@app.command(epilog=_EPILOG, short_help=(
    "Show a trace's format, buffers, CPUs, events per name and lost "
    "events."))
def info(
    trace: Annotated[str, typer.Argument(help="trace.dat file or raw tracefs folder")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="text or json")] = "text",
    count: Annotated[bool, typer.Option(
        "--count/--no-count", help="count events per name/CPU (walks the pages)")] = True,
) -> None:
    """Show TRACE's format version, endianness, long and page size, compression,
    clock, buffers and CPUs, events per buffer/CPU/name and lost events per CPU.

    Counting walks the ring-buffer pages but decodes no event fields.
    """
    if fmt not in ("text", "json"):
        raise typer.BadParameter("must be text or json", param_hint="--format")
    run_info(trace, fmt, count)
