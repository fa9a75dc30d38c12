"""Errors that the command line reports as one line and exit code 2.

Every problem with the user's input (a corrupt trace, a bad scenario line, an
unknown option value) is raised as an :class:`InputError`. The CLI prints
``ptreplay: error: <message>`` and exits with status 2; it never shows a
traceback for them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable


class InputError(Exception):
    """Bad input: says what is wrong and where.

    :param what: what is wrong, in a few words ("bad magic", "truncated page").
    :param source: the file (or ``-``) the input came from, if known.
    :param offset: byte offset in ``source`` where the problem was found.
    :param line: 1-based line number in a text input.
    :param index: 0-based event index in a trace.
    """

    def __init__(
        self,
        what: str,
        source: str | None = None,
        *,
        offset: int | None = None,
        line: int | None = None,
        index: int | None = None,
    ) -> None:
        self.what = what
        self.source = source
        self.offset = offset
        self.line = line
        self.index = index
        super().__init__(self.message())

    def message(self) -> str:
        """The one-line message: ``FILE: what, at offset N`` (or line / event)."""
        text = self.what
        if self.offset is not None:
            text += f", at offset {self.offset}"
        if self.line is not None:
            text += f", at line {self.line}"
        if self.index is not None:
            text += f", at event {self.index}"
        if self.source is not None:
            text = f"{self.source}: {text}"
        return text

    def located(self, source: str) -> InputError:
        """Return this error with ``source`` filled in if it was missing."""
        if self.source is None:
            self.source = source
            self.args = (self.message(),)
        return self


class TraceFormatError(InputError):
    """A trace file (trace.dat, tracefs copy, casemate log, effect log) is malformed."""


class ScenarioError(InputError):
    """A model scenario (JSON lines of operations) is malformed."""


def run_command(body: Callable[[], object]) -> None:
    """Run a command's body the way the command line promises.

    Bad input (:class:`InputError`) prints ``ptreplay: error: <what>, at
    offset N`` and exits 2; a reader that went away (``ptreplay events T |
    head``) ends the output quietly with exit 1; Ctrl-C exits 130 without a
    traceback (as typer's standalone mode does); running out of memory is
    one line and exit 2.
    """
    try:
        body()
        sys.stdout.flush()
    except InputError as err:
        sys.stderr.write(f"ptreplay: error: {err.message()}\n")
        sys.exit(2)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except MemoryError:
        sys.stderr.write("ptreplay: error: out of memory\n")
        sys.exit(2)
