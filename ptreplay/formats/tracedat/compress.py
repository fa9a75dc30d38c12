"""Compression of trace.dat v7 sections and CPU-data chunks (zstd, zlib).

trace-cmd compresses with ``ZSTD_compress2`` (frames without a content size)
or zlib's ``compress2`` (a zlib stream). Decompression here is bounded by
the uncompressed size the file declares, and that size is itself checked
against what the compressed bytes can plausibly expand to, so a corrupt size
field cannot make us allocate more than the file justifies.
"""

from __future__ import annotations

import io
import zlib

from ptreplay.errors import TraceFormatError

__all__ = ["Codec", "codec_for", "MAX_RATIO"]

#: No real trace compresses better than this (zstd of padded pages is ~50:1).
MAX_RATIO = 2048


class Codec:
    """One compression algorithm: ``decompress`` and ``compress`` of whole blocks."""

    name = "none"
    version = ""

    def decompress(self, data: bytes, usize: int, source: str | None, offset: int) -> bytes:
        raise NotImplementedError

    def compress(self, data: bytes) -> bytes:
        raise NotImplementedError


def _check_ratio(csize: int, usize: int, source: str | None, offset: int) -> None:
    if usize > csize * MAX_RATIO + 65536:
        raise TraceFormatError(
            f"compressed block of {csize} bytes claims {usize} uncompressed bytes", source,
            offset=offset)


class ZstdCodec(Codec):
    name = "zstd"

    def __init__(self) -> None:
        import zstandard

        self._zstd = zstandard
        self.version = zstandard.ZSTD_VERSION and ".".join(map(str, zstandard.ZSTD_VERSION))
        self._d = zstandard.ZstdDecompressor()
        self._c = zstandard.ZstdCompressor(level=3, write_content_size=False)

    def decompress(self, data: bytes, usize: int, source: str | None, offset: int) -> bytes:
        _check_ratio(len(data), usize, source, offset)
        try:
            with self._d.stream_reader(io.BytesIO(data), read_across_frames=True) as reader:
                out = reader.read(usize + 1)
        except self._zstd.ZstdError as err:
            raise TraceFormatError(f"corrupt zstd block ({err})", source, offset=offset) from None
        if len(out) != usize:
            raise TraceFormatError(
                f"zstd block gives {len(out)} bytes, header says {usize}", source, offset=offset)
        return out

    def compress(self, data: bytes) -> bytes:
        return self._c.compress(data)


class ZlibCodec(Codec):
    name = "zlib"
    version = zlib.ZLIB_VERSION

    def decompress(self, data: bytes, usize: int, source: str | None, offset: int) -> bytes:
        _check_ratio(len(data), usize, source, offset)
        try:
            obj = zlib.decompressobj()
            out = obj.decompress(data, usize + 1)
        except zlib.error as err:
            raise TraceFormatError(f"corrupt zlib block ({err})", source, offset=offset) from None
        if len(out) != usize:
            raise TraceFormatError(
                f"zlib block gives {len(out)} bytes, header says {usize}", source, offset=offset)
        return out

    def compress(self, data: bytes) -> bytes:
        return zlib.compress(data, 6)


def codec_for(name: str, source: str | None = None, offset: int | None = None) -> Codec | None:
    """The codec called ``name`` ("none" gives None)."""
    if name == "none":
        return None
    if name == "zstd":
        return ZstdCodec()
    if name == "zlib":
        return ZlibCodec()
    raise TraceFormatError(f"unknown compression algorithm {name!r}", source, offset=offset)
