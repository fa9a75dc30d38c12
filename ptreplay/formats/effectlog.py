"""Reader of effect logs: the JSON-lines format of shared/conformance/oracle/FORMAT.md.

An effect log is what ``ptreplay model run`` prints and what the kernel
oracle's ``expected/<profile>/*.jsonl.gz`` files hold: for every operation, an
op line (the operation's fields with ``"ret"`` appended) followed by its
effect lines (``{"ev": ...}``). :func:`read_effect_lines` reads it line by
line, streaming, into :class:`EffectLine` records (an :class:`OpLine` or an
effect of :mod:`ptreplay.effects`); :func:`ptreplay.checks.stream.read_effect_log`
groups them into one step per operation. gzip-compressed input is recognised
by its magic number.

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
from typing import IO, Any, NamedTuple

from ptreplay.effects import Effect, effect_from_json
from ptreplay.errors import TraceFormatError

__all__ = ["read_effect_lines", "looks_like_effect_log", "parse_op", "OpLine", "EffectLine"]

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
        yield from gzip.GzipFile(fileobj=stream)  # type: ignore[arg-type,type-var]
    else:
        yield from stream


class OpLine(NamedTuple):
    """An op line: the operation's name, its other fields (``ret`` apart), ``ret``."""

    name: str
    args: dict[str, Any]
    ret: Any


class EffectLine(NamedTuple):
    """One non-blank line: its 0-based index, and either ``op`` or ``effect``."""

    index: int  # type: ignore[assignment]  # (shadows tuple.index)
    op: OpLine | None
    effect: Effect | None


def parse_op(obj: dict[str, Any]) -> OpLine:
    """The :class:`OpLine` of one parsed op line (``ret`` read as a number when it is one)."""
    name = obj["op"]
    if not isinstance(name, str):
        raise ValueError("op: expected a string")
    ret = obj.get("ret")
    if isinstance(ret, str):
        ret = int(ret, 0)
    elif isinstance(ret, bool) or not (ret is None or isinstance(ret, int)):
        raise ValueError("ret: expected a number or null")
    args = {k: v for k, v in obj.items() if k not in ("op", "ret")}
    return OpLine(name, args, ret)


def read_effect_lines(stream: IO[bytes], source: str = "-") -> Iterator[EffectLine]:
    """Yield the op and effect lines of the effect log on ``stream``, one at a time.

    Raises :class:`~ptreplay.errors.TraceFormatError` for a malformed line.
    """
    if not hasattr(stream, "peek"):
        stream = io.BufferedReader(stream)  # type: ignore[arg-type,type-var]
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
            try:
                if "ev" in obj:
                    yield EffectLine(lineno - 1, None, effect_from_json(obj))
                elif "op" in obj:
                    yield EffectLine(lineno - 1, parse_op(obj), None)
                else:
                    raise TraceFormatError("line has neither \"op\" nor \"ev\"", source,
                                           line=lineno)
            except (KeyError, ValueError, TypeError) as err:
                raise TraceFormatError(f"bad {'effect' if 'ev' in obj else 'op'} line: "
                                       f"{_short(err)}", source, line=lineno) from None
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise TraceFormatError(f"cannot read: {_short(err)}", source, line=lineno + 1) from None


def _short(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    if isinstance(err, KeyError):
        text = f"missing field {text}"
    return text.splitlines()[0][:200]
