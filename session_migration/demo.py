"""Demo data: a realistic mix of sessions from real stores, plus keys that must stay out of scope.

The session values are the real captured values of `data/real-sessions.jsonl` (written by
the stores' own code), re-issued under fresh random ids; Spring Session and ASP.NET Core
hashes are built from their documented layouts.
"""

from __future__ import annotations

import base64
import json
import secrets
import struct
import time
import uuid
from importlib.resources import files
from typing import Any

import redis

# Fixture keys written with custom prefixes are re-issued under the store's default prefix,
# so the default patterns find them.
_DEFAULT_PREFIX = {b"flask-json:": b"session:", b"flask-pickle:": b"session:"}

# Keys a real instance holds next to its sessions; the default patterns must not touch them.
OUT_OF_SCOPE = {
    b"cache:user:42": ("string", b'{"name": "Ada"}'),
    b"queue:emails": ("list", [b"job-1", b"job-2"]),
    b"ratelimit:203.0.113.9": ("zset", {b"req-1": 1.0, b"req-2": 2.0}),
    b"DataProtection-Keys": ("list", [b"<key id='1'/>"]),
    b"feature-flags": ("hash", {b"new-ui": b"on"}),
    b"stats:visits": ("string", b"1234"),
}


def real_sessions() -> list[dict[str, Any]]:
    """The captured sessions, as dicts with `key`, `value` (bytes), `pttl_ms`, `written_by`."""
    text = files("session_migration").joinpath("data/real-sessions.jsonl").read_text()
    out = []
    for line in text.splitlines():
        if line.strip():
            rec = json.loads(line)
            out.append({
                "key": base64.b64decode(rec["key_b64"]),
                "value": base64.b64decode(rec["value_b64"]),
                "pttl_ms": int(rec["pttl_ms"]),
                "written_by": rec["written_by"],
                "type": rec["type"],
            })
    return out


# Store prefixes of the captured keys; what follows is the session id.
_PREFIXES = (
    b"sess:", b"session:", b"flask-json:", b"flask-pickle:", b":1:django.contrib.sessions.cache",
    b"dr:1:django.contrib.sessions.cache", b"starsessions.", b"AIOHTTP_SESSION_", b"PHPREDIS_SESSION:",
    b"laravel_database_laravel_cache:", b"rack:session:2::", b"_session_id:2::", b"session_",
)
_CLASSES = ("0123456789", "abcdef", "ghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "-", "_")


def _fresh_key(key: bytes) -> bytes:
    """Same store prefix, id length and id alphabet as `key`, new random id."""
    prefix = next(p for p in _PREFIXES if key.startswith(p))
    ident = key[len(prefix):].decode()
    alphabet = "".join(c for c in _CLASSES if any(ch in c for ch in ident))
    fresh = "".join(secrets.choice(alphabet) for _ in ident)
    return _DEFAULT_PREFIX.get(prefix, prefix) + fresh.encode()


def _dotnet_ticks(epoch_ms: int) -> int:
    return (epoch_ms + 62_135_596_800_000) * 10_000


def aspnet_data(entries: dict[bytes, bytes]) -> bytes:
    """ASP.NET Core session blob: revision 02, 3-byte count, 16-byte id, then (u16 key len,
    key, u32 value len, value) per entry."""
    out = bytearray(b"\x02")
    out += len(entries).to_bytes(3, "big")
    out += uuid.uuid4().bytes
    for k, v in entries.items():
        out += struct.pack(">H", len(k)) + k + struct.pack(">I", len(v)) + v
    return bytes(out)


def seed(client: redis.Redis, copies: int = 20, now_ms: int | None = None) -> dict[str, int]:
    """Fill `client`'s database with sessions and out-of-scope keys; returns counts."""
    now_ms = now_ms or int(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    sessions = 0
    for rec in real_sessions():
        for _ in range(copies):
            pipe.set(_fresh_key(rec["key"]), rec["value"], px=rec["pttl_ms"])
            sessions += 1
    for _ in range(copies):
        sid = str(uuid.uuid4())
        key = f"spring:session:sessions:{sid}"
        pipe.hset(key, mapping={
            "creationTime": str(now_ms - 60_000), "lastAccessedTime": str(now_ms - 5_000),
            "maxInactiveInterval": "1800", "sessionAttr:user": b"\xac\xed\x00\x05t\x00\x05alice",
        })
        pipe.pexpireat(key, now_ms - 5_000 + 1_800_000 + 300_000)
        pipe.set(f"spring:session:sessions:expires:{sid}", b"", px=1_800_000)
        asp = str(uuid.uuid4())
        pipe.hset(asp, mapping={
            "absexp": str(_dotnet_ticks(now_ms + 3_600_000)), "sldexp": str(20 * 60 * 10_000_000),
            "data": aspnet_data({b"user": b"alice", b"cart": b"3 items"}),
        })
        pipe.pexpire(asp, 1_200_000)
        sessions += 2
    for key, (kind, value) in OUT_OF_SCOPE.items():
        pipe.delete(key)
        if kind == "string":
            pipe.set(key, value)
        elif kind == "list":
            pipe.rpush(key, *value)
        elif kind == "zset":
            pipe.zadd(key, value)
        elif kind == "hash":
            pipe.hset(key, mapping=value)
    pipe.execute()
    return {"sessions": sessions, "companion_keys": copies, "out_of_scope": len(OUT_OF_SCOPE)}
