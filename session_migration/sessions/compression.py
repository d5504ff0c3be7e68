"""Recognise and (boundedly) inflate the compressors django-redis and Rails can apply.

Detection is by magic bytes, because django-redis leaves short values uncompressed
(`min_length`) so a compressed store holds both kinds. Every format is inflated as a stream
that stops at `output_cap(len(data))`: at most `MAX_INFLATED` bytes and at most `MAX_RATIO`
times the compressed size (about deflate's own maximum ratio), so a decompression bomb costs
time and memory in proportion to its own size. A size the stream declares up front (zstd,
lz4) is never trusted for an allocation; liblzma's memory is limited with `memlimit` and
zstd's window with `max_window_size`. lz4 and zstd are optional imports: when the library
is absent the caller is told (`Unavailable`) and can report "not checked".

Error messages are fixed sentences (`CAP_EXCEEDED`, `BROKEN`, ...): they become verdict
reasons, which must not carry payload details.
"""

from __future__ import annotations

import io
import lzma
import zlib

MAX_INFLATED = 16 << 20
MAX_RATIO = 1024
_MIN_CAP = 64 << 10  # small values may inflate this far whatever their ratio
LZMA_MEMLIMIT = 64 << 20  # liblzma's own allocations (dictionary) for one value
ZSTD_MAX_WINDOW = 16 << 20
_CHUNK = 1 << 20
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

CAP_EXCEEDED = "compressed payload inflates beyond the size cap"
TRUNCATED = "compressed payload is truncated"
BROKEN = "compressed payload is broken"
MEMORY_LIMIT = "compressed payload needs more decoder memory than the limit"


class CompressionError(ValueError):
    """The compressed stream is broken or inflates beyond the cap (the message is fixed)."""


class Unavailable(Exception):
    """No decompressor for this format is installed."""


def output_cap(compressed_bytes: int) -> int:
    """The most bytes `compressed_bytes` of input may inflate to."""
    return min(MAX_INFLATED, max(_MIN_CAP, MAX_RATIO * compressed_bytes))


def sniff(data: bytes) -> str | None:
    if len(data) >= 2 and data[0] == 0x78 and ((data[0] << 8) | data[1]) % 31 == 0:
        return "zlib"
    if data.startswith(b"\x1f\x8b"):
        return "gzip"
    if data.startswith(b"\xfd7zXZ\x00"):
        return "lzma"
    if data.startswith(b"\x04\x22\x4d\x18"):
        return "lz4"
    if data.startswith(ZSTD_MAGIC):
        return "zstd"
    return None


def inflate(data: bytes, kind: str) -> bytes:
    """The inflated bytes, or `CompressionError`/`Unavailable`; never more than `output_cap`."""
    cap = output_cap(len(data))
    if kind in ("zlib", "gzip", "deflate"):
        return _zlib(data, {"zlib": 15, "gzip": 31, "deflate": -15}[kind], cap)
    if kind == "lzma":
        return _lzma(data, cap)
    if kind == "lz4":
        return _lz4(data, cap)
    if kind == "zstd":
        return _zstd(data, cap)
    raise CompressionError("unknown compression")


def _zlib(data: bytes, wbits: int, cap: int) -> bytes:
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(data, cap)
    except zlib.error:
        raise CompressionError(BROKEN) from None
    if d.unconsumed_tail:
        raise CompressionError(CAP_EXCEEDED)
    if not d.eof:
        raise CompressionError(TRUNCATED)
    return out


def _lzma(data: bytes, cap: int) -> bytes:
    d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=LZMA_MEMLIMIT)
    try:
        out = d.decompress(data, cap)
    except MemoryError:
        raise CompressionError(MEMORY_LIMIT) from None
    except lzma.LZMAError as exc:
        raise CompressionError(MEMORY_LIMIT if "memory" in str(exc).lower() else BROKEN) from None
    if not d.eof:
        raise CompressionError(TRUNCATED if d.needs_input else CAP_EXCEEDED)
    return out


def _lz4(data: bytes, cap: int) -> bytes:
    try:
        import lz4.frame  # type: ignore[import-not-found]
    except ImportError:
        raise Unavailable("lz4") from None
    d = lz4.frame.LZ4FrameDecompressor()
    try:
        out = d.decompress(data, max_length=cap)
    except RuntimeError:
        raise CompressionError(BROKEN) from None
    if not d.eof:
        raise CompressionError(TRUNCATED if d.needs_input else CAP_EXCEEDED)
    return out


def _zstd(data: bytes, cap: int) -> bytes:
    try:
        import zstandard  # type: ignore[import-not-found]
    except ImportError:
        raise Unavailable("zstd") from None
    # `ZstdDecompressor.decompress` allocates whatever size the frame declares, cap or not:
    # read the frame as a stream instead, in chunks, and stop past the cap.
    decompressor = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
    try:
        declared = zstandard.get_frame_parameters(data).content_size
        if declared != zstandard.CONTENTSIZE_UNKNOWN and declared > cap:
            raise CompressionError(CAP_EXCEEDED)
        reader = decompressor.stream_reader(io.BytesIO(data), read_across_frames=False)
        out = bytearray()
        while len(out) <= cap:
            chunk = reader.read(_CHUNK)
            if not chunk:
                break
            out += chunk
        if len(out) > cap:
            raise CompressionError(CAP_EXCEEDED)
        # The stream reader ends silently on a truncated frame; a second pass, now known to
        # stay under the cap, tells whether the frame was complete.
        check = decompressor.decompressobj()
        check.decompress(data)
        if not check.eof:
            raise CompressionError(TRUNCATED)
    except zstandard.ZstdError as exc:
        raise CompressionError(MEMORY_LIMIT if "window" in str(exc).lower() else BROKEN) from None
    return bytes(out)
