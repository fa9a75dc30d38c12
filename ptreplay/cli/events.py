"""``ptreplay events TRACE``: events as ``trace-cmd report -R -t`` prints them, or JSON."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ptreplay.cli.app import app

__all__ = ["events"]

_EPILOG = """\
Examples:

  ptreplay events traces/sched_syscalls_v7.dat | head

  ptreplay events trace.dat --format raw > mine.txt;
  trace-cmd report -R -t trace.dat | diff - mine.txt

  ptreplay events trace.dat --usec   # like trace-cmd report -R (microseconds)

  ptreplay events trace.dat --event sched_switch --cpu 1 --format json
"""


@app.command(epilog=_EPILOG)
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


def run_events(trace: str, event: list[str] | None, cpu: list[int] | None,
               buffer: str | None, fmt: str, usec: bool) -> None:
    """The body of ``ptreplay events``: stream the lines in batches."""
    from ptreplay.trace import open_trace

    out = sys.stdout
    with open_trace(trace) as t:
        if fmt == "raw":
            from ptreplay.formats.rawreport import raw_report_lines

            lines = raw_report_lines(t, nsec=not usec, names=event, cpus=cpu, buffer=buffer)
        else:
            lines = _json_lines(t, event, cpu, buffer)
        batch: list[str] = []
        for line in lines:
            batch.append(line)
            if len(batch) >= 4096:
                batch.append("")
                out.write("\n".join(batch))
                batch = []
        if batch:
            batch.append("")
            out.write("\n".join(batch))
        out.flush()


def _json_lines(t, names, cpus, buffer):
    import json

    from ptreplay.trace import LostEvents

    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"),
                             default=_default).encode
    for ev in t.events(names=names, cpus=cpus, buffer=buffer):
        if isinstance(ev, LostEvents):
            yield dumps({"buffer": ev.buffer, "cpu": ev.cpu, "ts": ev.ts,
                         "lost_events": ev.count})
            continue
        yield dumps({"buffer": ev.buffer, "cpu": ev.cpu, "ts": ev.ts, "system": ev.system,
                     "name": ev.name, "pid": ev.pid, "comm": ev.comm, "fields": ev.fields})


def _default(obj):
    if isinstance(obj, bytes):
        return obj.hex()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(type(obj).__name__)
