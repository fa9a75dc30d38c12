"""ftrace event ``format`` files: field layouts as Construct, fast decoders derived from them.

The kernel describes every trace event in ``events/<system>/<event>/format``
(kernel/trace/trace_events.c, ``f_show``)::

    name: sched_switch
    ID: 316
    format:
        field:unsigned short common_type;   offset:0;   size:2; signed:0;
        ...
        field:char prev_comm[16];   offset:8;   size:16;    signed:0;

    print fmt: "prev_comm=%s ...", REC->prev_comm, ...

:func:`parse_format` turns that text into an :class:`EventFormat`: the fields
with the flags libtraceevent derives from their C type (array, string,
``__data_loc`` / ``__rel_loc`` dynamic, long, pointer), and the print format.
The byte layout of an event is declared once, as Construct
(:meth:`EventFormat.layout`); the per-event hot path uses
:meth:`EventFormat.decoder`, a ``struct.Struct`` built from the very same
Construct ``FormatField`` objects, so the two can never disagree.
"""

from __future__ import annotations

import re
import struct

from ptreplay.errors import TraceFormatError
from ptreplay.values import Frozen, Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    import construct as cs

__all__ = [
    "EventFormat",
    "Field",
    "parse_format",
    "int_subcon",
    "int_code",
    "field_code",
    "PROBE_FETCH_TYPES",
]

#: kprobe/uprobe fetch-argument types (kernel/trace/trace_probe.c) -> (size, signed, hex).
PROBE_FETCH_TYPES: dict[str, tuple[int, bool, bool]] = {
    "u8": (1, False, False), "u16": (2, False, False),
    "u32": (4, False, False), "u64": (8, False, False),
    "s8": (1, True, False), "s16": (2, True, False),
    "s32": (4, True, False), "s64": (8, True, False),
    "x8": (1, False, True), "x16": (2, False, True),
    "x32": (4, False, True), "x64": (8, False, True),
}

_INT_CODES = {1: "b", 2: "h", 4: "l", 8: "q"}


def int_code(size: int, signed: bool) -> str:
    """The :mod:`struct` code of a ``size``-byte integer (what :func:`int_subcon` holds)."""
    code = _INT_CODES[size]
    return code if signed else code.upper()


def int_subcon(size: int, signed: bool, little: bool) -> cs.FormatField:
    """The Construct integer of ``size`` bytes: a ``FormatField`` whose ``fmtstr``
    is also what the fast decoders hand to :mod:`struct`."""
    import construct as cs

    return cs.FormatField("<" if little else ">", int_code(size, signed))


def field_code(f: Field) -> str | None:
    """The :mod:`struct` code of a plain integer field (its :meth:`EventFormat.field_subcon`
    is that ``FormatField``), None for arrays, dynamic and odd-sized fields."""
    if f.is_dynamic or f.is_array or f.size not in _INT_CODES:
        return None
    return int_code(f.size, f.signed)


class Field(Frozen):
    """One ``field:`` line of a format file, with libtraceevent's type flags.

    :param type: the C type as libtraceevent spells it (``char[16]``,
        ``__data_loc char[]``, ``unsigned long``).
    """

    __slots__ = _fields = ("name", "type", "offset", "size", "signed", "is_array", "is_string",
                           "is_dynamic", "is_relative", "is_long", "is_pointer", "arraylen",
                           "elementsize")
    name: str
    type: str
    offset: int
    size: int
    signed: bool
    is_array: bool
    is_string: bool
    is_dynamic: bool
    is_relative: bool
    is_long: bool
    is_pointer: bool
    arraylen: int
    elementsize: int

    def __init__(self, name: str, type: str, offset: int, size: int, signed: bool,
                 is_array: bool = False, is_string: bool = False, is_dynamic: bool = False,
                 is_relative: bool = False, is_long: bool = False, is_pointer: bool = False,
                 arraylen: int = 0, elementsize: int = 0) -> None:
        self._assign(name, type, offset, size, signed, is_array, is_string, is_dynamic,
                     is_relative, is_long, is_pointer, arraylen, elementsize)

    @property
    def is_number(self) -> bool:
        """A plain integer field (not an array, not a dynamic location)."""
        return not (self.is_array or self.is_dynamic)


class PrintArg(Value):
    """One top-level argument of the print format, as far as raw printing needs it.

    ``field`` is the field name when the argument is ``REC->name`` (possibly in
    parentheses and behind type casts, whose types are in ``casts``, outermost
    first); otherwise ``None``. ``number`` is set for a plain integer atom.
    """

    __slots__ = _fields = ("text", "field", "casts", "number")

    def __init__(self, text: str, field: str | None = None, casts: tuple[str, ...] = (),
                 number: int | None = None) -> None:
        self.text = text
        self.field = field
        self.casts = casts
        self.number = number


class PrintPart(Value):
    """One piece of the parsed print format (libtraceevent ``struct tep_print_parse``).

    ``kind`` is "string", "digit", "pointer" or "strarg".
    """

    __slots__ = _fields = ("kind", "text", "arg", "len_arg", "ls")

    def __init__(self, kind: str, text: str, arg: PrintArg | None = None,
                 len_arg: PrintArg | None = None, ls: int = 0) -> None:
        self.kind = kind
        self.text = text
        self.arg = arg
        self.len_arg = len_arg
        self.ls = ls


class EventFormat(Value):
    """An event's layout and print format, parsed from its ``format`` text.

    ``by_name`` maps field names (common fields included) to fields; it is
    filled from the two field lists.
    """

    __slots__ = _fields = ("system", "name", "id", "common_fields", "fields", "print_fmt",
                           "print_args", "print_parts", "print_failed", "text", "by_name")

    def __init__(self, system: str, name: str, id: int, common_fields: tuple[Field, ...],
                 fields: tuple[Field, ...], print_fmt: str, print_args: tuple[PrintArg, ...],
                 print_parts: tuple[PrintPart, ...], print_failed: bool, text: str,
                 by_name: dict[str, Field] | None = None) -> None:
        self.system = system
        self.name = name
        self.id = id
        self.common_fields = common_fields
        self.fields = fields
        self.print_fmt = print_fmt
        self.print_args = print_args
        self.print_parts = print_parts
        self.print_failed = print_failed
        self.text = text
        self.by_name = {} if by_name is None else by_name
        for f in common_fields + fields:
            self.by_name.setdefault(f.name, f)

    @property
    def full_name(self) -> str:
        """``system:name``."""
        return f"{self.system}:{self.name}"

    def field(self, name: str) -> Field:
        """The field called ``name`` (common fields included)."""
        try:
            return self.by_name[name]
        except KeyError:
            raise KeyError(f"event {self.full_name} has no field {name!r}") from None

    # -- Construct layout -------------------------------------------------

    def field_subcon(self, f: Field, little: bool) -> cs.Construct:
        """Construct for the bytes of field ``f`` at its offset (value only, no seeking)."""
        import construct as cs

        if f.is_dynamic:
            return int_subcon(f.size if f.size in (2, 4) else 4, False, little)
        if f.is_array:
            esize = f.elementsize
            if f.is_string or esize not in _INT_CODES or f.size % max(esize, 1):
                return cs.Bytes(f.size)
            return cs.Array(f.size // esize, int_subcon(esize, f.signed, little))
        code = field_code(f)
        if code is not None:
            return cs.FormatField("<" if little else ">", code)
        return cs.Bytes(f.size)

    def layout(self, little: bool = True) -> cs.Struct:
        """The Construct of the fixed part of an event: every field at its offset.

        Dynamic fields parse to their 32-bit location word (``len << 16 | offset``).
        """
        import construct as cs

        members = [
            f.name / cs.Pointer(f.offset, self.field_subcon(f, little))
            for f in self.common_fields + self.fields
        ]
        end = max((f.offset + f.size for f in self.common_fields + self.fields), default=0)
        return cs.Struct(*members, cs.Seek(end))

    def fixed_size(self) -> int:
        """Bytes of the fixed part (up to the end of the last field)."""
        return max((f.offset + f.size for f in self.common_fields + self.fields), default=0)

    # -- fast decoders ----------------------------------------------------

    def decoder(self, names: Sequence[str], little: bool = True
                ) -> Callable[[Any, int, int], tuple]:
        """A compiled decoder ``(buf, offset, size) -> tuple`` of the fields ``names``.

        Integer fields are read by one ``struct.Struct`` whose format is built
        from the Construct ``FormatField``s of :meth:`field_subcon`; strings
        and dynamic arrays are sliced afterwards. Values have the Python types
        of :meth:`value_of` (int, str, bytes or tuple of int).
        """
        return _compile_decoder(self, tuple(names), little)

    def value_of(self, f: Field, buf: Any, off: int, size: int, little: bool = True) -> Any:
        """The typed value of field ``f`` in the event at ``buf[off:off+size]``."""
        return self.decoder((f.name,), little)(buf, off, size)[0]


# ---------------------------------------------------------------------------
# decoders

def _compile_decoder(fmt: EventFormat, names: tuple[str, ...], little: bool):
    fields = [fmt.field(n) for n in names]
    endian = "<" if little else ">"
    simple: list[tuple[int, str, int]] = []  # (offset, code, index)
    post: list[tuple[int, Field]] = []
    for i, f in enumerate(fields):
        code = field_code(f)
        if code is not None:
            simple.append((f.offset, code, i))
        else:
            post.append((i, f))
    simple.sort()
    # One struct for the integers, if they do not overlap.
    parts: list[str] = []
    pos = 0
    order: list[int] = []
    overlap = False
    for off, code, idx in simple:
        if off < pos:
            overlap = True
            break
        if off > pos:
            parts.append(f"{off - pos}x")
        parts.append(code)
        pos = off + struct.calcsize("<" + code)
        order.append(idx)
    n = len(fields)
    if overlap:
        singles = [(idx, struct.Struct(endian + code), off) for off, code, idx in simple]

        def read_ints(buf, o, size):
            out = [None] * n
            for idx, st, off in singles:
                out[idx] = st.unpack_from(buf, o + off)[0]
            return out
        need = max((off + struct.calcsize("<" + c) for off, c, _ in simple), default=0)
    else:
        st = struct.Struct(endian + "".join(parts))
        need = st.size
        if order == list(range(n)) and not post:
            unpack = st.unpack_from

            def decode_fast(buf, o, size):
                if size < need:
                    raise _short(fmt, need, size)
                return unpack(buf, o)
            return decode_fast

        def read_ints(buf, o, size):
            out = [None] * n
            for idx, v in zip(order, st.unpack_from(buf, o), strict=False):
                out[idx] = v
            return out
    loc = struct.Struct(endian + "I")
    loc16 = struct.Struct(endian + "H")
    posts = [(i, f, _element_struct(f, endian)) for i, f in post]

    def decode(buf, o, size):
        if size < need:
            raise _short(fmt, need, size)
        out = read_ints(buf, o, size) if simple else [None] * n
        for i, f, est in posts:
            out[i] = _slow_value(f, buf, o, size, loc, loc16, est)
        return tuple(out)
    return decode


def _short(fmt: EventFormat, need: int, size: int) -> TraceFormatError:
    return TraceFormatError(f"event {fmt.name} has {size} bytes, its format needs {need}")


def _element_struct(f: Field, endian: str) -> struct.Struct | None:
    es = f.elementsize
    if f.is_string or es not in _INT_CODES:
        return None
    code = _INT_CODES[es]
    return struct.Struct(endian + (code if f.signed else code.upper()))


def dynamic_span(f: Field, buf: Any, o: int, size: int, little: bool = True) -> tuple[int, int]:
    """(offset, length) inside the event of dynamic field ``f``, as libtraceevent computes it.

    Out-of-range locations give (0, 0), like ``dynamic_offset_field``.
    """
    if f.offset + f.size > size:
        return 0, 0
    endian = "<" if little else ">"
    if f.size == 2:
        val = struct.unpack_from(endian + "H", buf, o + f.offset)[0]
        start, length = val, 0
        # old 2-byte __data_loc: a NUL-terminated string at that offset
        if start < size:
            end = bytes(buf[o + start:o + size]).find(b"\0")
            length = (size - start) if end < 0 else end
    else:
        val = struct.unpack_from(endian + "I", buf, o + f.offset)[0]
        start, length = val & 0xFFFF, val >> 16
    start = start if start <= size else 0
    length = length if start + length <= size else 0
    if f.is_relative:
        start += f.offset + f.size
    return start, length


def _slow_value(f: Field, buf, o, size, loc, loc16, est):
    if f.is_dynamic:
        start, length = dynamic_span(f, buf, o, size, loc.format.startswith("<"))
        raw = bytes(buf[o + start:o + start + length])
    elif f.is_array or f.size not in _INT_CODES:
        # a field of size 0 is a flexible array (ftrace's "char buf[]"): it runs to the
        # end of the record
        end = f.offset + f.size if f.size else max(size, f.offset)
        raw = bytes(buf[o + f.offset:o + end])
        if not f.is_array:
            little = loc.format.startswith("<")
            return int.from_bytes(raw, "little" if little else "big") if raw else 0
    else:
        raise AssertionError(f.name)
    if f.is_string:
        end = raw.find(b"\0")
        return (raw if end < 0 else raw[:end]).decode("utf-8", "replace")
    if est is not None and len(raw) % est.size == 0:
        return tuple(v[0] for v in est.iter_unpack(raw))
    return raw


# ---------------------------------------------------------------------------
# parsing the format text

_FIELD_RE = re.compile(
    r"^\s*field:(?P<decl>[^;]*);\s*offset:\s*(?P<offset>\d+);\s*size:\s*(?P<size>\d+);"
    r"(?:\s*signed:\s*(?P<signed>\d+);)?"
)


def _parse_decl(decl: str) -> tuple[str, str, bool, int]:
    """(type, name, is_array, arraylen) of a field declaration, as libtraceevent reads it."""
    decl = decl.strip()
    m = re.match(r"^(?P<before>.*?)\s*(?P<br>\[[^\]]*\])\s*(?P<after>\w+)?\s*$", decl)
    if m:
        before, br, after = m.group("before"), m.group("br"), m.group("after")
        inner = br[1:-1].split()
        arraylen = _strtoul(inner[-1]) if inner else 0
        if after:
            typ = f"{before}{br}"
            name = after
        else:
            words = before.split()
            if not words:
                raise ValueError(decl)
            name = words[-1]
            typ = " ".join(words[:-1]) + br
        return typ, name, True, arraylen
    tokens = re.findall(r"\*|[^\s*]+", decl)
    if len(tokens) < 2:
        raise ValueError(decl)
    return " ".join(tokens[:-1]), tokens[-1], False, 0


def _strtoul(text: str) -> int:
    m = re.match(r"\s*(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9]\d*)", text)
    if not m:
        return 0
    return int(m.group(1), 0) if not re.fullmatch(r"0[0-7]+", m.group(1)) else int(m.group(1), 8)


def _make_field(line: str, long_size: int) -> Field | None:
    m = _FIELD_RE.match(line)
    if not m:
        return None
    typ, name, is_array, arraylen = _parse_decl(m.group("decl"))
    size = int(m.group("size"))
    signed = bool(int(m.group("signed") or 0))
    is_pointer = "*" in typ.split()
    if is_pointer:
        typ = typ  # libtraceevent keeps "const char *"
    is_string = is_array and ("char" in typ or "u8" in typ or "s8" in typ)
    is_dynamic = typ.startswith("__data_loc")
    is_relative = typ.startswith("__rel_loc")
    if is_relative:
        is_dynamic = True
    is_long = "long" in typ
    if is_dynamic and size == 2:
        is_string = is_array = True
    if is_array or is_dynamic:
        if arraylen:
            elementsize = size // arraylen
        elif is_dynamic:
            base = re.sub(r"^__(data|rel)_loc\s+", "", typ).split("[")[0].strip()
            elementsize = {"u8": 1, "u16": 2, "u32": 4, "u64": 8, "s8": 1, "s16": 2,
                           "s32": 4, "s64": 8, "char": 1}.get(base, 0)
            if is_array and name in ("[]",):
                elementsize = 0
        elif is_string:
            elementsize = 1
        elif is_long:
            elementsize = long_size
        else:
            elementsize = 0
    else:
        elementsize = size
    return Field(name, typ, int(m.group("offset")), size, signed, is_array, is_string,
                 is_dynamic, is_relative, is_long, is_pointer, arraylen, elementsize)


def parse_format(text: str, system: str, *, long_size: int = 8, source: str | None = None,
                 offset: int | None = None) -> EventFormat:
    """Parse one event ``format`` text (see the module docstring).

    :param system: the event's system (the directory it came from); the
        ``ftrace`` formats are parsed the same way.
    :raises TraceFormatError: no name / ID / field list, or a malformed field line.
    """
    name = None
    ev_id = None
    common: list[Field] = []
    fields: list[Field] = []
    print_fmt = ""
    lines = text.split("\n")
    i = 0
    in_format = False
    block = common
    while i < len(lines):
        line = lines[i]
        s = line.strip()
        if s.startswith("name:") and name is None:
            name = s[5:].strip()
        elif s.startswith("ID:") and ev_id is None:
            try:
                ev_id = int(s[3:].strip())
            except ValueError:
                raise TraceFormatError(f"bad event ID in format of {name}", source,
                                       offset=offset) from None
        elif s == "format:":
            in_format = True
        elif s.startswith("print fmt:"):
            print_fmt = "\n".join([line.split("print fmt:", 1)[1]] + lines[i + 1:]).strip()
            break
        elif in_format:
            if not s:
                if common:
                    block = fields
            elif s.startswith("field"):
                try:
                    f = _make_field(line, long_size)
                except ValueError:
                    f = None
                if f is None:
                    raise TraceFormatError(f"malformed field line {s!r} in format of {name}",
                                           source, offset=offset)
                if block is common and not f.name.startswith("common_"):
                    block = fields
                block.append(f)
        i += 1
    if name is None or ev_id is None:
        raise TraceFormatError(f"event format without {'name' if name is None else 'ID'}",
                               source, offset=offset)
    from ptreplay.formats.printfmt import parse_print_fmt

    args, parts, failed = parse_print_fmt(print_fmt, {f.name for f in fields + common})
    return EventFormat(system, name, ev_id, tuple(common), tuple(fields), print_fmt,
                       tuple(args), tuple(parts), failed, text)
