"""trace-cmd.dat, versions 6 and 7: Construct schemas, reader, writer, compression.

The classes are imported on first use: reading a file must not pay for the
writer (and Construct).
"""

from __future__ import annotations

__all__ = ["TraceDatFile", "TraceDatWriter"]


def __getattr__(name: str) -> object:
    if name == "TraceDatFile":
        from ptreplay.formats.tracedat.reader import TraceDatFile

        return TraceDatFile
    if name == "TraceDatWriter":
        from ptreplay.formats.tracedat.writer import TraceDatWriter

        return TraceDatWriter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
