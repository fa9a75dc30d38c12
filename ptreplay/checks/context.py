"""The checkers' shared cursor: which event is being checked, and the findings so far."""

from __future__ import annotations

from ptreplay.checks.findings import Finding
from ptreplay.checks.stream import Operation, format_op

__all__ = ["Context"]


class Context:
    """Where the check is: the current event, its CPU and timestamp, the operation.

    The engines update the fields as they go; checkers call :meth:`report`,
    which fills a :class:`Finding`'s location from them.
    """

    __slots__ = ("index", "line", "cpu", "ts", "op", "src", "raw", "findings", "_op_text",
                 "_op_of_text")

    def __init__(self) -> None:
        self.index: int | None = None
        self.line: int | None = None
        self.cpu: int | None = None
        self.ts: int | None = None
        self.op: Operation | None = None
        self.src: str | None = None
        # a casemate fast path sets only index, line and the raw record groups
        # (tid second, src last); cpu and src are derived from them when reporting
        self.raw: tuple | None = None
        self.findings: list[Finding] = []
        self._op_text: str | None = None
        self._op_of_text: Operation | None = None

    def op_text(self, op: Operation | None = None) -> str | None:
        """The operation as text (cached for the current one)."""
        op = op if op is not None else self.op
        if op is None:
            return None
        if op is not self._op_of_text:
            self._op_of_text = op
            self._op_text = format_op(op)
        return self._op_text

    def report(self, kind: str, explanation: str, *, index: int | None = -1,
               op: Operation | None = None, line: int | None = -1, cpu: int | None = -1,
               ts: int | None = -1, **where: object) -> Finding:
        """Record a finding at the current event (or at ``index``/``op`` if given)."""
        use_op = op if op is not None else self.op
        raw = self.raw
        if raw is not None:
            self.cpu = int(raw[1])
            self.src = raw[-1]
        if index == -1:
            index = self.index
            if line == -1:
                line = self.line
        if line == -1:
            line = None
        finding = Finding(
            kind=kind,
            explanation=explanation,
            index=index,
            cpu=self.cpu if cpu == -1 else cpu,
            ts=self.ts if ts == -1 else ts,
            op=self.op_text(use_op),
            op_index=use_op.index if use_op is not None else None,
            line=line,
            src=self.src if index == self.index else None,
            **where,  # type: ignore[arg-type]
        )
        self.findings.append(finding)
        return finding
