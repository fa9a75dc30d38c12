"""The compiled raw printers (one struct, one % template) print what the field-by-field
renderer prints (libtraceevent's rules, ``c_format_int``), for random formats and bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ptreplay.formats.eventformat import parse_format
from ptreplay.formats.printfmt import CACHE_LIMIT, compile_raw_printer, raw_fields

# (C type, size, signed)
NUMBERS = [
    ("unsigned char", 1, 0), ("u8", 1, 0), ("s8", 1, 1), ("unsigned short", 2, 0),
    ("short", 2, 1), ("u16", 2, 0), ("s16", 2, 1), ("unsigned int", 4, 0), ("int", 4, 1),
    ("u32", 4, 0), ("s32", 4, 1), ("unsigned long", 8, 0), ("long", 8, 1), ("u64", 8, 0),
    ("s64", 8, 1), ("void *", 8, 0), ("unsigned long long", 8, 0), ("long long", 8, 1),
    ("pid_t", 4, 1), ("bool", 1, 0),
]
CONVERSIONS = ["%d", "%u", "%x", "%X", "%lx", "%llx", "%Lx", "%ld", "%lu", "%llu", "%lld", "%hhx",
               "%hx", "%hd", "%hhd", "%03d", "%08x", "%#x", "%#016lx", "%#08lx", "%016llx", "%5d",
               "%-5d", "%i", "%p", "%o", "%#o", "%zu", "%.3d", "%+d", "% d"]
CASTS = ["", "(u8)", "(u16)", "(u32)", "(int)", "(unsigned int)", "(long)", "(unsigned long)",
         "(u64)", "(char)", "(unsigned char)", "(s16)"]

COMMON = """\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;
"""


@st.composite
def formats(draw):
    """A random event format text and its fixed size."""
    n = draw(st.integers(1, 7))
    lines = []
    printed = []
    off = 8
    for k in range(n):
        kind = draw(st.sampled_from(["number"] * 6 + ["chars", "array", "dynamic"]))
        name = f"f{k}"
        if kind == "number":
            ctype, size, signed = draw(st.sampled_from(NUMBERS))
            off = -(-off // size) * size
            lines.append(f"\tfield:{ctype} {name};\toffset:{off};\tsize:{size};"
                         f"\tsigned:{signed};")
            if draw(st.booleans()):
                printed.append((draw(st.sampled_from(CONVERSIONS)),
                                f"{draw(st.sampled_from(CASTS))}REC->{name}"))
        elif kind == "chars":
            size = draw(st.sampled_from([4, 8, 16]))
            lines.append(f"\tfield:char {name}[{size}];\toffset:{off};\tsize:{size};"
                         f"\tsigned:1;")
            if draw(st.booleans()):
                printed.append(("%s", f"REC->{name}"))
        elif kind == "array":
            off = -(-off // 8) * 8
            size = 8 * draw(st.integers(1, 4))
            lines.append(f"\tfield:unsigned long {name}[{size // 8}];\toffset:{off};"
                         f"\tsize:{size};\tsigned:0;")
        else:
            size = 4
            off = -(-off // 4) * 4
            lines.append(f"\tfield:__data_loc char[] {name};\toffset:{off};\tsize:4;"
                         f"\tsigned:1;")
            if draw(st.booleans()):
                printed.append(("%s", f"__get_str({name})"))
        off += size
    if draw(st.booleans()):
        printed = draw(st.permutations(printed))
    fmt = " ".join(f"a{k}={conv}" for k, (conv, _) in enumerate(printed))
    args = "".join(f", {arg}" for _, arg in printed)
    text = (f"name: ev\nID: 7\nformat:\n{COMMON}\n" + "\n".join(lines) +
            f'\n\nprint fmt: "{fmt}"{args}\n')
    return text, off


@settings(max_examples=300, deadline=None)
@given(fmt_size=formats(), little=st.booleans(), data=st.data())
def test_compiled_printer_equals_field_by_field(fmt_size, little: bool, data) -> None:
    text, size = fmt_size
    fmt = parse_format(text, "test", long_size=8)
    slow = raw_fields(fmt, little, 8).slow
    fast = compile_raw_printer(fmt, little, 8)
    for _ in range(3):
        payload = data.draw(st.binary(min_size=size, max_size=size + 16))
        # numbers at their extremes too
        if data.draw(st.booleans()):
            payload = data.draw(st.sampled_from([b"\0", b"\xff", b"\x80", b"\x7f"])) * len(payload)
        buf = b"\xaa" * 8 + payload
        assert fast(buf, 8, len(payload)) == slow(buf, 8, len(payload))


def test_array_cache_stays_bounded() -> None:
    """Renderings of fixed arrays are cached by their bytes, never more than CACHE_LIMIT."""
    text = (f"name: ev\nID: 7\nformat:\n{COMMON}\n"
            "\tfield:unsigned long stack[2];\toffset:8;\tsize:16;\tsigned:0;\n\n"
            'print fmt: "x"\n')
    fmt = parse_format(text, "test", long_size=8)
    render = compile_raw_printer(fmt, True, 8)
    cache = render.__globals__["c0"]  # the namespace the printer was compiled in
    sizes = set()
    for i in range(CACHE_LIMIT * 3):
        raw = i.to_bytes(16, "little")
        want = " stack=ARRAY[" + ", ".join(f"{b:02x}" for b in raw) + "]"
        assert render(bytes(8) + raw, 0, 24) == want
        sizes.add(len(cache))
    assert max(sizes) == CACHE_LIMIT
