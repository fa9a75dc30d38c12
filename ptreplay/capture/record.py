"""The capture kit: install ptreplay's kprobes and run ``trace-cmd record``.

On an arm64 KVM host, :func:`record` checks the machine (arm64, root,
tracefs with ``kprobe_events``, a ``trace-cmd`` binary), writes the kprobe
set of the kernel's series into ``kprobe_events`` one definition at a time
(the kernel rejects probes on functions the compiler inlined: those become
warnings), runs ``trace-cmd record`` with the probes and the kvm:*
tracepoints enabled around the user's command, and removes the probes it
created afterwards, whatever happened.

Everything that touches the system goes through :class:`Environment` (what
the machine is) and :class:`KprobeEvents` (the tracefs files), so the logic
can be exercised against a directory laid out like tracefs.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ptreplay.capture.catalog import load_probe_set, load_tracepoints, series_for
from ptreplay.capture.probedefs import ProbeDefinition
from ptreplay.errors import InputError

__all__ = [
    "CaptureError",
    "Environment",
    "KprobeEvents",
    "InstallResult",
    "TRACEFS_MOUNTS",
    "DEFAULT_BUFFER_KB",
    "detect_environment",
    "check_environment",
    "find_tracefs",
    "install_probes",
    "remove_probes",
    "present_tracepoints",
    "trace_cmd_command",
    "record",
]

#: Where tracefs is mounted on current kernels, and on older setups via debugfs.
TRACEFS_MOUNTS = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))

#: Per-CPU ring buffer in KiB: what the corpus recordings used to lose nothing.
DEFAULT_BUFFER_KB = 20000

ARM64_MACHINES = ("aarch64", "arm64")


class CaptureError(InputError):
    """The machine cannot record: not arm64, no tracefs or kprobes, no trace-cmd, not root."""


@dataclass(frozen=True)
class Environment:
    """What the recording machine offers.

    :param machine: ``uname -m`` (``aarch64``).
    :param release: ``uname -r`` (``6.1.0-56-arm64``).
    :param euid: effective user id.
    :param tracefs: the tracefs root to use, or ``None`` when none was found.
    :param trace_cmd: the ``trace-cmd`` executable, or ``None`` when none was found.
    """

    machine: str
    release: str
    euid: int
    tracefs: Path | None
    trace_cmd: str | None


def find_tracefs(candidates: Sequence[Path] = TRACEFS_MOUNTS) -> Path | None:
    """The first mounted tracefs among ``candidates`` (a directory holding ``events``)."""
    for c in candidates:
        if (c / "events").is_dir():
            return c
    return None


def detect_environment(tracefs: Path | None = None, trace_cmd: str | None = None) -> Environment:
    """Look at this machine; ``tracefs`` / ``trace_cmd`` override what is searched for."""
    uname = platform.uname()
    found_cmd = shutil.which(trace_cmd) if trace_cmd else shutil.which("trace-cmd")
    return Environment(
        machine=uname.machine,
        release=uname.release,
        euid=os.geteuid(),
        tracefs=tracefs if tracefs is not None else find_tracefs(),
        trace_cmd=found_cmd,
    )


def check_environment(env: Environment) -> Path:
    """Refuse to record where it cannot work; return the tracefs root.

    :raises CaptureError: one line saying what is missing.
    """
    if env.machine not in ARM64_MACHINES:
        raise CaptureError(
            f"capture needs an arm64 KVM host; this machine is {env.machine or 'unknown'}"
        )
    if env.tracefs is None:
        where = " or ".join(str(p) for p in TRACEFS_MOUNTS)
        raise CaptureError(f"tracefs is not mounted (looked at {where}); "
                           "mount it with: mount -t tracefs nodev /sys/kernel/tracing")
    if not (env.tracefs / "events").is_dir():
        raise CaptureError(f"{env.tracefs} is not a tracefs mount (no events/ directory)")
    if not (env.tracefs / "kprobe_events").is_file():
        raise CaptureError(f"kprobe events are not available: no {env.tracefs / 'kprobe_events'} "
                           "(the kernel needs CONFIG_KPROBE_EVENTS)")
    if env.euid != 0:
        raise CaptureError("capture record must run as root (it writes kprobe_events)")
    if env.trace_cmd is None:
        raise CaptureError("trace-cmd not found in PATH (Debian: apt-get install trace-cmd), "
                           "or give its path with --trace-cmd")
    return env.tracefs


class KprobeEvents:
    """The kprobe interface of one tracefs: ``kprobe_events``, ``events/``, ``error_log``."""

    def __init__(self, tracefs: Path) -> None:
        self.tracefs = tracefs
        self.path = tracefs / "kprobe_events"

    def exists(self, group: str, event: str) -> bool:
        """Whether the kernel already has an event ``group/event``."""
        return (self.tracefs / "events" / group / event).is_dir()

    def _append(self, line: str) -> None:
        # Append, never truncate: opening kprobe_events with O_TRUNC clears every probe.
        with open(self.path, "a", encoding="ascii") as f:
            f.write(line + "\n")

    def add(self, defn: ProbeDefinition) -> None:
        """Define one probe; the kernel's refusal comes back as ``OSError``."""
        self._append(defn.line())

    def remove(self, group: str, event: str) -> None:
        """Disable and delete one probe event."""
        enable = self.tracefs / "events" / group / event / "enable"
        if enable.is_file():
            enable.write_text("0\n", encoding="ascii")
        self._append(f"-:{group}/{event}")

    def last_error(self) -> str | None:
        """The kernel's last probe error message (``error_log``), if it kept one."""
        log = self.tracefs / "error_log"
        try:
            text = log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        for line in reversed(text.splitlines()):
            if "error:" in line:
                return line.split("error:", 1)[1].strip()
        return None


@dataclass
class InstallResult:
    """What :func:`install_probes` did."""

    installed: list[ProbeDefinition] = field(default_factory=list)
    rejected: list[tuple[ProbeDefinition, str]] = field(default_factory=list)
    foreign: list[ProbeDefinition] = field(default_factory=list)


def install_probes(kp: KprobeEvents, probes: Sequence[ProbeDefinition]) -> InstallResult:
    """Define each probe; keep going past the ones the kernel rejects.

    A probe whose event name already exists is left alone (it is not ours,
    and it is not removed afterwards).
    """
    result = InstallResult()
    for defn in probes:
        if kp.exists(defn.group, defn.event):
            result.foreign.append(defn)
            continue
        try:
            kp.add(defn)
        except OSError as err:
            reason = kp.last_error() or err.strerror or str(err)
            result.rejected.append((defn, reason))
            continue
        result.installed.append(defn)
    return result


def remove_probes(kp: KprobeEvents, probes: Sequence[ProbeDefinition]) -> list[str]:
    """Delete the probes ptreplay created, newest first; return what could not be removed."""
    problems = []
    for defn in reversed(probes):
        try:
            kp.remove(defn.group, defn.event)
        except OSError as err:
            why = err.strerror or str(err)
            problems.append(f"could not remove kprobe {defn.group}/{defn.event}: {why}")
    return problems


def present_tracepoints(tracefs: Path, series: str) -> tuple[list[str], list[str]]:
    """The schema's kvm:* tracepoints this kernel has, and the ones it lacks."""
    present: list[str] = []
    missing: list[str] = []
    for name, tp in load_tracepoints(series).items():
        target = present if (tracefs / "events" / tp.system / name).is_dir() else missing
        target.append(f"{tp.system}:{name}")
    return present, missing


def trace_cmd_command(
    trace_cmd: str,
    output: Path,
    events: Sequence[str],
    command: Sequence[str],
    buffer_kb: int | None = DEFAULT_BUFFER_KB,
) -> list[str]:
    """The ``trace-cmd record`` command line.

    :param events: ``system:event`` names, each enabled with ``-e``.
    :param command: the program to trace and its arguments (after ``--``).
    :param buffer_kb: per-CPU ring buffer size in KiB (``-b``), ``None`` to keep the kernel's.
    """
    argv = [trace_cmd, "record", "-o", str(output)]
    if buffer_kb is not None:
        argv += ["-b", str(buffer_kb)]
    for ev in events:
        argv += ["-e", ev]
    return argv + ["--", *command]


def _run(argv: Sequence[str]) -> int:
    """Run trace-cmd to completion, letting Ctrl-C reach it (it stops and writes its file)."""
    proc = subprocess.Popen(list(argv))
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue


def record(
    env: Environment,
    output: Path,
    command: Sequence[str],
    *,
    kernel: str = "auto",
    buffer_kb: int | None = DEFAULT_BUFFER_KB,
    warn: Callable[[str], None] = lambda _msg: None,
    run: Callable[[Sequence[str]], int] = _run,
    kprobe_events: KprobeEvents | None = None,
) -> int:
    """Install the probes, record ``command`` with trace-cmd, remove the probes.

    :param env: the machine (see :func:`detect_environment`).
    :param output: the trace.dat to write.
    :param command: the program to run while recording, with its arguments.
    :param kernel: ``auto`` (this kernel's release) or a series / release string.
    :param warn: receives one line per warning (rejected probe, missing tracepoint, ...).
    :param run: runs the trace-cmd command line and returns its exit status.
    :param kprobe_events: the kprobe interface (default: the one of ``env.tracefs``).
    :returns: trace-cmd's exit status.
    :raises CaptureError: the machine cannot record, or no probe could be installed.
    """
    if not command:
        raise CaptureError("no command to record: give it after --")
    tracefs = check_environment(env)
    series = series_for(env.release if kernel == "auto" else kernel)
    assert env.trace_cmd is not None  # check_environment() guarantees it
    probes = [e.definition for e in load_probe_set(series).entries]
    kp = kprobe_events or KprobeEvents(tracefs)
    result = install_probes(kp, probes)
    try:
        for defn in result.foreign:
            warn(f"kprobe {defn.group}/{defn.event} already exists: left as it is and recorded "
                 "as it is defined (remove it first to use ptreplay's definition)")
        for defn, reason in result.rejected:
            warn(f"kernel rejected kprobe {defn.event} on {defn.symbol}: {reason} "
                 "(an inlined or absent function)")
        if not result.installed and not result.foreign:
            raise CaptureError(f"the kernel accepted none of the {len(probes)} kprobes of the "
                               f"Linux {series} set")
        tracepoints, missing = present_tracepoints(tracefs, series)
        for name in missing:
            warn(f"tracepoint {name} does not exist in this kernel: not recorded")
        events = [f"{d.group}:{d.event}" for d in result.installed + result.foreign]
        argv = trace_cmd_command(env.trace_cmd, output, events + tracepoints, command, buffer_kb)
        status = run(argv)
    finally:
        for problem in remove_probes(kp, result.installed):
            warn(problem)
    if status != 0:
        raise CaptureError(f"trace-cmd record exited with status {status}")
    return status
