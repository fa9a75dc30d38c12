"""The ``ptreplay`` command line: a thin layer over the library.

:func:`main` runs the typer application and turns every
:class:`~ptreplay.errors.InputError` into one line on stderr,
``ptreplay: error: <what>, at offset N``, and exit status 2.
"""

from __future__ import annotations

from ptreplay.cli.app import app
from ptreplay.errors import run_command

# Importing a command module registers its commands on ``app``: one line per module.
# isort: split
import ptreplay.cli.capture  # noqa: F401  (ptreplay capture kprobes|record)
import ptreplay.cli.check  # noqa: F401  (ptreplay check)
import ptreplay.cli.diff  # noqa: F401  (ptreplay diff)
import ptreplay.cli.events  # noqa: F401  (ptreplay events)
import ptreplay.cli.gen  # noqa: F401  (ptreplay gen)
import ptreplay.cli.info  # noqa: F401  (ptreplay info)
import ptreplay.cli.maps  # noqa: F401  (ptreplay maps)
import ptreplay.cli.model  # noqa: F401  (ptreplay model run)
import ptreplay.cli.replay  # noqa: F401  (ptreplay replay)

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> None:
    """Run the command line; exit 2 with one line on bad input, never a traceback."""
    run_command(lambda: app(args=argv, prog_name="ptreplay"))
