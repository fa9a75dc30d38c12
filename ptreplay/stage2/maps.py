"""Ownership and mapping maps of a trace's stage-2 roots (``ptreplay replay``).

The maps are the checkers' (:mod:`ptreplay.checks.maps`), made from the
tables they rebuild from the merged effect stream of
:func:`~ptreplay.stage2.checking.check_trace`: so they show what the trace
did where it observed it, and what the model says for the rest. Every root
live at the chosen point is shown as it is there; a root destroyed before it
as it was just before its destroy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ptreplay.checks.engine import EffectChecker
from ptreplay.checks.maps import root_maps
from ptreplay.errors import InputError
from ptreplay.stage2.checking import check_trace
from ptreplay.stage2.replay import ReplayConfig

__all__ = ["render_maps"]


def _root_text(checker: EffectChecker, pgd: int, layout: str) -> str:
    root = checker.shadow.roots.get(pgd)
    if root is None:
        return ""
    return root_maps(checker.shadow, root, checker.profile, checker.fwb.get(pgd, False), layout)


def render_maps(path: str, config: ReplayConfig | None = None, *, until: int | None = None,
                root: int | None = None, layout: str = "all",
                progress: Callable[[int], None] | None = None) -> str:
    """The maps of the trace at ``path`` as text.

    :param until: the state after the operations that returned by this timestamp (ns).
    :param root: only the root whose pgd is this (kernel virtual address, or the
        maps' own address for it).
    :param layout: one of :data:`~ptreplay.checks.maps.LAYOUTS`.
    """
    run = check_trace(path, config, progress=progress, until_ts=until,
                      snapshot=lambda checker, pgd: _root_text(checker, pgd, layout))
    replay = run.replay
    offset = replay.linear_offset or 0
    by_pgd = {r.pgd - offset: r for r in replay.roots.values() if r.pgd is not None}
    when = "at the end of the trace" if until is None else f"after ts {until}"
    out = [f"{path}: {replay.kernel.message()}; replayed with {replay.profile.name}"]
    out += [f"  {key.removeprefix('platform ')}={text}" for key, text in run.notes.items()
            if key.startswith("platform ")]
    out.append(f"  table pages and entries below: kernel virtual address - {offset:#x}")
    shown: list[tuple[int, str, str]] = []
    for pgd, text in run.snapshots:
        shown.append((pgd, "destroyed: as it was before its destroy", text))
    for pgd in sorted(run.checker.shadow.roots):
        shown.append((pgd, f"live {when}", _root_text(run.checker, pgd, layout)))
    if root is not None:
        shown = [s for s in shown if root in (s[0], s[0] + offset)]
        if not shown:
            raise InputError(f"no stage-2 root with pgd {root:#x} ({when})", path)
    for pgd, state, text in shown:
        info: Any = by_pgd.get(pgd)
        head = f"stage-2 root at pgd {pgd + offset:#x}"
        if info is not None:
            head += f" (pgt {info.pgt:#x}"
            if info.vm is not None:
                head += f", VM {info.vm:#x}"
            head += ")"
        out.append(f"\n{head}: {state}")
        out.append(text.rstrip("\n"))
    if not shown:
        out.append(f"\nno stage-2 root {when}")
    return "\n".join(out) + "\n"
