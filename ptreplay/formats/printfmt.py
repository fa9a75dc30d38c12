"""The ``print fmt`` of an event, and raw field printing the way ``trace-cmd report -R`` does it.

``trace-cmd report -R`` prints every field as ``name=value`` (libtraceevent
1.7 ``tep_print_fields``). A field's value is printed with the printf
conversion that the event's print format uses for it, when the format has
one whose argument is exactly ``REC->field`` (behind casts or parentheses),
else with a default per type (``print_field_raw``). This module parses the
print format into libtraceevent's ``tep_print_parse`` list and compiles, per
event format, a function that renders one event's field list exactly so.
"""

from __future__ import annotations

import re
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs start-up time
    from collections.abc import Callable
    from typing import Any

    from ptreplay.formats.eventformat import EventFormat, Field, PrintArg, PrintPart

__all__ = ["parse_print_fmt", "compile_raw_printer", "raw_fields", "RawFields", "struct_format",
           "c_format_int", "CACHE_LIMIT"]

# Helper functions libtraceevent knows, plus those its plugins register.
_KNOWN_FUNCS = {
    "__print_flags", "__print_symbolic", "__print_hex", "__print_hex_str", "__print_array",
    "__get_str", "__get_rel_str", "__get_bitmask", "__get_rel_bitmask", "__get_cpumask",
    "__get_rel_cpumask", "__get_dynamic_array", "__get_rel_dynamic_array", "__get_sockaddr",
    "__get_sockaddr_rel", "__get_dynamic_array_len", "__get_rel_dynamic_array_len",
    "__builtin_expect", "sizeof",
    # plugins of libtraceevent 1.7
    "__le16_to_cpup", "jbd2_dev_to_name", "jiffies_to_msecs", "is_writable_pte",
    "scsi_trace_parse_cdb", "xen_hypercall_name",
}


def _read_dquote(text: str, i: int) -> tuple[str, int]:
    """Read a "..." token starting at text[i] == '"'; escapes are kept as written."""
    j = i + 1
    out = []
    while j < len(text):
        ch = text[j]
        if ch == "\\" and j + 1 < len(text):
            out.append(text[j:j + 2])
            j += 2
            continue
        if ch == '"':
            return "".join(out), j + 1
        out.append(ch)
        j += 1
    raise ValueError("unterminated string")


def _split_args(text: str) -> list[str]:
    args: list[str] = []
    depth = 0
    cur: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "\"'":
            q = ch
            j = i + 1
            while j < len(text) and text[j] != q:
                j += 2 if text[j] == "\\" else 1
            cur.append(text[i:j + 1])
            i = j + 1
            continue
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    if "".join(cur).strip():
        args.append("".join(cur).strip())
    return args


def _matching(text: str, i: int) -> int:
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "(":
            depth += 1
        elif text[j] == ")":
            depth -= 1
            if depth == 0:
                return j
    return -1


_TYPE_RE = re.compile(r"[A-Za-z_]\w*(\s+[A-Za-z_]\w*)*(\s*\*)*")


def _classify(text: str) -> PrintArg:
    from ptreplay.formats.eventformat import PrintArg

    t = text.strip()
    casts: list[str] = []
    while t.startswith("("):
        close = _matching(t, 0)
        if close < 0:
            break
        inner = t[1:close].strip()
        rest = t[close + 1:].strip()
        if not rest:
            t = inner
            continue
        if _TYPE_RE.fullmatch(inner) and "REC" not in inner and (rest[0] == "(" or
                                                                  re.match(r"[\w\"']", rest)):
            casts.append(" ".join(inner.replace("*", " * ").split()))
            t = rest
            continue
        break
    m = re.fullmatch(r"REC\s*->\s*(\w+)", t)
    if m:
        return PrintArg(text, m.group(1), tuple(casts))
    m = re.fullmatch(r"(0[xX][0-9a-fA-F]+|\d+)[uUlL]*", t)
    if m and not casts:
        return PrintArg(text, None, (), int(m.group(1), 0) if not m.group(1).startswith("0")
                        or m.group(1).lower().startswith("0x") or m.group(1) == "0"
                        else int(m.group(1), 8))
    return PrintArg(text)


def _uses_unknown_function(arg: str) -> bool:
    stripped = re.sub(r'"(\\.|[^"\\])*"', '""', arg)
    for m in re.finditer(r"([A-Za-z_]\w*)\s*\(", stripped):
        name = m.group(1)
        if name not in _KNOWN_FUNCS:
            return True
    return False


def _parse_arg_format_pointer(fmt: str) -> int:
    """libtraceevent ``parse_arg_format_pointer``: extension letters after ``%p``."""
    c0 = fmt[0] if fmt else ""
    c1 = fmt[1] if len(fmt) > 1 else ""
    ret = 0
    if c0 in "FSfs":
        ret += 1
    elif c0 in "Mm":
        if c1 in ("R", "F"):
            ret += 1
        ret += 1
    elif c0 in "Ii":
        index = 2
        if c1 == "S":
            while index < len(fmt) and fmt[index] in "pfs":
                ret += 1
                index += 1
        if c1 in ("S", "4"):
            if index < len(fmt) and fmt[index] in "hnlb":
                ret += 1
                index += 1
            if c1 == "4":
                ret += 1
                return ret + 1
        if c1 in ("S", "6"):
            if index < len(fmt) and fmt[index] == "c":
                ret += 1
            ret += 1
        ret += 1
    elif c0 == "U":
        if c1 in ("L", "l", "B", "b"):
            ret += 1
        ret += 1
    elif c0 == "h":
        if c1 in ("C", "D", "N"):
            ret += 1
        ret += 1
    return ret


def parse_print_fmt(text: str, field_names: set[str]) -> tuple[list, list, bool]:
    """Parse ``"fmt", args...`` into (args, parts, failed) like libtraceevent.

    ``failed`` mirrors ``TEP_EVENT_FL_FAILED``: the arguments could not be
    parsed (an unknown helper function) or a conversion has no argument.
    """
    from ptreplay.formats.eventformat import PrintPart

    text = text.strip()
    if not text.startswith('"'):
        return [], [], True
    try:
        fmt, i = _read_dquote(text, 0)
        while True:
            rest = text[i:].lstrip()
            if rest.startswith('"'):
                more, j = _read_dquote(rest, 0)
                fmt += more
                i = len(text) - len(rest) + j
                continue
            break
    except ValueError:
        return [], [], True
    rest = text[i:].strip()
    failed = False
    if rest:
        if not rest.startswith(","):
            return [], [], True
        arg_texts = _split_args(rest[1:])
    else:
        arg_texts = []
    args = [_classify(a) for a in arg_texts]
    for text in arg_texts:
        if _uses_unknown_function(text):
            failed = True
    for a in args:
        if a.field is not None and a.field not in field_names:
            failed = True
    parts: list[PrintPart] = []
    pending = list(args)
    pos = 0
    n = len(fmt)
    while pos < n:
        if fmt[pos] == "%" and (pos + 1 >= n or fmt[pos + 1] != "%"):
            consumed, part, ok = _parse_arg_format(fmt, pos, pending)
            if not ok:
                failed = True
            if part is not None:
                parts.append(part)
            if consumed <= 0:
                break
            pos += consumed
        else:
            s, consumed = _parse_arg_string(fmt, pos)
            parts.append(PrintPart("string", s))
            pos += consumed
    return args, parts, failed


def _parse_arg_string(fmt: str, pos: int) -> tuple[str, int]:
    out = []
    i = pos
    n = len(fmt)
    while i < n:
        ch = fmt[i]
        if ch == "\\" and i + 1 < n:
            nxt = fmt[i + 1]
            out.append({"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}.get(nxt, nxt))
            i += 2
            continue
        if ch == "%":
            if i + 1 < n and fmt[i + 1] == "%":
                out.append("%")
                i += 2
                continue
            break
        out.append(ch)
        i += 1
    return "".join(out), max(i - pos, 1)


def _parse_arg_format(fmt: str, start: int, pending: list):
    from ptreplay.formats.eventformat import PrintPart

    i = start + 1
    ls = 0
    len_arg = None
    n = len(fmt)
    while i < n:
        c = fmt[i]
        if c == "#" or c == "." or c.isdigit() or c == "-":
            pass
        elif c == "h":
            ls -= 1
        elif c == "l":
            ls += 1
        elif c == "L":
            ls = 2
        elif c in "zZ":
            ls = 1
        elif c == "*":
            if not pending or len_arg is not None:
                return i - start, None, False
            len_arg = pending.pop(0)
        elif c == "p":
            if not pending:
                return i - start, None, False
            res = _parse_arg_format_pointer(fmt[i + 1:])
            i += res
            text = fmt[start:i + 1]
            return i + 1 - start, PrintPart("pointer", text, pending.pop(0), len_arg, ls), True
        elif c in "duixXo":
            if not pending:
                return i - start, None, False
            text = fmt[start:i + 1]
            ok = -2 <= ls <= 2
            return i + 1 - start, PrintPart("digit", text, pending.pop(0), len_arg, ls), ok
        elif c == "s":
            if not pending:
                return i - start, None, False
            text = fmt[start:i + 1]
            return i + 1 - start, PrintPart("strarg", text, pending.pop(0), len_arg, 0), True
        else:
            return i + 1 - start, PrintPart("string", f">{c}<"), True
        i += 1
    return i - start, None, True


# ---------------------------------------------------------------------------
# C printf of integers

_CONV_RE = re.compile(r"%(?P<flags>[-+ #0]*)(?P<width>\*|\d+)?(?:\.(?P<prec>\*|\d*))?"
                      r"(?P<len>hh|h|ll|l|L|z|Z|j|t|q)*(?P<conv>[diouxXp])")


def c_format_int(spec: str, val: int, ls: int, star: int | None = None) -> str:
    """printf(spec, (type)val) for one integer conversion, the C type chosen by ``ls``
    (-2 char, -1 short, 0 int, 1 long, 2 long long; a 64-bit host, like trace-cmd's)."""
    m = _CONV_RE.search(spec)
    if not m:
        return spec
    conv = m.group("conv")
    lm = m.group("len") or ""
    bits = {-2: 8, -1: 16, 0: 32, 1: 64, 2: 64}.get(ls, 64)
    v = val & ((1 << bits) - 1)
    if v >> (bits - 1):
        v -= 1 << bits  # print_arg_number casts to signed C types
    pbits = {"hh": 8, "h": 16, "": 32}.get(lm, 64)  # how printf reads the vararg back
    v &= (1 << pbits) - 1
    if conv in "di" and v >> (pbits - 1):
        v -= 1 << pbits
    flags = m.group("flags") or ""
    width = m.group("width")
    prec = m.group("prec")
    if width == "*":
        w = star if star is not None else 0
        if w < 0:
            flags += "-"
            w = -w
        width = str(w)
    if prec == "*":
        prec = str(max(star or 0, 0))
    if conv == "p":
        out = _pad("(nil)" if v == 0 else "0x%x" % v, flags, width)  # noqa: UP031 (C printf)
    elif conv == "o" and "#" in flags:
        core = "0" + format(v, "o") if v else "0"
        out = _pad(core, flags.replace("#", ""), width)
    else:
        if conv in "xX" and v == 0:
            flags = flags.replace("#", "")
        out = _pyfmt(flags, width, prec, "d" if conv in "diu" else conv, v)
    return spec[:m.start()] + out + spec[m.end():]


def _pyfmt(flags: str, width: str | None, prec: str | None, conv: str, v: int) -> str:
    f = "%" + flags + (width or "")
    if prec is not None:
        f += "." + (prec or "0")
    return (f + conv) % v


def _pad(s: str, flags: str, width: str | None) -> str:
    w = int(width or 0)
    if len(s) >= w:
        return s
    return s.ljust(w) if "-" in flags else s.rjust(w)


# ---------------------------------------------------------------------------
# raw printing of one event's fields


def _mask_for_cast(t: str) -> int | None:
    if t.endswith("*") or t.startswith("struct"):
        return None
    if t in ("u8", "s8"):
        return 0xFF
    if t in ("u16", "s16"):
        return 0xFFFF
    if t in ("u32", "s32"):
        return 0xFFFFFFFF
    if t in ("u64", "s64"):
        return None
    if t.startswith("unsigned "):
        t = t[9:]
    return {"char": 0xFF, "short": 0xFFFF, "int": 0xFFFFFFFF}.get(t)


_UNPRINTABLE = re.compile(rb"[^\x20-\x7e\t\n\v\f\r]")


def _is_printable(raw: bytes) -> bool:
    """libtraceevent ``is_printable_array``: isprint or isspace up to the first NUL."""
    return _UNPRINTABLE.search(raw.partition(b"\0")[0]) is None


class _FieldState:
    """Mutable per-field flag: libtraceevent clears IS_STRING after one unprintable value."""

    __slots__ = ("string",)

    def __init__(self, string: bool) -> None:
        self.string = string


class RawFields:
    """How to print one event format's field list, as parts of a ``%`` expression.

    The raw report compiles these into one function per event format (with
    the line head), :func:`compile_raw_printer` into one for the fields alone.

    :param codes: ``(offset, struct code, variable)``: the values the
        expressions read, unpacked from the event by one ``struct``.
    :param template: the ``%`` template of ``" name=value name=value..."``.
    :param exprs: one Python expression per conversion of ``template``; they
        use the ``codes`` variables, ``buf``, ``off``, ``size`` and ``env``.
    :param env: helpers and caches the expressions name.
    :param slow: the same text rendered field by field, for records shorter
        than the ``codes`` need (or whose fields overlap).
    :param str_last: the last value is a string (it may end with a newline).
    """

    __slots__ = ("codes", "template", "exprs", "env", "slow", "str_last")

    def __init__(self, codes: list[tuple[int, str, str]], template: str, exprs: list[str],
                 env: dict[str, Any], slow: Callable[[Any, int, int], str],
                 str_last: bool) -> None:
        self.codes = codes
        self.template = template
        self.exprs = exprs
        self.env = env
        self.slow = slow
        self.str_last = str_last


def struct_format(codes: list[tuple[int, str, str]], endian: str) -> tuple[str, list[str]] | None:
    """One ``struct`` format reading every ``(offset, code, variable)`` and the variables in
    the order it returns them, or None if two of them overlap."""
    fmt = endian
    names: list[str] = []
    pos = 0
    for off, code, name in sorted(codes):
        if off < pos:
            return None
        if off > pos:
            fmt += f"{off - pos}x"
        fmt += code
        names.append(name)
        pos = off + struct.calcsize("<" + code)
    return fmt, names


def compile_raw_printer(fmt: EventFormat, little: bool, long_size: int,
                        find_func: Callable[[int], tuple[str, int] | None] | None = None,
                        find_printk: Callable[[int], str | None] | None = None,
                        ) -> Callable[[Any, int, int], str]:
    """Compile ``(buf, offset, size) -> " name=value name=value..."`` for ``fmt``."""
    plan = raw_fields(fmt, little, long_size, find_func, find_printk)
    endian = "<" if little else ">"
    layout = struct_format(plan.codes, endian)
    if layout is None:
        return plan.slow
    sfmt, names = layout
    st = struct.Struct(sfmt)
    src = ["def render(buf, off, size):"]
    if plan.codes:
        src.append(f"    if size < {st.size}:")
        src.append("        return slow(buf, off, size)")
        src.append(f"    {', '.join(names)}, = unpack(buf, off)")
    src.append(f"    return {plan.template!r} % ({''.join(e + ', ' for e in plan.exprs)})")
    ns: dict[str, Any] = {"unpack": st.unpack_from, "slow": plan.slow, **plan.env}
    exec("\n".join(src), ns)  # noqa: S102 - code built from parsed format fields only
    return ns["render"]


def raw_fields(fmt: EventFormat, little: bool, long_size: int,
               find_func: Callable[[int], tuple[str, int] | None] | None = None,
               find_printk: Callable[[int], str | None] | None = None) -> RawFields:
    """How ``trace-cmd report -R`` prints the fields of ``fmt`` (see :class:`RawFields`).

    A field whose argument in the print format is ``REC->field`` uses that
    conversion; the others use libtraceevent's default per type.
    """
    endian = "<" if little else ">"
    parts = list(fmt.print_parts)
    # bprint has no print cache in libtraceevent (TEP_EVENT_FL_ISBPRINT)
    usable = bool(parts) and not fmt.print_failed and not (
        fmt.system == "ftrace" and fmt.name == "bprint")
    renderers: list[Callable[[Any, int, int], str]] = []
    plan: list[tuple] = []
    pos: int | None = 0
    for f in fmt.fields:
        match = None
        has0x = False
        if usable and pos is not None and not (f.is_array or f.is_string):
            start = pos
            p = start
            h = False
            while True:
                part = parts[p]
                if part.kind == "string":
                    h = len(part.text) > 1 and part.text.endswith("0x")
                else:
                    a = part.arg
                    if a is not None and a.field == f.name:
                        match = part
                        has0x = h
                        pos = p + 1 if p + 1 < len(parts) else None
                        break
                    h = False
                p = p + 1 if p + 1 < len(parts) else 0
                if p == start:
                    break
        cache: dict[bytes, str] | None = None
        if match is None:
            if f.is_array and not f.is_dynamic and f.size:
                cache = {}
            r = _raw_renderer(f, endian, long_size, cache)
        else:
            r = _fmt_renderer(fmt, f, match, endian, long_size, find_func, find_printk)
            if has0x:
                r = _prefixed(r)
        renderers.append(_named(f.name, r))
        plan.append((f, match, has0x, r, cache))

    def render(buf: Any, off: int, size: int) -> str:
        return "".join([r(buf, off, size) for r in renderers])
    return _plan(plan, render)


def _digit_expr(x: str, part: PrintPart, width: int = 64, plain: bool = False
                ) -> tuple[str, str, bool] | None:
    """(python %-spec, expression, read signed) for a digit conversion of ``x``, or None
    to use the slow path.

    ``x`` is an unsigned value below ``2**width``; ``plain`` says it is the
    field's own value, ``width`` its size in bits. Masks and sign extensions
    that cannot change such a value are left out; when the conversion reads
    it back as a signed number of exactly that width, the third item asks
    for the field to be read with a signed struct code instead.
    """
    m = _CONV_RE.fullmatch(part.text)
    if not m or part.len_arg is not None or m.group("width") == "*" or m.group("prec") == "*":
        return None
    conv = m.group("conv")
    flags = m.group("flags") or ""
    if ("#" in flags and conv not in "xX") or conv == "p":
        return None
    bits = {-2: 8, -1: 16, 0: 32, 1: 64, 2: 64}.get(part.ls, 64)
    pbits = {"hh": 8, "h": 16, "": 32}.get(m.group("len") or "", 64)
    # C: (type of ``bits``) x, then printf reads ``pbits`` of it back
    if bits >= pbits:
        e = x if width <= pbits else f"({x} & {(1 << pbits) - 1})"
        ewidth = min(width, pbits)
    elif width < bits:  # the sign bit of ``bits`` is clear: nothing to extend
        e, ewidth = x, width
    else:
        sb = 1 << (bits - 1)
        e = f"(((({x} & {(1 << bits) - 1}) ^ {sb}) - {sb}) & {(1 << pbits) - 1})"
        ewidth = pbits
    signed_read = False
    if conv in "di" and ewidth >= pbits:
        if e == x and plain and width == pbits:
            signed_read = True
        else:
            sp = 1 << (pbits - 1)
            e = f"(({e} ^ {sp}) - {sp})"
    spec = "%" + flags + (m.group("width") or "")
    if m.group("prec") is not None:
        spec += "." + (m.group("prec") or "0")
    spec += "d" if conv in "diu" else conv
    if "#" in flags:
        # C prints no 0x before a zero (Python would)
        return "%s", f"({spec!r} % {e} if {e} else {spec.replace('#', '')!r} % {e})", signed_read
    return spec, e, signed_read


def _plan(plan, slow) -> RawFields:
    """Turn the per-field choices into a :class:`RawFields`: struct codes and one template."""
    codes: list[tuple[int, str, str]] = []
    pieces: list[str] = []
    exprs: list[str] = []
    env: dict[str, Any] = {}
    str_last = False
    for f, match, has0x, r, cache in plan:
        head = f" {f.name}=".replace("%", "%%") + ("0x" if has0x else "")
        num_ok = not (f.is_array or f.is_dynamic) and f.size in (1, 2, 4, 8)
        var = f"f{len(codes)}"
        expr = None
        if num_ok and match is None:
            signed_code = {1: "b", 2: "h", 4: "i", 8: "q"}[f.size]
            if f.is_pointer or (not f.signed and f.is_long) or (f.signed and f.size == 4
                                                                  and f.is_long):
                code, spec = signed_code.upper(), "0x%x"
            elif f.signed:
                code, spec = signed_code, {1: "%1d", 2: "%2d", 4: "%d", 8: "%d"}[f.size]
            else:
                code, spec = signed_code.upper(), "%d"
            codes.append((f.offset, code, var))
            pieces.append(head + spec)
            expr = var
        elif num_ok and match is not None and match.kind == "digit" and match.arg is not None:
            x = var
            width = 8 * f.size
            for t in reversed(match.arg.casts):
                mask = _mask_for_cast(t)
                if mask is not None:
                    x = f"({x} & {mask})"
                    width = min(width, mask.bit_length())
            de = _digit_expr(x, match, width, x == var)
            if de is not None:
                spec, expr, signed_read = de
                code = {1: "B", 2: "H", 4: "I", 8: "Q"}[f.size]
                codes.append((f.offset, code.lower() if signed_read else code, var))
                m = _CONV_RE.fullmatch(match.text)
                pre = match.text[:m.start()] if m else ""
                post = match.text[m.end():] if m else ""
                pieces.append(head + pre.replace("%", "%%") + spec + post.replace("%", "%%"))
        elif cache is not None:
            # a fixed array: its bytes select a cached rendering (comm names, stacks)
            codes.append((f.offset, f"{f.size}s", var))
            n = len(env)
            env[f"c{n}"] = cache
            env[f"h{n}"] = r
            pieces.append(f" {f.name}=".replace("%", "%%") + "%s")
            expr = f"(c{n}.get({var}) or h{n}(buf, off, size))"
        if expr is None:
            name = f"h{len(env)}"
            env[name] = r
            pieces.append(f" {f.name}=".replace("%", "%%") + "%s")
            expr = f"{name}(buf, off, size)"
        exprs.append(expr)
        str_last = pieces[-1].endswith("%s")
    return RawFields(codes, "".join(pieces), exprs, env, slow, str_last)


def _named(name: str, r):
    head = f" {name}="

    def render(buf, off, size):
        return head + r(buf, off, size)
    return render


def _prefixed(r):
    def render(buf, off, size):
        return "0x" + r(buf, off, size)
    return render


def _read_number(buf, o: int, size: int, endian: str) -> int:
    if size == 1:
        return buf[o]
    if size == 2:
        return struct.unpack_from(endian + "H", buf, o)[0]
    if size == 4:
        return struct.unpack_from(endian + "I", buf, o)[0]
    if size == 8:
        return struct.unpack_from(endian + "Q", buf, o)[0]
    return 0


def _raw_renderer(f: Field, endian: str, long_size: int, cache: dict | None = None):
    """libtraceevent's default rendering of field ``f``'s value.

    ``cache`` (fixed arrays only) collects renderings that depend on the
    field's bytes alone, by those bytes (bounded: cleared when it fills).
    """
    from ptreplay.formats.eventformat import dynamic_span

    little = endian == "<"
    if f.is_array:
        state = _FieldState(f.is_string)

        search = _UNPRINTABLE.search
        dynamic = f.is_dynamic
        fo, fs = f.offset, f.size

        def render_array(buf, off, size):
            if dynamic:
                start, length = dynamic_span(f, buf, off, size, little)
            else:
                start, length = fo, fs
            raw = buf[off + start:off + start + length]
            if state.string:
                head, nul, _ = raw.partition(b"\0")
                if search(head) is None:
                    if nul or (not length and dynamic):
                        text = head.decode("latin-1")
                        if cache is not None and nul:
                            _remember(cache, raw, text)
                        return text
                    # no NUL inside, or a flexible array ("char buf[]" of size 0, ftrace's
                    # print): "%s" reads on (bounded here by the record)
                    tail = bytes(buf[off + start:off + size])
                    return tail.partition(b"\0")[0].decode("latin-1")
            raw = bytes(raw)
            text = "ARRAY[" + raw.hex(",").replace(",", ", ") + "]"
            if cache is not None:
                _remember(cache, raw, text)
            return text
        return render_array
    fsize, fo = f.size, f.offset
    if f.is_pointer:
        st = _num_struct(fsize, endian)

        def render_ptr(buf, off, size):
            return "0x%x" % (st.unpack_from(buf, off + fo)[0] if st else 0)
        return render_ptr
    if f.signed:
        if fsize == 4:
            if f.is_long:
                stu = struct.Struct(endian + "I")
                return lambda buf, off, size: "0x%x" % stu.unpack_from(buf, off + fo)[0]  # noqa: UP031 (C printf)
            st4 = struct.Struct(endian + "i")
            return lambda buf, off, size: "%d" % st4.unpack_from(buf, off + fo)[0]  # noqa: UP031 (C printf)
        if fsize == 2:
            st2 = struct.Struct(endian + "h")
            return lambda buf, off, size: "%2d" % st2.unpack_from(buf, off + fo)[0]  # noqa: UP031 (C printf)
        if fsize == 1:
            st1 = struct.Struct("b")
            return lambda buf, off, size: "%1d" % st1.unpack_from(buf, off + fo)[0]  # noqa: UP031 (C printf)
        if fsize == 8:
            st8 = struct.Struct(endian + "q")
            return lambda buf, off, size: "%d" % st8.unpack_from(buf, off + fo)[0]  # noqa: UP031 (C printf)
        return lambda buf, off, size: "0"
    st = _num_struct(fsize, endian)
    if f.is_long:
        if st is None:
            return lambda buf, off, size: "0x0"
        return lambda buf, off, size: "0x%x" % st.unpack_from(buf, off + fo)[0]  # noqa: UP031 (C printf)
    if st is None:
        return lambda buf, off, size: "0"
    return lambda buf, off, size: "%d" % st.unpack_from(buf, off + fo)[0]  # noqa: UP031 (C printf)


#: renderings a fixed-array cache keeps at most (memory stays flat on long traces)
CACHE_LIMIT = 4096


def _remember(cache: dict, raw: bytes, text: str) -> None:
    if len(cache) >= CACHE_LIMIT:
        cache.clear()
    cache[raw] = text


def _num_struct(size: int, endian: str) -> struct.Struct | None:
    code = {1: "B", 2: "H", 4: "I", 8: "Q"}.get(size)
    return struct.Struct(endian + code) if code else None


def _arg_value(f: Field, arg: PrintArg, buf, off: int, size: int, endian: str) -> int:
    if f.offset + f.size > size:
        return 0
    v = _read_number(buf, off + f.offset, f.size, endian)
    for t in reversed(arg.casts):
        mask = _mask_for_cast(t)
        if mask is not None:
            v &= mask
    return v


def _fmt_renderer(fmt: EventFormat, f: Field, part: PrintPart, endian: str, long_size: int,
                  find_func, find_printk):
    arg = part.arg
    assert arg is not None
    spec = part.text
    ls = part.ls
    len_arg = part.len_arg

    def star(buf, off, size):
        if len_arg is None:
            return None
        if len_arg.number is not None:
            return len_arg.number
        if len_arg.field is not None and len_arg.field in fmt.by_name:
            v = _arg_value(fmt.by_name[len_arg.field], len_arg, buf, off, size, endian)
            v &= 0xFFFFFFFF
            return v - (1 << 32) if v >> 31 else v
        return 0

    if part.kind == "digit":
        def render_digit(buf, off, size):
            return c_format_int(spec, _arg_value(f, arg, buf, off, size, endian), ls,
                                star(buf, off, size))
        return render_digit
    if part.kind == "pointer":
        ext = spec[spec.index("p") + 1:][:1]
        if ext in ("F", "f", "S", "s"):
            def render_func(buf, off, size):
                v = _arg_value(f, arg, buf, off, size, endian)
                hit = find_func(v) if find_func else None
                if hit:
                    name, addr = hit
                    if ext in ("F", "S"):
                        return f"{name}+0x{v - addr:x}"
                    return name
                return "0x%x" % (v & 0xFFFFFFFF if long_size == 4 else v)
            return render_func

        def render_ptr(buf, off, size):
            v = _arg_value(f, arg, buf, off, size, endian)
            return "(nil)" if v == 0 else "0x%x" % v  # noqa: UP031 (C printf)
        return render_ptr
    # "%s" of a non-array field: a pointer to a string (bprint fmt) or the bytes
    def render_str(buf, off, size):
        if f.size == long_size:
            v = _read_number(buf, off + f.offset, f.size, endian)
            s = find_printk(v) if find_printk else None
            return s if s is not None else "%x" % v  # noqa: UP031 (C printf)
        raw = bytes(buf[off + f.offset:off + f.offset + (f.size or size - f.offset)])
        end = raw.find(b"\0")
        return (raw if end < 0 else raw[:end]).decode("latin-1")
    return render_str
