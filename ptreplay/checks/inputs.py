"""Input sources for ``ptreplay check`` and ``ptreplay maps``: detection and running.

Each source knows how to recognise its files from their first bytes and how
to run the checker stack over them. Adding an input kind (the trace reader of
issue 6) is one module with a ``run`` function and one :class:`InputSource`
in :data:`SOURCES` (or a :func:`register_source` call); the CLI picks the new
name up for ``--input`` and for detection. ``run`` is named as
``"module:function"`` and imported only when used, so this module does not
depend on the layers above the checkers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, NamedTuple

from ptreplay.checks.findings import Finding
from ptreplay.checks.shadow import Shadow
from ptreplay.errors import InputError
from ptreplay.model.profiles import DEFAULT_PROFILE, Profile

__all__ = ["CheckOptions", "CheckRun", "InputSource", "SOURCES", "register_source",
           "detect_source", "run_source", "TRACE_DAT_MAGIC"]

TRACE_DAT_MAGIC = b"\x17\x08\x44tracing"


@dataclass
class CheckOptions:
    """How to run a check.

    :param profile: kernel profile for inputs that need one (effect logs, traces).
    :param at_index: stop after the event with this index (maps at a point).
    :param progress: called now and then with the number of input bytes consumed
        (events read, for traces).
    :param replay: for traces: the replay's profile and platform decisions
        (:class:`ptreplay.stage2.replay.ReplayConfig`); None: from the trace.
    """

    profile: str = DEFAULT_PROFILE
    at_index: int | None = None
    progress: Callable[[int], None] | None = None
    replay: Any = None


@dataclass
class CheckRun:
    """What a run leaves: the findings, and the shadow tables for the maps."""

    kind: str
    findings: list[Finding]
    events: int
    shadow: Shadow
    profile: Profile
    profile_name: str | None
    notes: dict[str, str] = field(default_factory=dict)
    fwb: dict[int, bool] = field(default_factory=dict)


class InputSource(NamedTuple):
    """One kind of input.

    :param name: the ``--input`` value.
    :param description: one line for ``--help``.
    :param detect: whether the first bytes of a file are this kind of input.
    :param run: ``"module:function"``; the function takes (binary stream,
        source name, :class:`CheckOptions`) and returns a :class:`CheckRun`.
    :param uses_profile: whether ``--profile`` applies.
    """

    name: str
    description: str
    detect: Callable[[bytes], bool]
    run: str
    uses_profile: bool = True


def _looks_like_effects(head: bytes) -> bool:
    from ptreplay.formats.effectlog import looks_like_effect_log
    return looks_like_effect_log(head)


def _looks_like_casemate(head: bytes) -> bool:
    from ptreplay.formats.casemate import looks_like_casemate
    return looks_like_casemate(head)


SOURCES: dict[str, InputSource] = {}


def register_source(source: InputSource) -> None:
    """Make ``source`` available to ``--input`` and to detection."""
    SOURCES[source.name] = source


register_source(InputSource(
    "effects", "effect log: JSON lines of operations and effects (ptreplay model run, the "
    "kernel oracle's expected/*.jsonl.gz)", _looks_like_effects,
    "ptreplay.checks.runners:run_effect_log"))
register_source(InputSource(
    "casemate", "casemate log: s-expression records of stores, barriers, TLBIs, locks and "
    "hints (rems-project/casemate)", _looks_like_casemate,
    "ptreplay.checks.runners:run_casemate_log", uses_profile=False))
register_source(InputSource(
    "trace", "trace-cmd trace.dat (or raw tracefs folder) of the capture kit's probes: "
    "replayed through the model of pgtable.c, checked on what the trace observed",
    lambda head: head.startswith(TRACE_DAT_MAGIC), "ptreplay.stage2.checking:run_trace"))


def detect_source(head: bytes, source: str) -> InputSource:
    """The input source whose files start like ``head``; an InputError if none does."""
    for candidate in SOURCES.values():
        if candidate.detect(head):
            return candidate
    if not head.strip():
        raise InputError("empty input", source)
    names = ", ".join(SOURCES)
    raise InputError(f"cannot tell what kind of input this is (known: {names}); give --input",
                     source)


def run_source(source: InputSource, stream: IO[bytes], name: str,
               options: CheckOptions) -> CheckRun:
    """Run the checker stack on ``stream`` as input of kind ``source``."""
    module, _, func = source.run.partition(":")
    runner = getattr(importlib.import_module(module), func)
    return runner(stream, name, options)  # type: ignore[no-any-return]
