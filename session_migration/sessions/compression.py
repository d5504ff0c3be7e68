"""Recognise and (boundedly) inflate the compressors django-redis and Rails can apply.

Detection is by magic bytes, because django-redis leaves short values uncompressed
(`min_length`) so a compressed store holds both kinds. Output is capped at `MAX_INFLATED`
so a decompression bomb cannot exhaust memory. lz4 and zstd are optional imports: when the
library is absent the caller is told (`Unavailable`) and can report "not checked".
"""

from __future__ import annotations

import lzma
import zlib

MAX_INFLATED = 64 * 1024 * 1024


class CompressionError(ValueError):
    """The compressed stream is broken or inflates beyond the cap."""


class Unavailable(Exception):
    """No decompressor for this format is installed."""


def sniff(data: bytes) -> str | None:
    if len(data) >= 2 and data[0] == 0x78 and ((data[0] << 8) | data[1]) % 31 == 0:
        return "zlib"
    if data.startswith(b"\x1f\x8b"):
        return "gzip"
    if data.startswith(b"\xfd7zXZ\x00"):
        return "lzma"
    if data.startswith(b"\x04\x22\x4d\x18"):
        return "lz4"
    if data.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    return None


def inflate(data: bytes, kind: str) -> bytes:
    try:
        if kind in ("zlib", "gzip", "deflate"):
            wbits = {"zlib": 15, "gzip": 31, "deflate": -15}[kind]
            d = zlib.decompressobj(wbits)
            out = d.decompress(data, MAX_INFLATED)
            if d.unconsumed_tail:
                raise CompressionError("inflates beyond the size cap")
            if not d.eof:
                raise CompressionError("truncated compressed stream")
            return out
        if kind == "lzma":
            d2 = lzma.LZMADecompressor()
            out = d2.decompress(data, MAX_INFLATED)
            if not d2.eof:
                raise CompressionError("truncated or oversized compressed stream")
            return out
        if kind == "lz4":
            return _lz4(data)
        if kind == "zstd":
            return _zstd(data)
    except (zlib.error, lzma.LZMAError) as exc:
        raise CompressionError(f"{kind} stream is broken") from exc
    raise CompressionError(f"unknown compression {kind}")


def _lz4(data: bytes) -> bytes:
    try:
        import lz4.frame  # type: ignore[import-not-found]
    except ImportError:
        raise Unavailable("lz4") from None
    try:
        d = lz4.frame.LZ4FrameDecompressor()
        out = d.decompress(data, max_length=MAX_INFLATED)
    except RuntimeError as exc:
        raise CompressionError("lz4 stream is broken") from exc
    if not d.eof:
        raise CompressionError("truncated or oversized lz4 stream")
    return out


def _zstd(data: bytes) -> bytes:
    try:
        import zstandard  # type: ignore[import-not-found]
    except ImportError:
        raise Unavailable("zstd") from None
    try:  # raises when the output would exceed the cap
        return zstandard.ZstdDecompressor().decompress(data, max_output_size=MAX_INFLATED)
    except zstandard.ZstdError as exc:
        raise CompressionError("zstd stream is broken or oversized") from exc
