"""``ptreplay maps``: ownership and mapping maps of each page table, at the end or at an event."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import click
import typer

from ptreplay.checks.inputs import SOURCES
from ptreplay.checks.maps import LAYOUTS, root_maps
from ptreplay.cli.app import app, parse_root, write_output
from ptreplay.cli.check import run_check
from ptreplay.errors import InputError
from ptreplay.model.profiles import DEFAULT_PROFILE, PROFILES

__all__ = ["maps"]

_EXAMPLES = (
    "Examples:\n\n"
    "ptreplay maps run.jsonl  (owners and mappings of each stage-2, at the end)\n\n"
    "ptreplay maps run.jsonl --at 1200 --layout owners\n\n"
    "ptreplay maps run.jsonl --at 1200 --layout ptdump > then.txt  (diff it with a live "
    "stage2_page_tables)")


@app.command("maps", epilog=_EXAMPLES, short_help=(
    "Ownership and mapping maps of any input, at the end or after an event "
    "index."), help=(
    "Print, for each page table of INPUT, the ownership map (which owner id holds each IPA "
    "range; host = 0) and the mapping map, at the end of the input or right after event "
    "--at. INPUT is an effect log, a casemate log or a trace; for a trace, `ptreplay replay` "
    "prints the same maps with the platform options, destroyed roots as they were before "
    "their destroy, and --at TIMESTAMP. The ptdump layout "
    "includes the last run, which the kernel's debugfs file omits."))
def maps(
    input: Annotated[str, typer.Argument(
        metavar="INPUT", help="Effect log, casemate log or trace; - reads stdin.")],
    input_kind: Annotated[str | None, typer.Option(
        "--input", metavar="KIND", show_default=False, click_type=click.Choice(list(SOURCES)),
        help="Kind of input: " + ", ".join(SOURCES) + " (default: detected).")] = None,
    profile: Annotated[str | None, typer.Option(
        "--profile", click_type=click.Choice(list(PROFILES)), show_default=False,
        help=f"Kernel profile (owner-id encoding; default {DEFAULT_PROFILE}, or a trace's own "
        "kernel).")] = None,
    at: Annotated[int | None, typer.Option(
        "--at", metavar="INDEX", min=0, help="Stop right after the event with this index "
        "(a trace: after the operations that returned by then; indexes as `ptreplay events` "
        "numbers events).")
    ] = None,
    root: Annotated[str | None, typer.Option(
        "--root", metavar="PGD", help="Only the page table whose pgd is at PGD (hex).")] = None,
    layout: Annotated[str, typer.Option(
        "--layout", click_type=click.Choice(list(LAYOUTS)),
        help="; ".join(f"{k}: {v}" for k, v in LAYOUTS.items()) + ".")] = "all",
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", metavar="FILE", help="Write to FILE, not stdout.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Print the maps of INPUT's page tables."""
    run, name = run_check(input, input_kind, profile, quiet, at_index=at)
    shadow = run.shadow
    roots = [r for _pgd, r in sorted(shadow.roots.items())]
    if root is not None:
        want = parse_root(root)
        roots = [r for r in roots if r.pgd == want]
        if not roots:
            raise InputError(f"no page table with pgd {want:#x} is live there", name)
    parts = [root_maps(shadow, r, run.profile, run.fwb.get(r.pgd, False), layout) for r in roots]
    if not roots:
        parts.append(f"{name}: no live page table" + (f" after event {at}" if at is not None
                                                       else "") + "\n")
    write_output("".join(parts), output)
