"""``ptreplay capture``: record stage-2 traces on an arm64 KVM host.

``capture kprobes`` prints the kprobe definitions of a kernel series;
``capture record`` installs them and runs ``trace-cmd record`` around a
command. With ``--vmlinux`` both first check the set against a kernel image
(:mod:`ptreplay.capture.vmlinux`). See docs/capture.md.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ptreplay.capture.catalog import ProbeSet, load_probe_set, series_for
from ptreplay.capture.record import (
    DEFAULT_BUFFER_KB,
    CaptureError,
    detect_environment,
    record,
)
from ptreplay.cli.app import app

if TYPE_CHECKING:
    from ptreplay.capture.vmlinux import ImageCheck

capture_app = typer.Typer(
    help="Record stage-2 traces on an arm64 KVM host (kprobe sets, trace-cmd record).",
    no_args_is_help=True,
)
app.add_typer(capture_app, name="capture")


def _warn(message: str) -> None:
    sys.stderr.write(f"ptreplay: warning: {message}\n")


_VMLINUX_HELP = ("A kernel image (vmlinux with symbols, ideally DWARF; or a .ko / .o) to check "
                 "the probe set against first.")


def _check_vmlinux(path: Path, probe_set: ProbeSet) -> ImageCheck:
    """Check the set against the image (pyelftools is imported only when asked for)."""
    from ptreplay.capture.vmlinux import check_image

    return check_image(path, probe_set)


@capture_app.command("kprobes")
def kprobes(
    kernel: Annotated[str, typer.Option(
        "--kernel", "-k",
        help="Kernel series (5.13, 5.15, 6.1, 6.6, 6.12) or a release such as 6.1.0-56-arm64.",
    )],
    comments: Annotated[bool, typer.Option(
        "--comments", help="Keep the comments (source line of every definition).",
    )] = False,
    vmlinux: Annotated[Path | None, typer.Option("--vmlinux", help=_VMLINUX_HELP)] = None,
) -> None:
    """Print the kprobe_events lines of a kernel series.

    --vmlinux checks the probes against that kernel build (stderr; exit 1 on a misfit).

    Example: ptreplay capture kprobes --kernel 6.1 >> /sys/kernel/tracing/kprobe_events

    Example: ptreplay capture kprobes --kernel 6.1 --vmlinux ./vmlinux
    """
    probe_set = load_probe_set(series_for(kernel))
    check = _check_vmlinux(vmlinux, probe_set) if vmlinux is not None else None
    out: list[str] = []
    if comments:
        out += list(probe_set.header)
    last_comments: tuple[str, ...] = ()
    for entry in probe_set.entries:
        if comments and entry.comments != last_comments:
            out += list(entry.comments)
        out.append(entry.text)
        last_comments = entry.comments
    sys.stdout.write("\n".join(out) + "\n")
    if check is not None:
        sys.stdout.flush()
        report = [f"{check.image}: note: {n}" for n in check.notes]
        report += [f"{check.image}: {p.line()}" for p in check.problems]
        sys.stderr.write("\n".join([*report, check.summary()]) + "\n")
        if not check.fits:
            raise typer.Exit(1)


@capture_app.command("record", context_settings={"allow_interspersed_args": False})
def record_cmd(
    command: Annotated[list[str], typer.Argument(
        help="The command to trace, after --.", metavar="-- CMD [ARGS]...",
    )],
    output: Annotated[Path, typer.Option("--output", "-o", help="The trace.dat to write.")],
    kernel: Annotated[str, typer.Option(
        "--kernel", "-k", help="auto (this kernel's uname -r) or a series / release string.",
    )] = "auto",
    buffer_kb: Annotated[int, typer.Option(
        "--buffer-kb", "-b", min=1, help="Per-CPU ring buffer size in KiB (trace-cmd -b).",
    )] = DEFAULT_BUFFER_KB,
    tracefs: Annotated[Path | None, typer.Option(
        "--tracefs",
        help="The tracefs root (default: /sys/kernel/tracing, then /sys/kernel/debug/tracing).",
    )] = None,
    trace_cmd: Annotated[str | None, typer.Option(
        "--trace-cmd", help="The trace-cmd executable (default: trace-cmd in PATH).",
    )] = None,
    vmlinux: Annotated[Path | None, typer.Option(
        "--vmlinux", help=_VMLINUX_HELP + " Refuses to record when a probe does not fit.",
    )] = None,
) -> None:
    """Install ptreplay's kprobes, run trace-cmd record around CMD, remove the probes.

    Needs root on an arm64 KVM host with tracefs, kprobe events and trace-cmd.

    Example: ptreplay capture record -o trace.dat -- qemu-system-aarch64 -accel kvm ...

    Example: ptreplay capture record --vmlinux ./vmlinux -o trace.dat -- qemu-system-aarch64 ...
    """
    env = detect_environment(tracefs=tracefs, trace_cmd=trace_cmd)
    if vmlinux is not None:
        series = series_for(env.release if kernel == "auto" else kernel)
        check = _check_vmlinux(vmlinux, load_probe_set(series))
        if not check.fits:
            raise CaptureError(f"{check.summary()}; not recording (details: ptreplay capture "
                               f"kprobes --kernel {series} --vmlinux {vmlinux})")
    if trace_cmd is not None and env.trace_cmd is None:
        raise CaptureError(f"trace-cmd executable not found: {trace_cmd}")
    record(env, output, command, kernel=kernel, buffer_kb=buffer_kb, warn=_warn)
