"""Test data for the session detectors: the 39 real fixtures plus hand-built variants.

Everything a store can hold that the fixtures do not show (corrupt, expired and stale
payloads, Spring and ASP.NET hashes, Rails 7.x cache formats, hostile inputs) is built here
from the layouts described in /work/shared/session-stores.md, with small encoders written
for the purpose so the tests do not depend on the code under test.
"""

from __future__ import annotations

import base64
import functools
import gzip
import json
import lzma
import pickle
import random
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import msgpack

from session_migration.record import KeyRecord

FIXTURES = Path(__file__).resolve().parents[2] / "session_migration" / "data" / "real-sessions.jsonl"

# The fixtures were captured at 2026-11-25T17:14:23Z; judge them a few seconds later.
NOW_MS = 1_795_626_870_000
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

_WRITER_TO_STORE = (  # first match wins: Laravel also mentions phpredis
    ("Laravel", "laravel"),
    ("express-session", "express"),
    ("Flask-Session", "flask"),
    ("Django", "django"),
    ("starsessions", "starsessions"),
    ("aiohttp-session", "aiohttp"),
    ("phpredis", "php"),
    ("CacheStore", "rails-cachestore"),
    ("redis-actionpack", "rails-actionpack"),
    ("gorilla", "gorilla"),
)


@dataclass(frozen=True)
class Fixture:
    store: str
    key: bytes
    type: str
    value: bytes
    pttl_ms: int

    def record(self, **changes) -> KeyRecord:
        fields = {"key": self.key, "type": self.type, "value": self.value, "expire_at_ms": NOW_MS + self.pttl_ms}
        fields.update(changes)
        return KeyRecord(**fields)


def load_fixtures() -> list[Fixture]:
    out = []
    for line in FIXTURES.read_text().splitlines():
        row = json.loads(line)
        store = next(s for marker, s in _WRITER_TO_STORE if marker in row["written_by"])
        out.append(
            Fixture(
                store=store,
                key=base64.b64decode(row["key_b64"]),
                type=row["type"],
                value=base64.b64decode(row["value_b64"]),
                pttl_ms=row["pttl_ms"],
            )
        )
    return out


def fixture(store: str) -> Fixture:
    return next(f for f in load_fixtures() if f.store == store)


def rec(
    key: bytes, value: bytes | None = None, *, ttl_ms: int | None = DAY_MS, type: str = "string", **kw
) -> KeyRecord:
    """A KeyRecord whose TTL (relative to NOW_MS) is `ttl_ms`; None = no TTL."""
    expire = None if ttl_ms is None else NOW_MS + ttl_ms
    return KeyRecord(key=key, type=type, value=value, expire_at_ms=expire, **kw)


def iso(ms: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------- tiny encoders (test-only)


def php(v) -> bytes:
    """PHP serialize() for None/bool/int/float/str/bytes/dict/list."""
    if v is None:
        return b"N;"
    if isinstance(v, bool):
        return b"b:1;" if v else b"b:0;"
    if isinstance(v, int):
        return b"i:%d;" % v
    if isinstance(v, float):
        return b"d:" + repr(v).encode() + b";"
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b's:%d:"%s";' % (len(v), v)
    if isinstance(v, list):
        v = dict(enumerate(v))
    body = b"".join(php(k) + php(val) for k, val in v.items())
    return b"a:%d:{%s}" % (len(v), body)


class Sym(str):
    """A Ruby Symbol for `rb()`."""


@dataclass
class RbObj:
    cls: str
    ivars: dict


def _rb_long(n: int) -> bytes:
    """Ruby's w_long: small values inline, else 1-4 little-endian bytes (sign-extended)."""
    if n == 0:
        return b"\x00"
    if 0 < n < 123:
        return bytes([n + 5])
    if -124 < n < 0:
        return bytes([(n - 5) & 0xFF])
    assert -(2**31) <= n < 2**31
    raw = n.to_bytes(4, "little", signed=True)
    raw = raw.rstrip(b"\x00") if n > 0 else raw.rstrip(b"\xff")
    return bytes([len(raw) if n > 0 else 256 - len(raw)]) + raw


def _rb(v) -> bytes:
    if v is None:
        return b"0"
    if v is True:
        return b"T"
    if v is False:
        return b"F"
    if isinstance(v, int):
        if -(2**30) <= v < 2**30:  # Fixnum range Ruby marshals inline
            return b"i" + _rb_long(v)
        raw = abs(v).to_bytes((abs(v).bit_length() + 15) // 16 * 2, "little")
        return b"l" + (b"+" if v > 0 else b"-") + _rb_long(len(raw) // 2) + raw
    if isinstance(v, float):
        text = repr(v).encode()
        return b"f" + _rb_long(len(text)) + text
    if isinstance(v, Sym):
        raw = v.encode()
        return b":" + _rb_long(len(raw)) + raw
    if isinstance(v, str):  # UTF-8 String: ivar E=true
        raw = v.encode()
        return b'I"' + _rb_long(len(raw)) + raw + b"\x06" + _rb(Sym("E")) + b"T"
    if isinstance(v, bytes):
        return b'"' + _rb_long(len(v)) + v
    if isinstance(v, list):
        return b"[" + _rb_long(len(v)) + b"".join(_rb(x) for x in v)
    if isinstance(v, dict):
        return b"{" + _rb_long(len(v)) + b"".join(_rb(k) + _rb(x) for k, x in v.items())
    if isinstance(v, RbObj):
        ivars = b"".join(_rb(Sym(k)) + _rb(x) for k, x in v.ivars.items())
        return b"o" + _rb(Sym(v.cls)) + _rb_long(len(v.ivars)) + ivars
    raise TypeError(type(v))


def rb(v) -> bytes:
    """Ruby Marshal.dump for the shapes Rails session stores write."""
    return b"\x04\x08" + _rb(v)


# Java serialization of java.lang.Long / java.lang.Integer, exactly as the JDK writes them.
_JAVA_LONG = bytes.fromhex(
    "aced00057372000e6a6176612e6c616e672e4c6f6e673b8be490cc8f23df0200014a000576616c7565"
    "787200106a6176612e6c616e672e4e756d62657286ac951d0b94e08b0200007870"
)
_JAVA_INT = bytes.fromhex(
    "aced0005737200116a6176612e6c616e672e496e746567657212e2a0a4f781873802000149000576616c7565"
    "787200106a6176612e6c616e672e4e756d62657286ac951d0b94e08b0200007870"
)
_JAVA_STRING_HEADER = bytes.fromhex("aced000574")


def java_long(n: int) -> bytes:
    return _JAVA_LONG + n.to_bytes(8, "big", signed=True)


def java_int(n: int) -> bytes:
    return _JAVA_INT + n.to_bytes(4, "big", signed=True)


def java_string(s: str) -> bytes:
    raw = s.encode()
    return _JAVA_STRING_HEADER + len(raw).to_bytes(2, "big") + raw


# ---------------------------------------------------------------- Spring Session

SPRING_ID = "3f1c7a52-9b1e-4c55-8a0e-1d2b3c4d5e6f"


def spring_hash(
    *,
    last_ms: int,
    max_inactive_s: int = 1800,
    created_ms: int | None = None,
    java: bool = True,
    drop: str | None = None,
    indexed: bool = False,
    ttl: bool = True,
    key: bytes | None = None,
) -> KeyRecord:
    """The session hash as RedisSessionRepository (or the indexed one) writes it."""
    num_long, num_int = (java_long, java_int) if java else ((lambda n: str(n).encode()),) * 2
    fields = {
        b"creationTime": num_long(created_ms if created_ms is not None else last_ms - HOUR_MS),
        b"lastAccessedTime": num_long(last_ms),
        b"maxInactiveInterval": num_int(max_inactive_s),
        b"sessionAttr:user": java_string("user0") if java else b'"user0"',
    }
    if drop:
        del fields[drop.encode()]
    expire = None
    if ttl and max_inactive_s >= 0:
        expire = last_ms + max_inactive_s * 1000 + (300_000 if indexed else 0)
    return KeyRecord(
        key=key or f"spring:session:sessions:{SPRING_ID}".encode(),
        type="hash",
        fields=tuple(fields.items()),
        expire_at_ms=expire,
    )


# ---------------------------------------------------------------- ASP.NET Core

ASPNET_GUID = "6c0a2f4e-5b7d-4e1a-9c3b-2a1f0e9d8c7b"
_EPOCH_TICKS = 621_355_968_000_000_000


def ticks(unix_ms: int) -> int:
    return unix_ms * 10_000 + _EPOCH_TICKS


def aspnet_blob(entries: dict[str, bytes], session_id: bytes = bytes(range(16))) -> bytes:
    """DistributedSession.Serialize: 02, u24 count, 16-byte id, (u16 klen, key, u32 vlen, value)*."""
    out = b"\x02" + len(entries).to_bytes(3, "big") + session_id
    for k, v in entries.items():
        kb = k.encode()
        out += len(kb).to_bytes(2, "big") + kb + len(v).to_bytes(4, "big") + v
    return out


def aspnet_hash(
    *,
    data: bytes | None = None,
    absexp: int = -1,
    sldexp: int = 20 * 60 * 10_000_000,
    ttl_ms: int | None = 20 * 60 * 1000,
    key: bytes | None = None,
) -> KeyRecord:
    if data is None:
        data = aspnet_blob({"user": b"user0", "views": (1).to_bytes(4, "big")})
    fields = ((b"absexp", str(absexp).encode()), (b"sldexp", str(sldexp).encode()), (b"data", data))
    return rec(key or ASPNET_GUID.encode(), type="hash", fields=fields, ttl_ms=ttl_ms)


# ---------------------------------------------------------------- Python stores

SESSION = {"user": "user0", "views": 1, "roles": ["reader"]}


def express_value(expires: str | None | object, **extra) -> bytes:
    cookie = {"originalMaxAge": 86_400_000, "expires": expires, "httpOnly": True, "path": "/"}
    return json.dumps({"cookie": cookie, **SESSION, **extra}, separators=(",", ":")).encode()


def starsessions_value(created_s: float, lifetime_s: int) -> bytes:
    meta = {"lifetime": lifetime_s, "created": created_s, "last_access": created_s}
    return json.dumps({**SESSION, "__metadata__": meta}).encode()


def aiohttp_value(created_s: int) -> bytes:
    return json.dumps({"created": created_s, "session": SESSION}).encode()


def django_pickle(extra: dict | None = None, protocol: int = 5) -> bytes:
    return pickle.dumps({**SESSION, **(extra or {})}, protocol=protocol)


def laravel_value(inner: bytes) -> bytes:
    return php(inner)


def laravel_attrs(**extra) -> bytes:
    return php({"_token": "t" * 40, **SESSION, **extra})


def laravel_encrypted() -> bytes:
    envelope = {"iv": "aXY=", "value": "Y2lwaGVy", "mac": "0" * 64, "tag": ""}
    return base64.b64encode(json.dumps(envelope).encode())


def rails_entry_61(value, *, created_s: float, expires_in: float | None) -> bytes:
    ivars = {"@value": value, "@version": None, "@created_at": created_s, "@expires_in": expires_in}
    return rb(RbObj("ActiveSupport::Cache::Entry", ivars))


def rails_entry_70(value, *, expires_at_s: float | None, compressed: bool = False) -> bytes:
    packed = [value] if expires_at_s is None else [value, expires_at_s]
    dumped = rb(packed)
    return b"\x01" + zlib.compress(dumped) if compressed else b"\x00" + dumped


def rails_entry_71(value, *, expires_at_s: float, version: bytes | None = None, compressed: bool = False) -> bytes:
    payload = rb(value)
    kind = 0x01
    if compressed:
        payload, kind = zlib.compress(payload), 0x81
    vlen = -1 if version is None else len(version)
    return b"\x00\x11" + struct.pack("<Bdi", kind, expires_at_s, vlen) + (version or b"") + payload


# ---------------------------------------------------------------- malicious pickles


class _Reduce:
    """Pickles as a call to `func(*args)`; used only to *produce* hostile bytes."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def evil_pickles(target: Path) -> dict[str, tuple[bytes, str]]:
    """name -> (pickle bytes, callable name expected in the reason). Each would create `target`."""
    import os

    shell = f"touch {target}"
    return {
        # the classic: a session dict with a value that runs a shell command on load
        "reduce-os.system": (
            pickle.dumps({"user": "user0", "x": _Reduce(os.system, (shell,))}, protocol=4),
            "system",
        ),
        # hand-written protocol 0: builtins.open(target, "w") via GLOBAL + REDUCE
        "global-open": (f"cbuiltins\nopen\n(V{target}\nVw\ntR.".encode(), "builtins.open"),
        # protocol 2 with INST opcode
        "inst-os.system": (f"(S'{shell}'\nios\nsystem\n.".encode(), "os.system"),
        # STACK_GLOBAL built from memoised strings, wrapped in a Flask-looking dict
        "stack-global-exec": (
            b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\n_permanent\x94\x88\x8c\x01x\x94"
            b"\x8c\x08builtins\x94\x8c\x04exec\x94\x93\x94"
            + b"\x8c" + bytes([len(f"open('{target}','w')")]) + f"open('{target}','w')".encode()
            + b"\x85\x94R\x94u.",
            "builtins.exec",
        ),
    }


# ---------------------------------------------------------------- hostile inputs


def shared_tuple_key_pickle(k: int) -> bytes:
    """A dict whose key is one memoized k-tuple set k times: quadratic for a walker that checks
    the tuple's hashability at every use (issue 14: 1.6 CPU-s at k = 12,000)."""
    return b"\x80\x04}\x94(" + b"N" * k + b"t\x940" + b"h\x01Ns" * k + b"."


def colliding_memo_pickle(n: int) -> bytes:
    """A protocol-2 dict whose memo slots are n integers with the same Python hash (multiples of
    2**61 - 1): quadratic for a walker that keys its memo by the integers themselves."""
    modulus = (1 << 61) - 1
    return b"\x80\x02}" + b"".join(b"p%d\n" % (modulus * i) for i in range(1, n + 1)) + b"."


def zstd_bomb(declared: int = 256 << 20) -> bytes:
    """A few KiB of zstd frame that declares (and holds) `declared` zero bytes."""
    import zstandard

    obj = zstandard.ZstdCompressor().compressobj(size=declared)
    chunk = bytes(1 << 20)
    return b"".join([obj.compress(chunk) for _ in range(declared >> 20)] + [obj.flush()])


def lz4_bomb(size: int = 64 << 20) -> bytes:
    import lz4.frame

    return lz4.frame.compress(bytes(size), store_size=True)


def lzma_dictionary_bomb() -> bytes:
    """A tiny xz stream whose block header asks the decoder for a 1.5 GiB dictionary (the
    encoder would need that memory too, so a small stream's header is rewritten instead)."""
    data = bytearray(lzma.compress(b"x", filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 4096}]))
    start, size = 12, (data[12] + 1) * 4  # the block header follows the 12-byte stream header
    props = data.index(b"\x21\x01", start, start + size) + 2  # LZMA2 filter id, one property byte
    data[props] = 37  # dictionary size 3 * 2**29 = 1.5 GiB
    data[start + size - 4 : start + size] = zlib.crc32(data[start : start + size - 4]).to_bytes(4, "little")
    return bytes(data)


@functools.cache
def hostile_values() -> dict[str, bytes]:
    """Payloads built to crash or exhaust a naive parser (built once: the bombs take a while)."""
    deep = 20_000
    return {
        "empty": b"",
        "php-huge-string": b's:999999999999:"abc";',
        "php-huge-array": b"a:999999999:{i:0;N;}",
        "php-deep": b"a:1:{i:0;" * deep + b"N;" + b"}" * deep,
        "php-neg-len": b's:-5:"abc";',
        "php-bad-int": b"user|i:+-1;",
        "laravel-huge": b's:4000000000:"a:1:{',
        "pickle-huge-bytes8": b"\x80\x05\x8e" + (2**62).to_bytes(8, "little") + b"abc.",
        "pickle-huge-unicode": b"\x80\x04X\xff\xff\xff\x7fabc.",
        "pickle-deep-lists": b"\x80\x04" + b"]" * deep + b"a" * (deep - 1) + b".",
        "pickle-deep-marks": b"\x80\x04" + b"(" * deep + b"l" * deep + b".",
        "pickle-memo-bomb": b"\x80\x04]\x94(" + b"h\x00" * deep + b"e.",  # a list holding itself 20k times
        "pickle-no-stop": b"\x80\x04}\x94",
        "pickle-underflow": b"\x80\x04s.",
        "pickle-long-text": b"\x80\x02L" + b"9" * 50_000 + b"L\n.",
        "pickle-proto-9": b"\x80\x09}.",
        "json-deep": b"[" * deep + b"]" * deep,
        "json-deep-object": b'{"cookie":' * deep + b"{}" + b"}" * deep,
        "msgpack-huge-array": b"\xdd\xff\xff\xff\xff",
        "msgpack-huge-map": b"\xdf\xff\xff\xff\xff\xa1a",
        "msgpack-deep": b"\x91" * deep + b"\xc0",
        "marshal-huge-array": b"\x04\x08[\x04\xff\xff\xff\x7f",
        "marshal-huge-string": b'\x04\x08"\x04\xff\xff\xff\x7fabc',
        "marshal-deep": b"\x04\x08" + b"[\x06" * deep + b"0",
        "marshal-bad-link": b"\x04\x08[\x06@\x7f",
        "marshal-bad-symlink": b"\x04\x08o;\x7f\x00",
        "marshal-bignum": b"\x04\x08l+\x04\xff\xff\xff\x7f",
        "rails71-short": b"\x00\x11\x01",
        "rails71-huge-version": b"\x00\x11\x01" + struct.pack("<di", 0.0, 2**31 - 1) + b"x",
        "zlib-bomb": zlib.compress(b"\x00" * (80 * 1024 * 1024), 9),
        "gzip-bomb": gzip.compress(b"\x00" * (80 * 1024 * 1024), 9),
        "lzma-broken": b"\xfd7zXZ\x00garbage",
        "lzma-bomb": lzma.compress(b"\x00" * (80 * 1024 * 1024), preset=0),
        "lzma-dictionary-bomb": lzma_dictionary_bomb(),
        "zstd-bomb": zstd_bomb(),
        "lz4-bomb": lz4_bomb(),
        "gob-huge-length": b"\xf8\xff\xff\xff\xff\xff\xff\xff\x01\xff\x81",
        "gob-9-byte-uint": b"\xf7" + b"\xff" * 9,
        "java-truncated": b"\xac\xed\x00\x05sr",
        "nul-bytes": b"\x00" * 1000,
        "ff-bytes": b"\xff" * 1000,
    }


def hostile_records() -> list[tuple[str, KeyRecord]]:
    """Every hostile value under every string store's key, plus random and truncated fixtures."""
    prefixes = {
        "express": b"sess:x",
        "flask": b"session:x",
        "django": b":1:django.contrib.sessions.cachex",
        "starsessions": b"starsessions.x",
        "aiohttp": b"AIOHTTP_SESSION_x",
        "php": b"PHPREDIS_SESSION:x",
        "laravel": b"laravel_database_laravel_cache:x",
        "rails-actionpack": b"rack:session:2::x",
        "rails-cachestore": b"_session_id:2::x",
        "gorilla": b"session_x",
        "unknown": b"x",
    }
    out = []
    for vname, value in hostile_values().items():
        for store, key in prefixes.items():
            out.append((f"{vname}@{store}", rec(key, value)))
    rng = random.Random(1234)
    for f in load_fixtures():
        tail = f.key[-6:].decode()
        for cut in sorted({1, 2, 3, len(f.value) // 2, len(f.value) - 1}):
            out.append((f"truncated-{f.store}-{tail}-{cut}", f.record(value=f.value[:cut])))
        noisy = bytearray(f.value)
        for _ in range(3):
            noisy[rng.randrange(len(noisy))] = rng.randrange(256)
        out.append((f"flipped-{f.store}-{tail}", f.record(value=bytes(noisy))))
    for i in range(40):
        out.append((f"random-{i}", rec(b"session:r", rng.randbytes(rng.randrange(1, 200)))))
    # hashes and other types under session prefixes
    out.append((
        "spring-wrong-values",
        KeyRecord(
            key=f"spring:session:sessions:{SPRING_ID}".encode(),
            type="hash",
            fields=((b"creationTime", b"\xac\xed\x00\x05"), (b"lastAccessedTime", b"[" * 5000),
                    (b"maxInactiveInterval", b"9" * 5000)),
        ),
    ))
    out.append(("aspnet-huge-count", aspnet_hash(data=b"\x02\xff\xff\xff" + bytes(16) + b"\xff\xff")))
    out.append(("aspnet-huge-entry", aspnet_hash(data=b"\x02\x00\x00\x01" + bytes(16) + b"\x00\x01k\xff\xff\xff\xff")))
    out.append(("aspnet-huge-ticks", aspnet_hash(absexp=10**30)))
    out.append(("string-no-value", rec(b"sess:x", None)))
    out.append(("hash-no-fields", KeyRecord(key=ASPNET_GUID.encode(), type="hash")))
    out.append(("stream", KeyRecord(key=b"session:x", type="stream", entries=((b"1-0", (b"a", b"b")),))))
    return out


def msgpack_session() -> bytes:
    return msgpack.packb({"_permanent": True, **SESSION})


def lzma_compress(data: bytes) -> bytes:
    return lzma.compress(data)


def lz4_compress(data: bytes) -> bytes:
    import lz4.frame

    return lz4.frame.compress(data)


def zstd_compress(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)
