"""``ptreplay events TRACE``: events as ``trace-cmd report -R -t`` prints them, or JSON."""

from __future__ import annotations

from typing import Annotated

import typer

from ptreplay.cli.app import app
from ptreplay.showtrace import run_events

__all__ = ["events"]

_EPILOG = """\
Examples:

  ptreplay events traces/sched_syscalls_v7.dat | head

  ptreplay events trace.dat --format raw > mine.txt;
  trace-cmd report -R -t trace.dat | diff - mine.txt

  ptreplay events trace.dat --usec   # like trace-cmd report -R (microseconds)

  ptreplay events trace.dat --event sched_switch --cpu 1 --format json
"""


@app.command(epilog=_EPILOG, short_help=(
    "Print a trace's events (trace-cmd "
    "report -R lines, or JSON)."))
def events(
    trace: Annotated[str, typer.Argument(help="trace.dat file or raw tracefs folder")],
    event: Annotated[list[str] | None, typer.Option(
        "--event", "-e", help="only these events (name, system:name or system); repeatable")
    ] = None,
    cpu: Annotated[list[int] | None, typer.Option(
        "--cpu", "-c", help="only these CPUs; repeatable")] = None,
    buffer: Annotated[str | None, typer.Option(
        "--buffer", "-B", help='only this ftrace instance ("" = top buffer)')] = None,
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help="raw: trace-cmd report -R -t lines; json: one object per line")
    ] = "raw",
    usec: Annotated[bool, typer.Option(
        "--usec", "-u",
        help="raw timestamps in microseconds, rounded (trace-cmd report -R without -t)")
    ] = False,
) -> None:
    """Print the events of TRACE, merged across CPUs and buffers in trace-cmd's order.

    --format raw prints exactly the lines of `trace-cmd report -R -t` (with
    nanosecond timestamps; --usec gives `trace-cmd report -R`'s microseconds),
    so the two can be diffed. --format json prints one object per event
    (buffer, cpu, ts in ns, system, name, pid, comm, fields) and one per
    lost-events marker ({"lost_events": N, ...}).
    """
    if fmt not in ("raw", "json"):
        raise typer.BadParameter("must be raw or json", param_hint="--format")
    run_events(trace, event, cpu, buffer, fmt, usec)
