"""What a Parquet part decodes to, bounded from its pages' own headers before any row is read.

A part of a few kilobytes can hold pages that decompress to gigabytes (4 GB of one repeated
byte is ~130 KB of zstd), or a dictionary whose one large value every row repeats; Arrow
allocates each page at the size its header declares and expands dictionary values into every
row: an audit of a 55 KB part took 11 GB. The footer's per-column totals do not help: Arrow
never compares them with the pages, so a footer that understates them reads just the same.

So each column chunk's pages are walked (their headers only, plus the dictionary page, which
is decompressed to find its longest value), and a chunk is refused when what it can decode to
(every page's declared size, plus, with a dictionary, each value at the dictionary's longest)
is beyond `MAX_INFLATION` times its compressed bytes and `INFLATION_FLOOR`: the rule the audit
applies to compressed session payloads. Our own parts decode to ~4x (zstd over session JSON);
parts written before 2026-11-25 carry dictionaries of up to 1 MiB for keys and values, which
this bounds at ~1.5 KB a row. This runs where a part's sha256 is checked.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

MAX_INFLATION = 1024
INFLATION_FLOOR = 64 << 20  # a column chunk may always inflate this far (a part of tiny, alike values)
MAX_HEADER_BYTES = 16 << 20  # Arrow's own limit on one page header
MAX_DICTIONARY_BYTES = 16 << 20  # a dictionary page, decompressed (Arrow writes at most 1 MiB)
_DICTIONARY_PAGE = 2
_FIXED_WIDTH = {"BOOLEAN": 1, "INT32": 4, "FLOAT": 4, "INT64": 8, "DOUBLE": 8, "INT96": 12}
_CODECS = {"ZSTD": "zstd", "SNAPPY": "snappy", "GZIP": "gzip", "BROTLI": "brotli", "LZ4_RAW": "lz4_raw"}
_WINDOW = 1 << 10  # bytes first read at a header's offset (headers are ~30-200 bytes); more only if needed
_MAX_DEPTH = 32  # nesting of structs and lists in one header

# Thrift compact protocol types
_STOP, _TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(13)


class _Short(Exception):
    """The header runs past the bytes read so far."""


class _Bad(Exception):
    """Bytes that are not a page header."""


def inflation_problem(fh: BinaryIO, metadata: pq.FileMetaData, size: int) -> str | None:
    """None when every column chunk of the part (open as `fh`, `size` bytes, footer `metadata`)
    inflates within the limits; else one sentence that says which and how far."""
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        for c in range(group.num_columns):
            chunk = group.column(c)
            start = chunk.data_page_offset
            if chunk.has_dictionary_page and 0 < chunk.dictionary_page_offset < start:
                start = chunk.dictionary_page_offset  # where Arrow starts reading the chunk
            compressed = chunk.total_compressed_size
            name = chunk.path_in_schema
            if start < 0 or compressed < 0 or start + compressed > size:
                return f"column {name} of row group {g} lies outside the file"
            try:
                inflated = _decoded_bound(fh, chunk, start, start + compressed)
            except _Bad as exc:
                return f"column {name} of row group {g} {exc}"
            limit = max(INFLATION_FLOOR, MAX_INFLATION * compressed)
            if inflated > limit:
                return (f"column {name} of row group {g} inflates from {compressed:,} to up to {inflated:,} bytes, "
                        f"beyond {MAX_INFLATION:,} times its size (a decompression bomb, not a backup of ours)")
    return None


def _decoded_bound(fh: BinaryIO, chunk: pq.ColumnChunkMetaData, start: int, end: int) -> int:
    """What the pages in [start, end) can decode to: their declared sizes, plus, when there is a
    dictionary, every value of the chunk at the dictionary's longest."""
    total = 0
    widest = None  # the longest dictionary value, once the dictionary page is read
    at = start
    while at < end:
        header_bytes, kind, uncompressed, compressed = _page_header(fh, at)
        if uncompressed < 0 or compressed < 0:
            raise _Bad("has a page of negative size")
        if at + header_bytes + compressed > end:
            raise _Bad("has a page that runs past the column")
        total += uncompressed
        if kind == _DICTIONARY_PAGE:
            if widest is not None:
                raise _Bad("has a second dictionary page")
            fh.seek(at + header_bytes)
            widest = _widest_value(chunk, fh.read(compressed), uncompressed)
        at += header_bytes + compressed
    return total + (chunk.num_values * widest if widest else 0)


def _widest_value(chunk: pq.ColumnChunkMetaData, page: bytes, uncompressed: int) -> int:
    """The longest value of a dictionary page (PLAIN encoded), in bytes."""
    width = _FIXED_WIDTH.get(chunk.physical_type)
    if width is not None:
        return width
    if uncompressed > MAX_DICTIONARY_BYTES:
        raise _Bad(f"has a dictionary of {uncompressed:,} bytes (at most {MAX_DICTIONARY_BYTES >> 20} MiB are read)")
    if chunk.physical_type != "BYTE_ARRAY":  # fixed-length byte arrays: no longer than the page
        return uncompressed
    data = _decompress(chunk.compression, page, uncompressed)
    widest = at = 0
    while at + 4 <= len(data):
        (length,) = struct.unpack_from("<I", data, at)
        widest = max(widest, length)
        at += 4 + length
    return widest


def _decompress(codec: str, page: bytes, uncompressed: int) -> bytes:
    if codec == "UNCOMPRESSED":
        return page
    if codec not in _CODECS and codec != "LZ4":
        raise _Bad(f"uses the codec {codec}, which no snapshot uses")
    try:
        if codec == "LZ4":
            return _lz4_hadoop(page, uncompressed)
        return pa.decompress(page, uncompressed, codec=_CODECS[codec], asbytes=True)
    except (pa.ArrowException, ValueError, struct.error) as exc:
        raise _Bad(f"has a dictionary that does not decompress ({exc})") from None


def _lz4_hadoop(page: bytes, uncompressed: int) -> bytes:
    """Parquet's LZ4 as Arrow writes it: Hadoop's blocks of (raw size, size, LZ4 block), both
    sizes big-endian; some writers put one bare LZ4 block instead (Arrow reads both)."""
    out, at = [], 0
    while at + 8 <= len(page):
        size, length = struct.unpack_from(">II", page, at)
        if size > uncompressed or at + 8 + length > len(page):
            break  # not Hadoop's framing
        out.append(pa.decompress(page[at + 8:at + 8 + length], size, codec="lz4_raw", asbytes=True))
        at += 8 + length
    if at == len(page) and out:
        return b"".join(out)
    return pa.decompress(page, uncompressed, codec="lz4_raw", asbytes=True)


def _page_header(fh: BinaryIO, at: int) -> tuple[int, int, int, int]:
    """(header length, page type, uncompressed_page_size, compressed_page_size) of the header at `at`."""
    want = _WINDOW
    while True:
        fh.seek(at)
        data = fh.read(want)
        try:
            reader = _Compact(data)
            fields = reader.struct_fields()
            return reader.at, fields.get(1, -1), fields.get(2, -1), fields.get(3, -1)
        except _Short:
            if len(data) < want or want >= MAX_HEADER_BYTES:
                raise _Bad("has a page header that ends early or is too long") from None
            want = min(want * 16, MAX_HEADER_BYTES)


class _Compact:
    """Just enough of Thrift's compact protocol to read a PageHeader's top-level i32 fields and
    skip everything else."""

    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def struct_fields(self) -> dict[int, int]:
        """The top-level integer fields of the struct at the cursor, by field id."""
        found: dict[int, int] = {}
        field = 0
        while True:
            head = self._byte()
            kind = head & 0x0F
            if kind == _STOP:
                return found
            delta = head >> 4
            field = field + delta if delta else self._zigzag(self._varint())
            if kind in (_I16, _I32, _I64):
                found[field] = self._zigzag(self._varint())
            else:
                self._skip(kind, 1)

    def _skip(self, kind: int, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise _Bad("has a page header nested too deeply")
        if kind in (_TRUE, _FALSE):
            return
        if kind == _BYTE:
            self._take(1)
        elif kind in (_I16, _I32, _I64):
            self._varint()
        elif kind == _DOUBLE:
            self._take(8)
        elif kind == _BINARY:
            self._take(self._varint())
        elif kind in (_LIST, _SET):
            head = self._byte()
            count = head >> 4 if head >> 4 != 15 else self._varint()
            for _ in range(count):
                self._skip_element(head & 0x0F, depth + 1)
        elif kind == _MAP:
            count = self._varint()
            if count:
                types = self._byte()
                for _ in range(count):
                    self._skip_element(types >> 4, depth + 1)
                    self._skip_element(types & 0x0F, depth + 1)
        elif kind == _STRUCT:
            while True:
                head = self._byte()
                if head & 0x0F == _STOP:
                    return
                if not head >> 4:
                    self._varint()  # a long-form field id
                self._skip(head & 0x0F, depth + 1)
        else:
            raise _Bad(f"has a page header with an unknown field type {kind}")

    def _skip_element(self, kind: int, depth: int) -> None:
        if kind in (_TRUE, _FALSE):  # a boolean in a collection is a byte of its own
            self._take(1)
        else:
            self._skip(kind, depth)

    def _take(self, n: int) -> None:
        if n < 0:
            raise _Bad("has a page header with a negative length")
        if self.at + n > len(self.data):
            raise _Short
        self.at += n

    def _byte(self) -> int:
        if self.at >= len(self.data):
            raise _Short
        self.at += 1
        return self.data[self.at - 1]

    def _varint(self) -> int:
        value = shift = 0
        while True:
            b = self._byte()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise _Bad("has a page header with an overlong number")

    @staticmethod
    def _zigzag(n: int) -> int:
        return (n >> 1) ^ -(n & 1)
