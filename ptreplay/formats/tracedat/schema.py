"""Construct schemas of trace-cmd.dat, file versions 6 and 7 (trace-cmd.dat.v6(5), .v7(5)).

Declared once and used in both directions: the reader parses with them, the
writer builds with them. Everything after the initial ``endian`` byte is in
the file's endianness, so the schemas are built per endianness by
:func:`schemas` (cached).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import construct as cs

__all__ = [
    "MAGIC", "FileHeader", "Schemas", "schemas", "OPTION_NAMES", "Option", "Section",
    "SEC_FL_COMPRESS",
]

MAGIC = b"\x17\x08\x44tracing"

#: The initial format, up to the page size (same in v6 and v7).
FileHeader = cs.Struct(
    "magic" / cs.Const(MAGIC),
    "version" / cs.CString("ascii"),
    "endian" / cs.Int8ub,  # 0 little, 1 big
    "long_size" / cs.Int8ub,
    "page_size" / cs.IfThenElse(cs.this.endian == 0, cs.Int32ul, cs.Int32ub),
)


class Option:
    """Option (and v7 section) ids, ``enum tracecmd_option_id``."""

    DONE = 0
    DATE = 1
    CPUSTAT = 2
    BUFFER = 3
    TRACECLOCK = 4
    UNAME = 5
    HOOK = 6
    OFFSET = 7
    CPUCOUNT = 8
    VERSION = 9
    PROCMAPS = 10
    TRACEID = 11
    TIME_SHIFT = 12
    GUEST = 13
    TSC2NSEC = 14
    STRINGS = 15
    HEADER_INFO = 16
    FTRACE_EVENTS = 17
    EVENT_FORMATS = 18
    KALLSYMS = 19
    PRINTK = 20
    CMDLINES = 21
    BUFFER_TEXT = 22


Section = Option  # v7 sections use the option ids
OPTION_NAMES = {v: k for k, v in vars(Option).items() if k.isupper()}
SEC_FL_COMPRESS = 1


@dataclass(frozen=True)
class Schemas:
    """The Construct schemas of one endianness."""

    u16: cs.Construct
    u32: cs.Construct
    u64: cs.Construct
    #: v7: "name\0version\0" then the offset of the first options section
    compression: cs.Struct
    #: v7 section header
    section_header: cs.Struct
    #: header of a compressed block (a compressed section's payload)
    block_header: cs.Struct
    #: header of one compressed chunk of CPU data
    chunk_header: cs.Struct
    #: one option: id, size, data
    option: cs.Struct
    #: v6: the end of the options list (id 0 alone)
    option_id: cs.Construct
    #: "header_page\0" + u64 size + data, "header_event\0" + u64 size + data
    header_info: cs.Struct
    #: u64 size + data (ftrace/event format files, cmdlines, v6 trace clock)
    sized64: cs.Struct
    #: u32 size + data (kallsyms, printk formats)
    sized32: cs.Struct
    #: v6 per-CPU flyrecord entry / v7 BUFFER option CPU entry
    cpu_entry_v6: cs.Struct
    cpu_entry_v7: cs.Struct
    #: v7 BUFFER option payload
    buffer_option_v7: cs.Struct
    #: v6 BUFFER option payload (offset + name)
    buffer_option_v6: cs.Struct
    #: BUFFER_TEXT option (latency) payload
    buffer_text_option: cs.Struct
    #: TSC2NSEC option payload
    tsc2nsec: cs.Struct


@cache
def schemas(little: bool) -> Schemas:
    """The schemas for a file of the given endianness."""
    u16 = cs.Int16ul if little else cs.Int16ub
    u32 = cs.Int32ul if little else cs.Int32ub
    u64 = cs.Int64ul if little else cs.Int64ub
    cpu_v7 = cs.Struct("cpu" / u32, "offset" / u64, "size" / u64)
    return Schemas(
        u16=u16, u32=u32, u64=u64,
        compression=cs.Struct(
            "name" / cs.CString("ascii"),
            "version" / cs.CString("ascii"),
            "options_offset" / u64,
        ),
        section_header=cs.Struct("id" / u16, "flags" / u16, "description" / u32, "size" / u64),
        block_header=cs.Struct("csize" / u32, "usize" / u32),
        chunk_header=cs.Struct("csize" / u32, "usize" / u32),
        option=cs.Struct("id" / u16, "size" / u32, "data" / cs.Bytes(cs.this.size)),
        option_id=u16,
        header_info=cs.Struct(
            cs.Const(b"header_page\0"),
            "header_page" / cs.Prefixed(u64, cs.GreedyBytes),
            cs.Const(b"header_event\0"),
            "header_event" / cs.Prefixed(u64, cs.GreedyBytes),
        ),
        sized64=cs.Prefixed(u64, cs.GreedyBytes),
        sized32=cs.Prefixed(u32, cs.GreedyBytes),
        cpu_entry_v6=cs.Struct("offset" / u64, "size" / u64),
        cpu_entry_v7=cpu_v7,
        buffer_option_v7=cs.Struct(
            "offset" / u64,
            "name" / cs.CString("utf8"),
            "clock" / cs.CString("utf8"),
            "page_size" / u32,
            "cpus" / cs.PrefixedArray(u32, cpu_v7),
        ),
        buffer_option_v6=cs.Struct("offset" / u64, "name" / cs.CString("utf8")),
        buffer_text_option=cs.Struct(
            "offset" / u64, "name" / cs.CString("utf8"), "clock" / cs.CString("utf8")),
        tsc2nsec=cs.Struct("mult" / u32, "shift" / u32, "offset" / u64),
    )
