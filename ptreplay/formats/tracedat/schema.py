"""Construct schemas of trace-cmd.dat, file versions 6 and 7 (trace-cmd.dat.v6(5), .v7(5)).

Declared once and used in both directions: the writer builds with them, the
reader parses with the struct layouts derived from them
(:func:`derived_layouts`, stored in :mod:`.layouts` so that reading needs no
Construct; ``python -m ptreplay.formats.tracedat.schema`` regenerates that
module and a test fails when it is stale). Everything after the initial
``endian`` byte is in the file's endianness, so the schemas are built per
endianness by :func:`schemas` (cached).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import construct as cs

from ptreplay.formats.tracedat.options import (
    MAGIC,
    OPTION_NAMES,
    SEC_FL_COMPRESS,
    Option,
    Section,
)

__all__ = [
    "MAGIC", "FileHeader", "Schemas", "schemas", "OPTION_NAMES", "Option", "Section",
    "SEC_FL_COMPRESS",
]

#: The initial format up to the long size (same in v6 and v7). The page size
#: follows as a ``u32`` in the file's byte order (:attr:`Schemas.u32`).
FileHeader = cs.Struct(
    "magic" / cs.Const(MAGIC),
    "version" / cs.CString("ascii"),
    "endian" / cs.Int8ub,  # 0 little, 1 big
    "long_size" / cs.Int8ub,
)


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


#: Schemas members the reader uses through their derived layouts (``option``
#: is read member by member: its data length is its own ``size`` field).
DERIVED = ("u16", "u32", "u64", "compression", "section_header", "block_header", "chunk_header",
           "header_info", "sized64", "sized32", "cpu_entry_v6", "cpu_entry_v7",
           "buffer_option_v7", "buffer_option_v6", "buffer_text_option", "tsc2nsec")


def derived_layouts() -> dict:
    """The steps (:func:`ptreplay.formats.layout.derive`) of :data:`FileHeader` and of
    the :data:`DERIVED` schemas of each byte order."""
    from ptreplay.formats.layout import derive

    return {
        "FileHeader": derive(FileHeader),
        "little": {name: derive(getattr(schemas(True), name)) for name in DERIVED},
        "big": {name: derive(getattr(schemas(False), name)) for name in DERIVED},
    }


def layouts_module_source() -> str:
    """The text of :mod:`ptreplay.formats.tracedat.layouts`."""
    import pprint

    d = derived_layouts()
    out = ['"""Struct layouts derived from the Construct schemas of schema.py.',
           "",
           "GENERATED: do not edit.",
           "Regenerate with ``python -m ptreplay.formats.tracedat.schema``;",
           "tests/test_layouts_derived.py fails when this file and schema.py disagree.",
           '"""',
           "",
           "# fmt: off",
           "FILE_HEADER = " + pprint.pformat(d["FileHeader"], width=90),
           "",
           "LITTLE = " + pprint.pformat(d["little"], width=90, sort_dicts=False),
           "",
           "BIG = " + pprint.pformat(d["big"], width=90, sort_dicts=False),
           ""]
    return "\n".join(out)


if __name__ == "__main__":
    from pathlib import Path

    target = Path(__file__).with_name("layouts.py")
    target.write_text(layouts_module_source())
    print(f"wrote {target}")
