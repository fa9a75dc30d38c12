"""Errors that the command line reports as one line and exit code 2.

Every problem with the user's input (a corrupt trace, a bad scenario line, an
unknown option value) is raised as an :class:`InputError`. The CLI prints
``ptreplay: error: <message>`` and exits with status 2; it never shows a
traceback for them.
"""

from __future__ import annotations


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
