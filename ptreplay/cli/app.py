"""The typer application and its sub-command groups.

Command modules (``ptreplay/cli/<command>.py``) import :data:`app` (or a group
such as :data:`model_app`) and decorate their functions; ``ptreplay.cli``
imports every command module once, which registers them. The helpers below
are what several commands share.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ptreplay.errors import InputError

app = typer.Typer(
    name="ptreplay",
    help="Replay arm64 KVM stage-2 page-table traces through a model of pgtable.c and find bugs.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

model_app = typer.Typer(
    help="Run the model of pgtable.c directly (what would the kernel do?).",
    no_args_is_help=True,
)
app.add_typer(model_app, name="model")


def write_output(text: str, output: Path | None) -> None:
    """Write ``text`` to ``output``, or to stdout."""
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as err:
        raise InputError(f"cannot write: {err.strerror}", str(output)) from None


def parse_root(text: str) -> int:
    """The pgd a ``--root PGD`` option names (hex)."""
    try:
        return int(text, 16)
    except ValueError:
        raise InputError(f"--root: not a hex address: {text!r}") from None
