"""The ``format`` text the kernel shows for a probe event or a tracepoint.

Every event in tracefs has a ``format`` file (``events/<system>/<event>/
format``) and trace.dat files embed the same text; readers decode records
with it. For a probe event the kernel builds that text from the definition
line alone:

* common fields (``common_type`` .. ``common_pid``), then ``__probe_ip``
  (kprobe) or ``__probe_func``/``__probe_ret_ip`` (kretprobe) — the
  ``DEFINE_FIELD`` calls of ``kprobe_event_define_fields()`` /
  ``kretprobe_event_define_fields()`` in kernel/trace/trace_kprobe.c;
* one field per fetch argument, packed without alignment right after those
  (``parg->offset = *size; *size += type->size * count`` in
  ``traceprobe_parse_probe_arg_body()``), with the fetch type's C type name
  (``x64`` shows as ``u64``), size and signedness
  (``traceprobe_define_arg_fields()``, kernel/trace/trace_probe.c);
* a print format built by ``__set_print_fmt()`` from each type's printf
  format (``"0x%Lx"`` for ``x64``, ``"%d"`` for ``s32``, ...);

laid out by ``f_show()`` in kernel/trace/trace_events.c. Tracepoints are C
structs (``TP_STRUCT__entry``): their fields are naturally aligned and their
print format is the stringified ``TP_printk``, which ptreplay keeps as data
in ``schemas/tracepoints/``.

:func:`kprobe_format` and :func:`tracepoint_format` reproduce those files
byte for byte (tests compare them with the real kernels' files in
``../shared/corpus``); :func:`kprobe_fields` / :func:`tracepoint_fields`
give the binary layout that ``ptreplay gen`` writes records with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ptreplay.capture.probedefs import FetchArg, ProbeDefinition

__all__ = [
    "Field",
    "COMMON_FIELDS",
    "FETCH_TYPES",
    "TracepointDef",
    "kprobe_fields",
    "kprobe_format",
    "kprobe_print_fmt",
    "tracepoint_fields",
    "tracepoint_format",
    "format_text",
    "series_version",
]


@dataclass(frozen=True)
class Field:
    """One field of an event record, as its ``format`` file describes it.

    :param ctype: the C type shown (``u64``, ``unsigned long``, ``__data_loc char[]``).
    :param name: the field name (``pgd``); an array shows as ``name[N]`` / ``name[]``
        through :attr:`decl`.
    :param offset: byte offset in the record (the common header included).
    :param size: size in bytes.
    :param signed: whether the kernel flags the field signed.
    :param array: array length (0: not an array).
    :param show_len: for arrays, whether ``f_show()`` prints the length.
    """

    ctype: str
    name: str
    offset: int
    size: int
    signed: bool
    array: int = 0
    show_len: bool = True

    def decl(self) -> str:
        """The ``TYPE NAME`` text after ``field:`` in the format file."""
        if self.array:
            suffix = f"[{self.array}]" if self.show_len else "[]"
            return f"{self.ctype} {self.name}{suffix}"
        return f"{self.ctype} {self.name}"

    def line(self) -> str:
        """The field's line of the format file (tab-indented, newline-terminated)."""
        return (
            f"\tfield:{self.decl()};\toffset:{self.offset};\tsize:{self.size};"
            f"\tsigned:{int(self.signed)};\n"
        )


#: The common header of every event on a 64-bit kernel (``struct trace_entry``).
COMMON_FIELDS: tuple[Field, ...] = (
    Field("unsigned short", "common_type", 0, 2, False),
    Field("unsigned char", "common_flags", 2, 1, False),
    Field("unsigned char", "common_preempt_count", 3, 1, False),
    Field("int", "common_pid", 4, 4, True),
)


@dataclass(frozen=True)
class _FetchType:
    ctype: str  # fmttype: the C type name shown in the format file
    size: int
    signed: bool
    fmt: str  # printf format in the print fmt (as the file shows it)
    is_string: bool = False


#: trace_probe.c ``probe_fetch_types`` and ``PRINT_TYPE_FMT_NAME`` (64-bit kernels).
FETCH_TYPES: dict[str, _FetchType] = {
    "u8": _FetchType("u8", 1, False, "%u"),
    "u16": _FetchType("u16", 2, False, "%u"),
    "u32": _FetchType("u32", 4, False, "%u"),
    "u64": _FetchType("u64", 8, False, "%Lu"),
    "s8": _FetchType("s8", 1, True, "%d"),
    "s16": _FetchType("s16", 2, True, "%d"),
    "s32": _FetchType("s32", 4, True, "%d"),
    "s64": _FetchType("s64", 8, True, "%Ld"),
    "x8": _FetchType("u8", 1, False, "0x%x"),
    "x16": _FetchType("u16", 2, False, "0x%x"),
    "x32": _FetchType("u32", 4, False, "0x%x"),
    "x64": _FetchType("u64", 8, False, "0x%Lx"),
    "char": _FetchType("u8", 1, False, "'%c'"),
    "symbol": _FetchType("u64", 8, False, "%pS"),
    "string": _FetchType("__data_loc char[]", 4, True, '\\"%s\\"', True),
    "ustring": _FetchType("__data_loc char[]", 4, True, '\\"%s\\"', True),
    "symstr": _FetchType("__data_loc char[]", 4, True, '\\"%s\\"', True),
}


def series_version(series: str) -> tuple[int, int]:
    """``"6.12"`` -> ``(6, 12)``."""
    major, _, minor = series.partition(".")
    return int(major), int(minor)


def _fetch_type(arg: FetchArg, series: str) -> _FetchType:
    base = arg.base_type
    if base.startswith("b") and "/" in base:
        # find_fetch_type(): a bitfield is shown as its container type.
        return FETCH_TYPES["u" + base.rsplit("/", 1)[1]]
    if base == "char" and series_version(series) < (6, 6):
        # 'char' (trace_probe.c ASSIGN_FETCH_TYPE_ALIAS(char, ...)) is in the
        # 6.6 and 6.12 sources read here, not in 5.15.135 or 6.1.192.
        raise ValueError(f"fetch type 'char' does not exist in Linux {series}")
    try:
        return FETCH_TYPES[base]
    except KeyError:
        raise ValueError(f"unknown fetch type {arg.type!r}") from None


def kprobe_fields(defn: ProbeDefinition, series: str = "6.1") -> list[Field]:
    """The fields of a probe event after the common header, as the kernel lays them out.

    :param defn: the parsed definition.
    :param series: the kernel series (``"6.1"``): it decides how arrays show.
    """
    fields: list[Field] = []
    if defn.is_return:
        fields.append(Field("unsigned long", "__probe_func", 8, 8, False))
        fields.append(Field("unsigned long", "__probe_ret_ip", 16, 8, False))
        offset = 24
    else:
        fields.append(Field("unsigned long", "__probe_ip", 8, 8, False))
        offset = 16
    # trace_events.c f_show(): 5.15 prints "TYPE NAME[N]" from the type string;
    # 6.1 and later print "NAME[]" for fields defined without a length.
    show_len = series_version(series) < (6, 1)
    for arg in defn.args:
        t = _fetch_type(arg, series)
        count = arg.count
        size = t.size * (count or 1)
        if count and t.is_string:
            fields.append(Field(f"{t.ctype}[{count}]", arg.name, offset, size, t.signed))
        else:
            fields.append(Field(t.ctype, arg.name, offset, size, t.signed, count, show_len))
        offset += size
    return fields


def kprobe_print_fmt(defn: ProbeDefinition, series: str = "6.1") -> str:
    """The ``print fmt:`` value of a probe event (``__set_print_fmt()``)."""
    if defn.is_return:
        text = '"(%lx <- %lx)'
        rec = ", REC->__probe_func, REC->__probe_ret_ip"
    else:
        text = '"(%lx)'
        rec = ", REC->__probe_ip"
    for arg in defn.args:
        t = _fetch_type(arg, series)
        text += f" {arg.name}="
        if arg.count:
            text += "{" + ",".join([t.fmt] * arg.count) + "}"
        else:
            text += t.fmt
    text += '"' + rec
    for arg in defn.args:
        t = _fetch_type(arg, series)
        if arg.count:
            for j in range(arg.count):
                rec_arg = f"__get_str({arg.name}[{j}])" if t.is_string else f"REC->{arg.name}[{j}]"
                text += f", {rec_arg}"
        else:
            text += f", __get_str({arg.name})" if t.is_string else f", REC->{arg.name}"
    return text


def format_text(name: str, event_id: int, fields: Sequence[Field], print_fmt: str) -> str:
    """Lay out a format file: header, common fields, a blank line, fields, print fmt."""
    out = [f"name: {name}\n", f"ID: {event_id}\n", "format:\n"]
    out += [f.line() for f in COMMON_FIELDS]
    out.append("\n")
    out += [f.line() for f in fields]
    out.append(f"\nprint fmt: {print_fmt}\n")
    return "".join(out)


def kprobe_format(defn: ProbeDefinition, event_id: int, series: str = "6.1") -> str:
    """The exact ``format`` file text of a kprobe/kretprobe event.

    :param defn: the parsed definition.
    :param event_id: the event type id the kernel assigned (``ID:`` line).
    :param series: the kernel series.
    """
    return format_text(defn.event, event_id, kprobe_fields(defn, series),
                       kprobe_print_fmt(defn, series))


# --- tracepoints -------------------------------------------------------------

#: C types that appear in the tracepoints ptreplay knows: (size, alignment, signed)
#: on arm64 (LP64).
_C_TYPES: dict[str, tuple[int, int, bool]] = {
    "bool": (1, 1, False),
    "char": (1, 1, True),
    "unsigned char": (1, 1, False),
    "u8": (1, 1, False),
    "s8": (1, 1, True),
    "short": (2, 2, True),
    "unsigned short": (2, 2, False),
    "u16": (2, 2, False),
    "s16": (2, 2, True),
    "int": (4, 4, True),
    "unsigned int": (4, 4, False),
    "u32": (4, 4, False),
    "__u32": (4, 4, False),
    "s32": (4, 4, True),
    "long": (8, 8, True),
    "unsigned long": (8, 8, False),
    "long long": (8, 8, True),
    "unsigned long long": (8, 8, False),
    "u64": (8, 8, False),
    "__u64": (8, 8, False),
    "s64": (8, 8, True),
    "gfn_t": (8, 8, False),
    "phys_addr_t": (8, 8, False),
}


@dataclass(frozen=True)
class TracepointDef:
    """A tracepoint's ``TP_STRUCT__entry`` (``__field`` entries only) and print format.

    :param system: the event system (``kvm``).
    :param name: the event name (``kvm_guest_fault``).
    :param fields: ``(C type, field name)`` in declaration order.
    :param print_fmt: the stringified ``TP_printk`` exactly as the kernel shows it.
    :param source: where the definition is, per kernel series (``"6.1"`` ->
        ``"arch/arm64/kvm/trace_arm.h:52"``).
    """

    system: str
    name: str
    fields: tuple[tuple[str, str], ...]
    print_fmt: str
    source: dict[str, str]


def tracepoint_fields(tp: TracepointDef) -> list[Field]:
    """The fields after the common header, with C struct alignment."""
    fields: list[Field] = []
    offset = 8  # sizeof(struct trace_entry)
    for ctype, name in tp.fields:
        try:
            size, align, signed = _C_TYPES[ctype]
        except KeyError:
            raise ValueError(f"{tp.name}: unknown C type {ctype!r}") from None
        offset = (offset + align - 1) // align * align
        fields.append(Field(ctype, name, offset, size, signed))
        offset += size
    return fields


def tracepoint_format(tp: TracepointDef, event_id: int) -> str:
    """The exact ``format`` file text of a tracepoint."""
    return format_text(tp.name, event_id, tracepoint_fields(tp), tp.print_fmt)
