"""The casemate log reader accepts exactly what casemate-check's parser accepts.

Ground truth: shared/conformance/casemate/FORMAT.md (read from casemate's
parser.c) and the shipped example logs.
"""

from __future__ import annotations

import io

import pytest
from conftest import CONFORMANCE, require_shared
from hypothesis import given, settings
from hypothesis import strategies as st

import ptreplay.formats.casemate as cm
from ptreplay.errors import TraceFormatError
from ptreplay.formats.casemate import CasemateReader

LOGS = CONFORMANCE / "casemate" / "logs"


def parse(data: bytes | str) -> tuple[list[tuple], CasemateReader]:
    if isinstance(data, str):
        data = data.encode("latin-1")
    reader = CasemateReader(io.BytesIO(data), "t.log")
    return list(reader), reader


def records(data: bytes | str) -> list[tuple]:
    return [r[:7] for r in parse(data)[0]]


def test_example_logs_parse_the_same_fast_slow_and_in_tiny_chunks(monkeypatch):
    require_shared()
    logs = sorted(LOGS.glob("*.log"))
    fast = {p.name: parse(p.read_bytes()) for p in logs}
    assert sum(len(recs) for recs, _ in fast.values()) == 270      # grep -c "^(" logs/*.log
    monkeypatch.setattr(cm, "_FAST", {})
    monkeypatch.setattr(cm, "_CHUNK", 7)
    for p in logs:
        recs, reader = parse(p.read_bytes())
        assert recs == fast[p.name][0], p.name
        assert (reader.expected, reader.expected_line) == \
            (fast[p.name][1].expected, fast[p.name][1].expected_line)


def test_a_record_in_canonical_form():
    line = ('(mem-write (id 7) (tid 2) (mem-order release) (address 0x40003000) '
            '(value 8000004FF) (src "f.c:12"))\n')
    assert parse(line)[0] == [(cm.K_MEM_WRITE, 7, 2, 1, 0x40003000, 0x8000004FF, "f.c:12", 1)]


def test_named_and_positional_fields_mix():
    assert records('(mem-write 7 0 plain 0x40003000 0x8000004ff "f.c:12")') == \
        records('(mem-write (id 7) (tid 0) (mem-order plain) (address 0x40003000) '
                '(value 0x8000004ff) (src "f.c:12"))')
    assert records('(barrier 8 0 dsb ish "f.c:13")') == \
        [(cm.K_DSB, 8, 0, "ish", None, None, "f.c:13")]
    assert records('(barrier (id 8) 0 dsb (kind ishst) "f.c:13")') == \
        [(cm.K_DSB, 8, 0, "ishst", None, None, "f.c:13")]
    assert records('(tlbi 9 0 ipas2e1is 0x1234 "f.c:14")') == \
        [(cm.K_TLBI, 9, 0, "ipas2e1is", None, 0x1234, "f.c:14")]
    assert records('(tlbi 9 0 vmalle1is "f.c:14")') == \
        [(cm.K_TLBI, 9, 0, "vmalle1is", None, None, "f.c:14")]
    assert records('(barrier 1 3 isb "x:1")') == [(cm.K_ISB, 1, 3, None, None, None, "x:1")]


def test_numbers_are_hex_without_0x_and_ids_are_atoi():
    assert records('(mem-init (id 5) (tid 0) (address 23f000) (size 1000) (src "a:1"))') == \
        [(cm.K_MEM_INIT, 5, 0, None, 0x23F000, 0x1000, "a:1")]
    assert records('(lock 12abc 0 0x "a:1")')[0][1:5] == (12, 0, None, 0)      # "0x" is 0
    assert records('(lock abc 03 10 "a:1")')[0][1:5] == (0, 3, None, 0x10)
    big = "1" + "0" * 16                                                      # 2**64 wraps to 0
    assert records(f'(lock 1 0 {big} "a:1")')[0][4] == 0
    assert records('(lock 1 0 FFFFFFFFFFFFFFFF "a:1")')[0][4] == (1 << 64) - 1


def test_records_across_lines_tabs_and_extra_spaces():
    text = ('  (mem-write\n\t(id 1)\n (tid 0)  (mem-order\tplain) (address 10)\n'
            '(value 20) (src "s:1")\n)\n(lock 2 0 30 "s:2") (unlock 3 0 30 "s:3")\n'
            '(mem-write (id 4) (tid 0) (mem-order plain) (address 0x10) (value 0x0) '
            '(src "s:4"))\n')
    recs, _ = parse(text)
    assert [r[:7] for r in recs] == [
        (cm.K_MEM_WRITE, 1, 0, 0, 0x10, 0x20, "s:1"), (cm.K_LOCK, 2, 0, None, 0x30, None, "s:2"),
        (cm.K_UNLOCK, 3, 0, None, 0x30, None, "s:3"),
        (cm.K_MEM_WRITE, 4, 0, 0, 0x10, 0, "s:4")]
    assert [r[7] for r in recs] == [1, 6, 6, 7]


def test_bang_ends_the_log_and_is_its_verdict():
    recs, reader = parse('(lock 1 0 10 "a:1")\n! BBM valid->valid\n(lock 2 0 not-hex "a:2")\n')
    assert len(recs) == 1 and reader.expected == "BBM valid->valid" and reader.expected_line == 2
    recs, reader = parse('(lock 1 0 10 "a:1")   !  double-use pte')
    assert len(recs) == 1 and reader.expected == "double-use pte"


@pytest.mark.parametrize("text,what,line", [
    ('(lock 1 0 10 "a:1")\r\n(lock 2 0 10 "a:2")\r\n', "expected '(' but got '\\r'", 1),
    ('(lock 1 0 10)\n', "expected '\"' but got ')'", 1),
    ('(lock 1 0 10 "no colon")\n', "bad src format", 1),
    ('(lock 1 0 0xzz "a:1")\n', "expected hex integer, but got '0xzz'", 1),
    ('(lock 1 0 0X10 "a:1")\n', "expected hex integer, but got '0X10'", 1),
    ('(lock 1 4 10 "a:1")\n', "tid out of range", 1),
    ('(lock 1 -1 10 "a:1")\n', "tid out of range", 1),
    ('\n\n(jump 1 0 10 "a:1")\n', "unexpected transition kind 'jump'", 3),
    ('(lock 1 0 10 "a:1"', "reached end of file unexpectedly", 1),
    ('(lock 1 0 10 "a:1\n', "reached end of file unexpectedly", 2),
    ("(lock 1 0 " + "1" * 600 + ' "a:1")', "word of unexpectedly long length", 1),
    ('(lock 1 0 10 "a:' + "x" * 600 + '")', "str of unexpectedly long length", 1),
    ('(lock (idx 1) 0 10 "a:1")', "expected 'id' but got idx'", 1),
    ('(mem-write 1 0 weird 10 10 "a:1")', "unexpected word 'weird', expected a memory_order", 1),
    ('(barrier 1 0 dsb sy "a:1")', "unexpected word 'sy', expected a barrier_dxb_kind", 1),
    ('(tlbi 1 0 vae2 10 "a:1")', "unexpected word 'vae2', expected a tlbi_kind", 1),
    ('(tlbi 1 0 vmalle1is (value 5) "a:1")', "expected 'src' but got value'", 1),
    ('(sysreg-write 1 0 msr 10 "a:1")', "expected a sysreg", 1),
    ('(hint 1 0 set_lock 10 10 "a:1")', "expected a hint", 1),
    ('(lock 1 0 10 "a:1") x', "expected '(' but got 'x'", 1),
])
def test_malformed_logs_are_rejected_with_the_line(text, what, line):
    with pytest.raises(TraceFormatError) as err:
        parse(text)
    assert what in err.value.what, err.value.what
    assert err.value.line == line
    assert err.value.source == "t.log"


# --- property: any rendering of a record reads back the same ---------------------------------

_SPACE = st.sampled_from([" ", "\t", "\n", "  ", " \n\t"])


@st.composite
def rendered(draw):
    """A random record, rendered with random named/positional fields and whitespace."""
    kind = draw(st.sampled_from(["mem-write", "mem-init", "lock", "barrier", "tlbi", "hint",
                                 "sysreg-write"]))
    seq = draw(st.integers(0, 10**6))
    tid = draw(st.integers(0, 3))
    num = st.integers(0, (1 << 64) - 1)
    fields: list[tuple[str | None, str]] = [("id", str(seq)), ("tid", str(tid))]
    a = b = c = None
    if kind == "mem-write":
        order = draw(st.sampled_from(["plain", "release"]))
        b, c = draw(num), draw(num)
        a = 0 if order == "plain" else 1
        fields += [("mem-order", order), ("address", b), ("value", c)]
        code = cm.K_MEM_WRITE
    elif kind == "mem-init":
        b, c = draw(num), draw(num)
        fields += [("address", b), ("size", c)]
        code = cm.K_MEM_INIT
    elif kind == "lock":
        b = draw(num)
        fields += [("address", b)]
        code = cm.K_LOCK
    elif kind == "barrier":
        a = draw(st.sampled_from(["ish", "ishst", "nsh"]))
        fields += [(None, "dsb"), ("kind", a)]
        code = cm.K_DSB
    elif kind == "tlbi":
        a = draw(st.sampled_from(cm.TLBI_OPS))
        fields += [(None, a)]
        if a in cm.TLBI_WITH_VALUE:
            c = draw(num)
            fields += [("value", c)]
        code = cm.K_TLBI
    elif kind == "hint":
        a = draw(st.sampled_from(cm.HINTS))
        b, c = draw(num), draw(num)
        fields += [("kind", a), ("location", b), ("value", c)]
        code = cm.K_HINT
    else:
        a = draw(st.sampled_from(cm.SYSREGS))
        c = draw(num)
        fields += [("sysreg", a), ("value", c)]
        code = cm.K_SYSREG
    src = draw(st.from_regex(r'[a-z/._]{1,20}:[0-9]{1,4}', fullmatch=True))
    fields.append(("src", f'"{src}"'))
    parts = [f"({kind}"]
    for key, value in fields:
        if isinstance(value, int):
            digits = draw(st.sampled_from(["{:x}", "{:X}", "0x{:x}", "0x{:X}"])).format(value)
            value = digits
        sp = draw(_SPACE)
        if key is not None and draw(st.booleans()):
            parts.append(f"{sp}({key}{draw(_SPACE)}{value}{draw(_SPACE)})")
        else:
            parts.append(f"{sp}{value}")
    parts.append(draw(st.sampled_from(["", " ", "\n"])) + ")")
    return "".join(parts), (code, seq, tid, a, b, c, src)


@settings(max_examples=120, deadline=None)
@given(st.lists(rendered(), min_size=1, max_size=6), st.sampled_from(["\n", " ", "\n\n", "\t"]))
def test_any_rendering_reads_back(recs, sep):
    text = sep.join(r[0] for r in recs) + "\n"
    assert records(text) == [r[1] for r in recs]
