"""Binary layouts derived from Construct schemas, and a parser for them that needs no Construct.

File layouts are declared once, as Construct (e.g.
:mod:`ptreplay.formats.tracedat.schema`). Importing Construct costs 20-40 ms,
which a command that prints a small trace cannot afford, so the readers use
the *derived* form: :func:`derive` turns a Construct schema into plain data
(a tuple of steps), a module generated from those steps stores them
(:mod:`ptreplay.formats.tracedat.layouts`, with a test that fails when it is
stale), and :class:`Layout` parses with :mod:`struct` from them.

Steps (``name`` is None for an anonymous value)::

    ("ints", (name, ...), fmt)            consecutive integers: one struct format
    ("cstring", name, encoding)           NUL-terminated string
    ("const", name, bytes)                fixed bytes that must match
    ("prefixed_bytes", name, fmt)         an integer length, then that many bytes
    ("array", name, fmt, steps)           an integer count, then that many items

Supported Construct classes: ``FormatField`` (``Int16ul`` ...), ``Struct``
(of named members), ``CString``, ``Const`` of bytes,
``Prefixed(int, GreedyBytes)`` and ``PrefixedArray(int, ...)``. Anything
else makes :func:`derive` raise, so an unsupported schema cannot be derived
wrongly.
"""

from __future__ import annotations

import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["derive", "Layout", "LayoutError", "Record"]


class LayoutError(ValueError):
    """The bytes do not fit the layout: ``what`` and the offset where it was noticed."""

    def __init__(self, what: str, offset: int) -> None:
        super().__init__(f"{what} at {offset}")
        self.what = what
        self.offset = offset


class Record:
    """A parsed struct: its members as attributes (like a Construct ``Container``)."""

    def __init__(self, **members: object) -> None:
        self.__dict__.update(members)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and vars(self) == vars(other)

    def __repr__(self) -> str:
        return "Record(" + ", ".join(f"{k}={v!r}" for k, v in vars(self).items()) + ")"


# ---------------------------------------------------------------------------
# deriving (needs Construct)


def derive(con: object) -> tuple:
    """The steps of Construct schema ``con`` (see the module docstring).

    :raises NotImplementedError: ``con`` uses a class this module does not derive.
    """
    import construct as cs

    def int_fmt(sub: object) -> str:
        if not isinstance(sub, cs.FormatField):
            raise NotImplementedError(f"not an integer: {sub!r}")
        return sub.fmtstr

    def one(name: str | None, sub: object) -> list[tuple]:
        if isinstance(sub, cs.Renamed):
            return one(sub.name, sub.subcon)
        if isinstance(sub, cs.FormatField):
            return [("ints", (name,), sub.fmtstr)]
        if (isinstance(sub, cs.StringEncoded) and isinstance(sub.subcon, cs.NullTerminated)
                and sub.subcon.term == b"\0" and sub.subcon.subcon is cs.GreedyBytes
                and not sub.subcon.include and sub.subcon.consume and sub.subcon.require):
            return [("cstring", name, sub.encoding)]
        if isinstance(sub, cs.Const) and isinstance(sub.value, bytes):
            return [("const", name, sub.value)]
        if isinstance(sub, cs.Prefixed) and sub.subcon is cs.GreedyBytes and not sub.includelength:
            return [("prefixed_bytes", name, int_fmt(sub.lengthfield))]
        if isinstance(sub, cs.FocusedSeq) and _is_prefixed_array(cs, sub):
            count = sub.subcons[0].subcon.subcon  # "count" / Rebuild(countfield, ...)
            items = sub.subcons[1].subcon.subcon  # "items" / Array(this.count, subcon)
            return [("array", name, int_fmt(count), derive(items))]
        if isinstance(sub, cs.Struct):
            if name is not None:
                raise NotImplementedError("nested structs are not derived")
            steps: list[tuple] = []
            for member in sub.subcons:
                steps += one(member.name if isinstance(member, cs.Renamed) else None,
                             member.subcon if isinstance(member, cs.Renamed) else member)
            return steps
        raise NotImplementedError(f"cannot derive {type(sub).__name__}")

    return _merge_ints(one(None, con))


def _is_prefixed_array(cs, sub) -> bool:
    """``PrefixedArray(count, item)`` is built as ``FocusedSeq("items", "count" /
    Rebuild(count, ...), "items" / Array(this.count, item))``."""
    names = [getattr(m, "name", None) for m in sub.subcons]
    return (sub.parsebuildfrom == "items" and names == ["count", "items"]
            and isinstance(sub.subcons[0].subcon, cs.Rebuild)
            and isinstance(sub.subcons[1].subcon, cs.Array))


def _merge_ints(steps: list[tuple]) -> tuple:
    """Join consecutive integer steps of the same byte order into one struct format."""
    out: list[tuple] = []
    for step in steps:
        if (step[0] == "ints" and out and out[-1][0] == "ints"
                and out[-1][2][0] == step[2][0]):
            _, names, fmt = out[-1]
            out[-1] = ("ints", names + step[1], fmt + step[2][1:])
        else:
            out.append(step)
    return tuple(out)


# ---------------------------------------------------------------------------
# parsing (no Construct)


class Layout:
    """A parser for derived steps: ``parse(data, pos, end) -> (value, new_pos)``.

    ``value`` is the value itself for a lone anonymous step (an integer, a
    length-prefixed blob), a :class:`Record` of the named members otherwise.
    """

    __slots__ = ("steps", "ops", "size", "single")

    def __init__(self, steps: tuple) -> None:
        self.steps = steps
        self.ops = [_compile(step) for step in steps]
        sizes = [op[2].size if op[0] == "ints" else None for op in self.ops]
        self.size: int | None = None if None in sizes else sum(s for s in sizes if s)
        # a lone anonymous value (``u32``, ``sized64``) parses to that value
        self.single = len(steps) == 1 and steps[0][1] in (None, (None,))

    def parse(self, data: Any, pos: int = 0, end: int | None = None) -> tuple[Any, int]:
        """Parse at ``data[pos:]`` (not past ``end``).

        :raises LayoutError: too few bytes, a constant that does not match, a
            string without NUL or not in its encoding.
        """
        if end is None:
            end = len(data)
        if self.single and self.steps[0][0] == "ints":
            st = self.ops[0][2]
            if pos + st.size > end:
                raise LayoutError(f"needs {st.size} bytes", pos)
            return st.unpack_from(data, pos)[0], pos + st.size
        members: dict = {}
        pos = _run(self.ops, data, pos, end, members)
        if self.single:
            return members[None], pos
        members.pop(None, None)
        return Record(**members), pos

    def parse_bytes(self, data: bytes) -> Any:
        """Parse all of ``data`` (what Construct's ``parse`` does)."""
        return self.parse(data, 0, len(data))[0]


def _compile(step: tuple) -> tuple:
    kind = step[0]
    if kind == "ints":
        return ("ints", step[1], struct.Struct(step[2]))
    if kind == "prefixed_bytes":
        return ("prefixed_bytes", step[1], struct.Struct(step[2]))
    if kind == "array":
        return ("array", step[1], struct.Struct(step[2]), [_compile(s) for s in step[3]])
    return step


def _run(ops: list, data, pos: int, end: int, members: dict) -> int:
    """Parse ``ops`` into ``members`` (anonymous values under None); the new position."""
    for op in ops:
        kind, name = op[0], op[1]
        if kind == "ints":
            st = op[2]
            if pos + st.size > end:
                raise LayoutError(f"needs {st.size} bytes", pos)
            for n, v in zip(name, st.unpack_from(data, pos), strict=True):
                if n is not None:
                    members[n] = v
            pos += st.size
        elif kind == "cstring":
            nul = data.find(b"\0", pos, end)
            if nul < 0:
                raise LayoutError("string without NUL", pos)
            try:
                value: object = bytes(data[pos:nul]).decode(op[2])
            except UnicodeDecodeError:
                raise LayoutError(f"string not in {op[2]}", pos) from None
            pos = nul + 1
            members[name] = value
        elif kind == "const":
            want = op[2]
            if bytes(data[pos:pos + len(want)]) != want:
                raise LayoutError(f"expected {want!r}", pos)
            pos += len(want)
            if name is not None:
                members[name] = want
        elif kind == "prefixed_bytes":
            st = op[2]
            if pos + st.size > end:
                raise LayoutError(f"needs {st.size} bytes", pos)
            n = st.unpack_from(data, pos)[0]
            pos += st.size
            if pos + n > end:
                raise LayoutError(f"needs {n} bytes", pos)
            members[name] = bytes(data[pos:pos + n])
            pos += n
        else:  # array
            st, item_ops = op[2], op[3]
            if pos + st.size > end:
                raise LayoutError(f"needs {st.size} bytes", pos)
            count = st.unpack_from(data, pos)[0]
            pos += st.size
            if count > end - pos:  # every item takes at least a byte
                raise LayoutError(f"{count} items cannot fit", pos)
            items = []
            for _ in range(count):
                item: dict = {}
                pos = _run(item_ops, data, pos, end, item)
                item.pop(None, None)
                items.append(Record(**item))
            members[name] = items
    return pos
