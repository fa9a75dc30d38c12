"""The typer application and its sub-command groups.

Command modules (``ptreplay/cli/<command>.py``) import :data:`app` (or a group
such as :data:`model_app`) and decorate their functions; ``ptreplay.cli``
imports every command module once, which registers them.
"""

from __future__ import annotations

import typer

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
