"""PHP phpredis session handler: `name|serialize(v)...` (`php`) or `a:N:{...}`
(`php_serialize`); `<key>_LOCK` keys are phpredis session locks.

PHP destroys a session it cannot decode, so a payload neither encoding accepts is corrupt.
igbinary payloads are recognised by their header and reported as not checked; zstd (phpredis
session compression, the only one with a recognisable magic) is inflated under the size cap
and its content judged, or reported as not checked without the `zstandard` package
(lzf/lz4-compressed sessions read as corrupt). A lock without a TTL outlives the request
that took it: stale.
"""

from __future__ import annotations

from ..record import KeyRecord
from .compression import ZSTD_MAGIC, CompressionError, Unavailable, inflate
from .model import Context, Corrupt, Verdict, stale, valid
from .php_unserialize import PhpError, decode_session, unserialize

_IGBINARY = (b"\x00\x00\x00\x01", b"\x00\x00\x00\x02")


def judge(record: KeyRecord, ctx: Context) -> Verdict:
    if record.key.endswith(b"_LOCK"):
        if record.expire_at_ms is None:
            return stale("session lock without a TTL; it will never be released")
        return valid("session lock")
    value = record.value or b""
    if value.startswith(ZSTD_MAGIC):
        try:
            value = inflate(value, "zstd")
        except Unavailable:
            return valid("zstd-compressed session; content not checked (no zstd decompressor installed)")
        except CompressionError as exc:
            raise Corrupt(f"zstd payload does not decompress: {exc}") from None
    if not value:
        return valid("empty PHP session")
    if value.startswith(b"a:"):
        try:
            if isinstance(unserialize(value), dict):
                return valid("php_serialize session array")
        except PhpError:
            pass  # may still be `php` encoding with a variable named "a:..."
    try:
        decode_session(value)
        return valid("PHP session encoding (php handler)")
    except PhpError as exc:
        error = exc
    if value.startswith(_IGBINARY):
        return valid("igbinary session; structure not checked")
    raise Corrupt("not PHP session encoding", error)
