"""``ptreplay model run``: what would the kernel's pgtable.c do for these operations?"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import typer

from ptreplay.cli.app import model_app
from ptreplay.errors import InputError, ScenarioError
from ptreplay.model.profiles import PROFILES, get_profile
from ptreplay.model.scenario import run_scenario

__all__ = ["run"]


def _decoded_lines(stream: BinaryIO, source: str) -> Iterator[str]:
    """UTF-8 lines of a scenario, with the line number of any undecodable one."""
    for n, raw in enumerate(stream, 1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ScenarioError("not UTF-8 text", source, line=n) from None


@model_app.command("run")
def run(
    scenario: str = typer.Argument(
        ..., metavar="SCENARIO.jsonl", help="Operations, one JSON object per line ('-': stdin)."
    ),
    profile: str = typer.Option(
        "linux-6.1", "--profile", "-p",
        help=f"Kernel whose pgtable.c to follow: {', '.join(PROFILES)}.",
    ),
    check: bool = typer.Option(
        False, "--check",
        help="After every operation run the oracle harness's invariant checks (table "
             "refcounts, reachability, leaks); report violations on stderr and exit 1.",
    ),
) -> None:
    """Run a scenario through the model and print each operation with its return value,
    followed by its effects (PTE stores, TLBIs, barriers, CMOs, allocations, refcounts),
    in the kernel oracle's JSON-lines format.

    Example:

        ptreplay model run scenarios/01_page_map_basic.jsonl --profile linux-5.13

        ptreplay model run --check --profile linux-6.12-16k scenarios-16k/702_16k_block_32m.jsonl

        ptreplay model run - < my-scenario.jsonl
    """
    kernel = get_profile(profile)
    if scenario == "-":
        runner = run_scenario(_decoded_lines(sys.stdin.buffer, "-"), kernel, sys.stdout,
                              source="-", check=check)
    else:
        path = Path(scenario)
        try:
            stream = path.open("rb")
        except OSError as err:
            raise InputError(f"cannot open: {err.strerror}", scenario) from None
        with stream:
            runner = run_scenario(_decoded_lines(stream, scenario), kernel, sys.stdout,
                                  source=scenario, check=check)
    sys.stdout.flush()
    if runner.problems:
        for line, problem in runner.problems:
            sys.stderr.write(f"ptreplay: {scenario}: after line {line}: {problem}\n")
        raise typer.Exit(1)
