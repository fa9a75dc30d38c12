"""trace-cmd.dat, versions 6 and 7: Construct schemas, reader, writer, compression."""

from ptreplay.formats.tracedat.reader import TraceDatFile
from ptreplay.formats.tracedat.writer import TraceDatWriter

__all__ = ["TraceDatFile", "TraceDatWriter"]
