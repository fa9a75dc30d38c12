"""Reader of effect logs: the JSON-lines format of shared/conformance/oracle/FORMAT.md.

An effect log is what ``ptreplay model run`` prints and what the kernel
oracle's ``expected/<profile>/*.jsonl.gz`` files hold: for every operation, an
op line (the operation's fields with ``"ret"`` appended) followed by its
effect lines (``{"ev": ...}``). :func:`read_effect_log` turns it into
:class:`~ptreplay.checks.stream.Step` records, one per operation, streaming:
only the current operation's effects are in memory. gzip-compressed input is
recognised by its magic number.

Event indexes are 0-based line numbers (line ``n`` is event ``n - 1``), so a
finding's index points at the line to look at. Blank lines are skipped.
Anything else that is not a JSON object with ``"op"`` or ``"ev"`` is an
:class:`~ptreplay.errors.TraceFormatError` naming the line.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from typing import IO, Any

from ptreplay.checks.stream import Operation, Step
from ptreplay.effects import effect_from_json
from ptreplay.errors import TraceFormatError

__all__ = ["read_effect_log", "looks_like_effect_log", "parse_op"]

_GZIP_MAGIC = b"\x1f\x8b"


def looks_like_effect_log(head: bytes) -> bool:
    """Whether the first bytes of a file look like an effect log (JSON lines or gzip)."""
    if head.startswith(_GZIP_MAGIC):
        return True
    text = head.lstrip(b" \t\r\n\xef\xbb\xbf")
    return text.startswith(b"{")


def _text_lines(stream: IO[bytes]) -> Iterator[bytes]:
    head = stream.peek(2)[:2] if hasattr(stream, "peek") else b""
    if head == _GZIP_MAGIC:
        yield from gzip.GzipFile(fileobj=stream)  # type: ignore[arg-type]
    else:
        yield from stream


def parse_op(obj: dict[str, Any], index: int) -> Operation:
    """The :class:`Operation` of one op line (its ``ret`` read as a number when it is one)."""
    name = obj["op"]
    if not isinstance(name, str):
        raise ValueError("op: expected a string")
    ret = obj.get("ret")
    if isinstance(ret, str):
        ret = int(ret, 0)
    elif isinstance(ret, bool) or not (ret is None or isinstance(ret, int)):
        raise ValueError("ret: expected a number or null")
    args = {k: v for k, v in obj.items() if k not in ("op", "ret")}
    return Operation(name, args, ret, index, line=index + 1)


def read_effect_log(stream: IO[bytes], source: str = "-") -> Iterator[Step]:
    """Yield one :class:`Step` per operation of the effect log on ``stream``.

    Effects before the first operation form a step whose ``op`` is None.
    Raises :class:`~ptreplay.errors.TraceFormatError` for a malformed line.
    """
    if not hasattr(stream, "peek"):
        stream = io.BufferedReader(stream)  # type: ignore[arg-type]
    step: Step | None = None
    lineno = 0
    try:
        for raw in _text_lines(stream):
            lineno += 1
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as err:
                raise TraceFormatError(f"not a JSON line ({_short(err)})", source,
                                       line=lineno) from None
            if not isinstance(obj, dict):
                raise TraceFormatError("expected a JSON object", source, line=lineno)
            index = lineno - 1
            try:
                if "ev" in obj:
                    effect = effect_from_json(obj)
                    if step is None:
                        step = Step(None, effect_base=index)
                    if step.effect_indexes is None and \
                            (step.effect_base or 0) + len(step.effects) != index:
                        step.effect_indexes = [(step.effect_base or 0) + i
                                               for i in range(len(step.effects))]
                    if step.effect_indexes is not None:
                        step.effect_indexes.append(index)
                    step.effects.append(effect)
                elif "op" in obj:
                    op = parse_op(obj, index)
                    if step is not None:
                        yield step
                    step = Step(op, effect_base=index + 1)
                else:
                    raise TraceFormatError("line has neither \"op\" nor \"ev\"", source,
                                           line=lineno)
            except (KeyError, ValueError, TypeError) as err:
                raise TraceFormatError(f"bad {'effect' if 'ev' in obj else 'op'} line: "
                                       f"{_short(err)}", source, line=lineno) from None
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise TraceFormatError(f"cannot read: {_short(err)}", source, line=lineno + 1) from None
    if step is not None:
        yield step


def _short(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    if isinstance(err, KeyError):
        text = f"missing field {text}"
    return text.splitlines()[0][:200]
