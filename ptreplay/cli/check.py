"""``ptreplay check``: find the bugs in an effect log, a casemate log or a trace.

Exit status: 0 when clean, 1 when there are findings, 2 on bad input.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import IO, Annotated, Any

import click
import typer

from ptreplay.checks.inputs import SOURCES, CheckOptions, CheckRun, detect_source, run_source
from ptreplay.cli.app import app, write_output
from ptreplay.cli.replay import (
    FwbOpt,
    HwAfOpt,
    JobsOpt,
    VheOpt,
    events_progress,
    replay_config,
)
from ptreplay.errors import InputError
from ptreplay.model.profiles import DEFAULT_PROFILE, PROFILES
from ptreplay.report import FORMATS, Report, render

__all__ = ["check", "open_input", "run_check"]

_EXAMPLES = (
    "Examples:\n\n"
    "ptreplay check run.jsonl  (an effect log, linux-6.1 encodings)\n\n"
    "ptreplay model run s.jsonl --profile linux-5.13 | ptreplay check - --profile linux-5.13"
    "\n\n"
    "ptreplay check hyp.log --format sarif -o hyp.sarif  (a casemate log, for CI)\n\n"
    "ptreplay check trace.dat  (a trace: replayed through the model; kernel and platform "
    "from the trace)\n\n"
    "ptreplay check raw/ --profile linux-6.1 --no-fwb  (a raw tracefs copy, decisions given)")


def open_input(path: str) -> tuple[IO[bytes], str, int | None]:
    """The binary stream of ``path`` (``-`` is stdin), its display name and size."""
    if path == "-":
        return sys.stdin.buffer, "-", None
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the caller
    except OSError as err:
        raise InputError(f"cannot open: {err.strerror}", path) from None
    try:
        size = os.fstat(f.fileno()).st_size
    except OSError:
        size = None
    return f, path, size


def _progress(size: int | None, quiet: bool):  # type: ignore[no-untyped-def]
    """A tqdm bar on a terminal (bytes of input), None otherwise."""
    if quiet or not sys.stderr.isatty():
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=size, unit="B", unit_scale=True, desc="checking", leave=False,
               file=sys.stderr)
    last = [0]

    def update(done: int) -> None:
        bar.update(done - last[0])
        last[0] = done

    return bar, update


def run_check(path: str, input_kind: str | None, profile: str | None, quiet: bool = True,
              at_index: int | None = None, replay: Any = None) -> tuple[CheckRun, str]:
    """Open ``path``, detect its kind unless given, run the checks; (run, display name).

    :param profile: None: the default (effect logs), or the trace's own kernel (traces).
    :param replay: for traces: the replay's decisions (a ``ReplayConfig``).
    """
    if profile is not None and profile not in PROFILES:
        raise InputError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    if input_kind is not None and input_kind not in SOURCES:
        raise InputError(f"unknown input kind {input_kind!r} (known: {', '.join(SOURCES)})")
    if os.path.isdir(path) and input_kind in (None, "trace"):  # a raw tracefs copy
        return _run_trace_folder(path, profile, quiet, at_index, replay), path
    raw, name, size = open_input(path)
    try:
        stream = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[arg-type,type-var]
        head = stream.peek(512)[:512]
        source = SOURCES[input_kind] if input_kind else detect_source(head, name)
        bar, update = (events_progress(quiet, "checking") if source.name == "trace"
                       else _progress(size, quiet))
        try:
            run = run_source(source, stream, name,
                             CheckOptions(profile=profile or DEFAULT_PROFILE, at_index=at_index,
                                          progress=update,
                                          replay=_replay_config(profile, replay)))
        finally:
            if bar is not None:
                bar.close()
    except InputError as err:
        raise err.located(name) from None
    finally:
        if raw is not sys.stdin.buffer:
            raw.close()
    return run, name


def _replay_config(profile: str | None, replay: Any) -> Any:
    """The trace replay's decisions, with the ``--profile`` given (if any)."""
    from dataclasses import replace

    from ptreplay.stage2.replay import ReplayConfig
    config = replay or ReplayConfig()
    return replace(config, profile=profile) if profile is not None else config


def _run_trace_folder(path: str, profile: str | None, quiet: bool, at_index: int | None,
                      replay: Any) -> CheckRun:
    bar, update = events_progress(quiet, "checking")
    try:
        return run_source(SOURCES["trace"], io.BytesIO(), path,
                          CheckOptions(profile=profile or DEFAULT_PROFILE, at_index=at_index,
                                       progress=update,
                                       replay=_replay_config(profile, replay)))
    except InputError as err:
        raise err.located(path) from None
    finally:
        if bar is not None:
            bar.close()


@app.command("check", epilog=_EXAMPLES, short_help=(
    "Find bugs in a trace, effect log or casemate log (exit 0 clean, 1 "
    "findings, 2 bad input)."), help=(
    "Check INPUT for break-before-make violations, table refcount leaks and lifetime bugs, "
    "lost ownership annotations, and casemate's locking rules. INPUT is an effect log "
    "(JSON lines, what `ptreplay model run` prints), a casemate log, or a trace (trace.dat "
    "or raw tracefs folder of the capture kit's probes), which is replayed through the model "
    "of pgtable.c: divergences from it are findings too. "
    "Exit status: 0 clean, 1 findings, 2 bad input."))
def check(
    input: Annotated[str, typer.Argument(metavar="INPUT", help="File to check; - reads stdin.")],
    input_kind: Annotated[str | None, typer.Option(
        "--input", metavar="KIND", show_default=False, click_type=click.Choice(list(SOURCES)),
        help="Kind of input: " + ", ".join(SOURCES) + " (default: detected).")] = None,
    profile: Annotated[str | None, typer.Option(
        "--profile", click_type=click.Choice(list(PROFILES)), show_default=False,
        help="Kernel profile: of an effect log (PTE encodings differ between kernels; default "
        f"{DEFAULT_PROFILE}), of a trace (default: the trace's kernel).")
    ] = None,
    fmt: Annotated[str, typer.Option(
        "--format", click_type=click.Choice(list(FORMATS)), help="Report format.")] = "text",
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", metavar="FILE", help="Write the report to FILE, not stdout.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    fwb: FwbOpt = None,
    hw_af: HwAfOpt = None,
    vhe: VheOpt = None,
    jobs: JobsOpt = 2,
) -> None:
    """Check INPUT and report the findings."""
    run, name = run_check(input, input_kind, profile, quiet,
                          replay=replay_config(None, fwb, hw_af, vhe, jobs))
    report = Report(input=name, input_kind=run.kind, profile=run.profile_name,
                    findings=run.findings, events=run.events, notes=run.notes)
    write_output(render(report, fmt), output)
    if not report.clean:
        raise typer.Exit(1)
