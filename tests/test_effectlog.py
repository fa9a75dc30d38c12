"""The effect-log reader: every oracle log reads back into steps; bad lines are errors with
their line number; reading is lazy."""

from __future__ import annotations

import gzip
import io
import json

import pytest
from test_checks_effects import oracle_files

from ptreplay.checks.stream import read_effect_log
from ptreplay.effects import effect_to_json
from ptreplay.errors import TraceFormatError
from ptreplay.formats.effectlog import looks_like_effect_log


def test_oracle_logs_read_back_line_for_line():
    for path in oracle_files("linux-6.1")[:20]:
        raw = path.read_bytes()
        text = gzip.decompress(raw).decode().splitlines()
        plain = list(read_effect_log(io.BytesIO(gzip.decompress(raw)), "t"))
        packed = list(read_effect_log(io.BytesIO(raw), "t"))
        assert plain == packed
        rebuilt = {}
        for step in plain:
            op = step.op
            assert op is not None and op.line == op.index + 1
            assert json.loads(text[op.index])["op"] == op.name
            for i, effect in enumerate(step.effects):
                rebuilt[step.effect_base + i] = effect_to_json(effect)
        assert all(text[i] == line for i, line in rebuilt.items())
        assert len(rebuilt) + len(plain) == len(text)


def test_effects_before_any_op_and_blank_lines():
    data = b'{"ev":"dsb","opt":"ish"}\n\n{"op":"unmap","addr":"0x0","ret":0}\n' \
           b'{"ev":"isb"}\n\n{"ev":"dsb","opt":"ishst"}\n'
    steps = list(read_effect_log(io.BytesIO(data), "t"))
    assert steps[0].op is None and steps[0].effect_base == 0
    assert steps[1].op.name == "unmap" and steps[1].op.args == {"addr": "0x0"}
    assert steps[1].effect_indexes == [3, 5]


def test_hex_return_values():
    data = b'{"op":"mkold","addr":"0x1000","ret":"0x40000100001747"}\n'
    assert next(read_effect_log(io.BytesIO(data), "t")).op.ret == 0x40000100001747


@pytest.mark.parametrize("data,what,line", [
    (b'{"op":"map"}\nnot json\n', "not a JSON line", 2),
    (b'[1,2]\n', "expected a JSON object", 1),
    (b'{"x":1}\n', 'neither "op" nor "ev"', 1),
    (b'{"op":"map","ret":0}\n{"ev":"pte","ptep":"0x0","old":"0x0"}\n', "missing field 'new'", 2),
    (b'{"op":"map","ret":0}\n{"ev":"get","pa":"zz","count":1}\n', "bad effect line", 2),
    (b'{"op":3}\n', "op: expected a string", 1),
    (b'{"op":"map","ret":[1]}\n', "ret: expected a number", 1),
    (b'{"op":"map","ret":"0xzz"}\n', "bad op line", 1),
    (b'{"op":"map"}\n\xff\xfe\n', "not a JSON line", 2),
    (gzip.compress(b'{"op":"map","ret":0}\n' * 100)[:-12], "cannot read", None),
])
def test_bad_lines(data, what, line):
    with pytest.raises(TraceFormatError) as err:
        list(read_effect_log(io.BytesIO(data), "e.jsonl"))
    assert what in err.value.what
    assert err.value.line == line or line is None and err.value.line is not None
    assert err.value.source == "e.jsonl"


def test_reading_is_lazy():
    data = b'{"op":"init","ret":0}\n{"ev":"isb"}\n{"op":"destroy","ret":null}\nBROKEN\n'
    steps = read_effect_log(io.BytesIO(data), "t")
    assert next(steps).op.name == "init"      # the broken line is not read yet
    with pytest.raises(TraceFormatError):
        list(steps)


def test_detection():
    assert looks_like_effect_log(b'  {"op":"init"}')
    assert looks_like_effect_log(b"\x1f\x8b\x08")
    assert not looks_like_effect_log(b"(mem-write 1 0")
