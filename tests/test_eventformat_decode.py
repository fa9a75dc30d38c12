"""Event format parsing, the Construct layout and the derived fast decoders agree."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ptreplay.formats.eventformat import parse_format
from ptreplay.formats.printfmt import c_format_int
from ptreplay.formats.tracedat.writer import build_event

KPROBE = """name: kvm_pgtable_stage2_map
ID: 1500
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:unsigned long __probe_ip;\toffset:8;\tsize:8;\tsigned:0;
\tfield:u64 addr;\toffset:16;\tsize:8;\tsigned:0;
\tfield:s32 ret;\toffset:24;\tsize:4;\tsigned:1;
\tfield:u8 level;\toffset:28;\tsize:1;\tsigned:0;
\tfield:char comm[8];\toffset:29;\tsize:8;\tsigned:0;
\tfield:__data_loc char[] name;\toffset:40;\tsize:4;\tsigned:0;

print fmt: "(%lx) addr=0x%Lx ret=%d level=%u", REC->__probe_ip, REC->addr, REC->ret, REC->level
"""


def test_fields_and_flags() -> None:
    f = parse_format(KPROBE, "kprobes")
    assert f.name == "kvm_pgtable_stage2_map" and f.id == 1500
    by = f.by_name
    assert by["__probe_ip"].is_long and not by["addr"].is_long
    assert by["comm"].is_array and by["comm"].is_string and by["comm"].arraylen == 8
    assert by["name"].is_dynamic and by["name"].is_string and by["name"].type == \
        "__data_loc char[]"
    assert [p.arg.field for p in f.print_parts if p.arg is not None] == \
        ["__probe_ip", "addr", "ret", "level"]
    assert not f.print_failed


@given(ip=st.integers(0, 2**64 - 1), addr=st.integers(0, 2**64 - 1),
       ret=st.integers(-2**31, 2**31 - 1), level=st.integers(0, 255),
       comm=st.text("abcxyz", max_size=8), name=st.text("abc/_", max_size=40),
       pid=st.integers(0, 2**31 - 1))
def test_build_then_decode_and_construct_parse(ip, addr, ret, level, comm, name, pid) -> None:
    f = parse_format(KPROBE, "kprobes")
    vals = {"__probe_ip": ip, "addr": addr, "ret": ret, "level": level, "comm": comm,
            "name": name}
    raw = build_event(f, vals, pid=pid)
    dec = f.decoder(("addr", "ret", "name", "common_pid", "comm", "level", "__probe_ip"))
    assert dec(raw, 0, len(raw)) == (addr, ret, name, pid, comm, level, ip)
    parsed = f.layout().parse(raw)  # the Construct declaration agrees
    assert parsed.addr == addr and parsed.ret == ret and parsed.common_type == 1500
    assert parsed.name & 0xFFFF == 44 and parsed.name >> 16 == len(name.encode()) + 1


def test_c_printf_emulation() -> None:
    assert c_format_int("%#016lx", 0xFFFF73E00000, 1) == "0x00ffff73e00000"
    assert c_format_int("%03d", 0, 0) == "000"
    assert c_format_int("%d", 0xFFFFFFFF, 0) == "-1"
    assert c_format_int("%u", 0xFFFFFFFFFFFFFFFF, 0) == "4294967295"
    assert c_format_int("%hhx", 0x1FF, 0) == "ff"
    assert c_format_int("%#x", 0, 0) == "0"
    assert c_format_int("%#o", 8, 0) == "010"
    assert c_format_int("%Lx", 2**64 - 1, 2) == "ffffffffffffffff"
    assert c_format_int("%ld", 2**64 - 5, 1) == "-5"
