"""``ptreplay replay TRACE``: the ownership and mapping maps of each stage-2 root of a trace.

The trace is replayed through the model and checked (``ptreplay check`` does the
same and prints the findings); the maps come from the checkers' tables rebuilt
from the merged effect stream, at the end of the trace or at ``--at``. A root
destroyed before that point is shown as it was just before its destroy.

Also the home of what ``check`` needs to read traces: the platform options
(:func:`replay_config`) and the progress bar (:func:`events_progress`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import click
import typer

from ptreplay.checks.maps import LAYOUTS
from ptreplay.cli.app import app, parse_root, write_output
from ptreplay.errors import InputError

__all__ = ["replay", "replay_config", "events_progress", "parse_timestamp"]

_EPILOG = """\
Examples:

  ptreplay replay trace.dat                 # maps of every root, at the end

  ptreplay replay trace.dat --at 41.160025  # ... at that time (trace-cmd's seconds)

  ptreplay replay raw/ --root 0xffff000002d5a000 --layout ptdump > then.txt

  ptreplay replay trace.dat --no-fwb --hw-af    # the platform, instead of inferring it
"""


def parse_timestamp(text: str) -> int:
    """A trace timestamp in ns: an integer (ns) or seconds with a dot (``41.160025``)."""
    try:
        if "." in text:
            return int(Decimal(text) * 1_000_000_000)
        return int(text, 0)
    except (InvalidOperation, ValueError):
        raise InputError(f"--at: not a timestamp: {text!r} (ns, or seconds with a dot)"
                         ) from None


def replay_config(profile: str | None, fwb: bool | None, hw_af: bool | None,
                  vhe: bool | None, jobs: int) -> Any:
    """The :class:`~ptreplay.stage2.replay.ReplayConfig` of the command-line options."""
    from ptreplay.stage2.replay import ReplayConfig
    return ReplayConfig(profile=profile, fwb=fwb, hw_af=hw_af, vhe=vhe, jobs=max(1, jobs))


def events_progress(quiet: bool, what: str = "replaying"
                    ) -> tuple[Any, Callable[[int], None] | None]:
    """A tqdm counter of events read, on a terminal only (and not with --quiet)."""
    if quiet or not sys.stderr.isatty():
        return None, None
    from tqdm import tqdm

    bar = tqdm(unit=" events", unit_scale=True, desc=what, leave=False, file=sys.stderr)
    last = [0]

    def update(n: int) -> None:
        bar.update(n - last[0])
        last[0] = n

    return bar, update


# Option declarations shared with ``ptreplay check`` (for traces).
ProfileOpt = Annotated[str | None, typer.Option(
    "--profile", metavar="PROFILE", show_default=False,
    help="Kernel profile (linux-5.13, linux-6.1); default: from the trace's kernel.")]
FwbOpt = Annotated[bool | None, typer.Option(
    "--fwb/--no-fwb", show_default=False,
    help="Stage-2 FWB (cache maintenance on unmap or not); default: from the trace.")]
HwAfOpt = Annotated[bool | None, typer.Option(
    "--hw-af/--no-hw-af", show_default=False,
    help="Hardware access-flag management; default: adopted where the trace shows it.")]
VheOpt = Annotated[bool | None, typer.Option(
    "--vhe/--no-vhe", show_default=False,
    help="VHE: TLB invalidations visible to the probes; default: from the trace.")]
JobsOpt = Annotated[int, typer.Option(
    "--jobs", "-j", min=1, max=2, help="2: read the trace in a second process.")]


@app.command(epilog=_EPILOG, short_help=(
    "Ownership and mapping maps of a trace's stage-2 roots, at the end or "
    "at a timestamp."))
def replay(
    trace: Annotated[str, typer.Argument(help="trace.dat file or raw tracefs folder")],
    at: Annotated[str | None, typer.Option(
        "--at", metavar="TIMESTAMP",
        help="The state after the operations that returned by then (ns, or seconds).")
    ] = None,
    root: Annotated[str | None, typer.Option(
        "--root", metavar="PGD", help="Only the root whose pgd is PGD (hex, as the trace "
        "shows it, or as the maps print it).")] = None,
    layout: Annotated[str, typer.Option(
        "--layout", click_type=click.Choice(list(LAYOUTS)),
        help="; ".join(f"{k}: {v}" for k, v in LAYOUTS.items()) + ".")] = "all",
    profile: ProfileOpt = None,
    fwb: FwbOpt = None,
    hw_af: HwAfOpt = None,
    vhe: VheOpt = None,
    jobs: JobsOpt = 2,
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", metavar="FILE", help="Write to FILE, not stdout.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Replay TRACE and print, for each stage-2 root, which owner holds each IPA range
    (host = 0, runs merged) and its mappings, at the end of the trace or at --at."""
    from ptreplay.stage2.maps import render_maps

    until = parse_timestamp(at) if at is not None else None
    want = parse_root(root) if root is not None else None
    bar, update = events_progress(quiet)
    try:
        text = render_maps(trace, replay_config(profile, fwb, hw_af, vhe, jobs), until=until,
                           root=want, layout=layout, progress=update)
    finally:
        if bar is not None:
            bar.close()
    write_output(text, output)
