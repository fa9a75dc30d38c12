"""The reader's struct layouts are derived from the Construct schemas, and parse like them."""

from __future__ import annotations

from pathlib import Path

import construct as cs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ptreplay.formats import layout
from ptreplay.formats.tracedat import layouts as derived
from ptreplay.formats.tracedat import schema
from ptreplay.formats.tracedat.reader import file_header
from ptreplay.formats.tracedat.reader import layouts as reader_layouts


def test_generated_module_is_up_to_date() -> None:
    """Regenerate with ``python -m ptreplay.formats.tracedat.schema`` when this fails."""
    assert Path(derived.__file__).read_text() == schema.layouts_module_source()


def _plain(value: object) -> object:
    """Construct's parse result as plain data (Containers as dicts, ListContainers as lists)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _plain_record(value: object) -> object:
    if isinstance(value, layout.Record):
        return {k: _plain_record(v) for k, v in vars(value).items()}
    if isinstance(value, list):
        return [_plain_record(v) for v in value]
    return value


FIXED = ["u16", "u32", "u64", "section_header", "block_header", "chunk_header", "cpu_entry_v6",
         "cpu_entry_v7", "tsc2nsec"]


@pytest.mark.parametrize("name", FIXED)
@given(data=st.binary(min_size=0, max_size=40), little=st.booleans())
def test_fixed_layouts_parse_like_construct(name: str, data: bytes, little: bool) -> None:
    con = getattr(schema.schemas(little), name)
    lay = getattr(reader_layouts(little), name)
    assert lay.size == con.sizeof()
    if len(data) < con.sizeof():
        with pytest.raises(layout.LayoutError):
            lay.parse_bytes(data)
        return
    want = con.parse(data)
    got = lay.parse_bytes(data)
    if isinstance(want, int):
        assert got == want
    else:
        assert _plain_record(got) == _plain(want)


_name = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)),
                max_size=12)
_u32 = st.integers(0, 2**32 - 1)
_u64 = st.integers(0, 2**64 - 1)
_cpu = st.fixed_dictionaries({"cpu": _u32, "offset": _u64, "size": _u64})
VARIABLE = {
    "buffer_option_v7": st.fixed_dictionaries(
        {"offset": _u64, "name": _name, "clock": _name, "page_size": _u32,
         "cpus": st.lists(_cpu, max_size=4)}),
    "buffer_option_v6": st.fixed_dictionaries({"offset": _u64, "name": _name}),
    "buffer_text_option": st.fixed_dictionaries({"offset": _u64, "name": _name,
                                                 "clock": _name}),
    "compression": st.fixed_dictionaries(
        {"name": st.text("abcz0123456789.", max_size=8),
         "version": st.text("abcz0123456789.", max_size=8), "options_offset": _u64}),
    "header_info": st.fixed_dictionaries({"header_page": st.binary(max_size=30),
                                          "header_event": st.binary(max_size=30)}),
    "sized64": st.binary(max_size=30),
    "sized32": st.binary(max_size=30),
}


@pytest.mark.parametrize("name", sorted(VARIABLE))
@given(data=st.data(), little=st.booleans())
def test_variable_layouts_parse_like_construct(name: str, data, little: bool) -> None:
    con = getattr(schema.schemas(little), name)
    lay = getattr(reader_layouts(little), name)
    raw = con.build(data.draw(VARIABLE[name]))
    want = con.parse(raw)
    got = lay.parse_bytes(raw)
    assert (_plain_record(got) if isinstance(got, layout.Record) else got) == _plain(want)
    # cut short anywhere: both refuse it
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(cs.ConstructError):
        con.parse(raw[:cut])
    with pytest.raises(layout.LayoutError):
        lay.parse_bytes(raw[:cut])


@given(version=st.sampled_from(["6", "7"]), endian=st.integers(0, 255),
       long_size=st.integers(0, 255), junk=st.binary(max_size=8))
def test_file_header(version: str, endian: int, long_size: int, junk: bytes) -> None:
    raw = schema.FileHeader.build({"version": version, "endian": endian,
                                   "long_size": long_size}) + junk
    assert _plain_record(file_header().parse_bytes(raw)) == _plain(schema.FileHeader.parse(raw))
    with pytest.raises(layout.LayoutError):
        file_header().parse_bytes(b"\x17\x08\x44tracinX" + raw[10:])


def test_unsupported_constructs_are_not_derived() -> None:
    with pytest.raises(NotImplementedError):
        layout.derive(cs.Struct("a" / cs.IfThenElse(cs.this._.x == 0, cs.Int8ub, cs.Int16ub)))
    with pytest.raises(NotImplementedError):
        layout.derive(cs.Struct("a" / cs.Bytes(cs.this.n)))
    with pytest.raises(NotImplementedError):
        layout.derive(cs.Struct("a" / cs.Struct("b" / cs.Int8ub)))
