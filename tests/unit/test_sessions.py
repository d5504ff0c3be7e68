"""Session store detection and classification (session_migration.sessions). No servers."""

from __future__ import annotations

import dataclasses
import json
import pickle
import re
import zlib
from datetime import datetime, timezone
from pathlib import Path

import msgpack
import pytest

from session_migration.record import KeyRecord
from session_migration.sessions import STORES, Classification, SessionStatus, classify, detect_store
from session_migration.sessions import SessionStatus as S
from session_migration.sessions.model import DETAIL_CHARS
from session_migration.sessions.pickle_walk import PDict, PickleCodeRef, PickleError, walk

import session_cases as c
from session_cases import DAY_MS, HOUR_MS, NOW_MS

FIXTURES = c.load_fixtures()
NOW_S = NOW_MS / 1000
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _id(f: c.Fixture) -> str:
    return f"{f.store}-{f.key[-6:].decode(errors='replace')}"


# ---------------------------------------------------------------- public API


def test_public_api_shape():
    assert STORES == (
        "express", "flask", "django", "starsessions", "aiohttp", "php", "laravel",
        "rails-actionpack", "rails-cachestore", "gorilla", "spring", "aspnet",
    )  # fmt: skip
    assert [s.value for s in SessionStatus] == ["valid", "expired", "stale", "corrupt", "unknown"]
    assert SessionStatus.VALID == "valid"  # a str Enum: usable directly in Arrow/JSON
    result = classify(FIXTURES[0].record(), NOW_MS)
    assert isinstance(result, Classification)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.status = S.CORRUPT  # type: ignore[misc]


def test_fixture_set_covers_ten_string_stores():
    assert len(FIXTURES) == 39
    assert {f.store for f in FIXTURES} == set(STORES) - {"spring", "aspnet"}


# ---------------------------------------------------------------- the 39 real values


@pytest.mark.parametrize("fx", FIXTURES, ids=_id)
def test_fixture_detected_and_valid(fx: c.Fixture):
    assert detect_store(fx.key, fx.type, fx.value) == fx.store
    result = classify(fx.record(), NOW_MS)
    assert (result.store, result.status) == (fx.store, S.VALID), result.reason
    assert result.reason
    _assert_no_leak(result, fx.key, fx.value)


@pytest.mark.parametrize("fx", FIXTURES, ids=_id)
def test_fixture_expired_once_its_ttl_passed(fx: c.Fixture):
    result = classify(fx.record(), NOW_MS + fx.pttl_ms)  # expire_at_ms == now: Redis has dropped it
    assert (result.store, result.status) == (fx.store, S.EXPIRED)
    assert "TTL" in result.reason


@pytest.mark.parametrize("fx", FIXTURES, ids=_id)
def test_fixture_found_by_value_under_an_unknown_prefix(fx: c.Fixture):
    key = b"myapp-" + fx.key.split(b":")[-1]
    found = detect_store(key, "string", fx.value)
    if fx.store == "django":
        assert found is None  # an unmarked pickle: only Django's key shape identifies it
    else:
        assert found == fx.store
        assert classify(fx.record(key=key), NOW_MS).status is S.VALID


def test_record_store_column_is_trusted():
    fx = c.fixture("django")
    result = classify(fx.record(key=b"renamed-key", store="django"), NOW_MS)
    assert (result.store, result.status) == ("django", S.VALID)


def test_detect_store_rejects_types_a_store_never_writes():
    assert detect_store(b"sess:abc", "hash") is None
    assert detect_store(b"PHPREDIS_SESSION:abc", "list") is None
    assert detect_store(b"spring:session:index:x:user0", "set") == "spring"
    assert detect_store(b"cache:users:1", "string", b"hello") is None
    assert detect_store(b"sess:abc", "string", None) == "express"
    assert detect_store(b"", "string", b"") is None


@pytest.mark.parametrize(
    "key",
    [
        b"laravel_database_laravel_cache:Fw1hIvYG9qgKb8mQr0aFkVDaZsl7am86zxFPtdG",
        b"laravel_database_laravel_cache_Fw1hIvYG9qgKb8mQr0aFkVDaZsl7am86zxFPtdG",
        b"laravel-database-laravel-cache-Fw1hIvYG9qgKb8mQr0aFkVDaZsl7am86zxFPtdG",
        b"myapp_cache:Fw1hIvYG9qgKb8mQr0aFkVDaZsl7am86zxFPtdG",  # custom prefix: by value
    ],
)
def test_laravel_key_shapes(key):
    value = c.laravel_value(c.laravel_attrs())
    assert detect_store(key, "string", value) == "laravel"
    assert classify(c.rec(key, value), NOW_MS).status is S.VALID


def test_django_key_variants():
    value = c.django_pickle()
    for key in (
        b":1:django.contrib.sessions.cacheb6d2igzn6h43q0ma4fyjl7r4yc0hud2o",
        b":1:django.contrib.sessions.cached_dbb6d2igzn6h43q0ma4fyjl7r4yc0hud2o",
        b"site:prod:3:django.contrib.sessions.cacheb6d2igzn6h43q0ma4fyjl7r4yc0hud2o",
    ):
        assert detect_store(key, "string", value) == "django"


def test_php_cluster_prefix_and_php_serialize_handler():
    value = c.php({"user": "user0", "views": 1})
    assert value.startswith(b"a:2:{")
    key = b"PHPREDIS_CLUSTER_SESSION:5gkpdbr4in4trp9vl67febagmt"
    assert detect_store(key, "string", value) == "php"
    assert classify(c.rec(key, value), NOW_MS).status is S.VALID
    assert detect_store(b"custom:5gkp", "string", value) == "php"


def test_a_foreign_payload_under_a_default_prefix_is_judged_by_its_bytes():
    # A Flask app configured with key_prefix "sess:" (express's default prefix).
    result = classify(c.rec(b"sess:abc", c.msgpack_session()), NOW_MS)
    assert (result.store, result.status) == ("flask", S.VALID)


# ---------------------------------------------------------------- per-store variants


def _case(name, record, store, status, *reason_words):
    return pytest.param(record, store, status, reason_words, id=name)


def _variant_cases():
    fx = {s: c.fixture(s) for s in STORES if s not in ("spring", "aspnet")}
    fx["flask"] = next(f for f in FIXTURES if f.key.startswith(b"session:"))  # default prefix
    k = {s: f.key for s, f in fx.items()}
    past, future = NOW_MS - HOUR_MS, NOW_MS + HOUR_MS
    entry = {"user": "user0"}
    yield from [
        # express
        _case("express-not-json", c.rec(k["express"], b"{not json"), "express", S.CORRUPT, "JSON"),
        _case("express-array", c.rec(k["express"], b'[{"cookie":{}}]'), "express", S.CORRUPT, "object"),
        _case("express-no-cookie", c.rec(k["express"], b'{"user":"u"}'), "express", S.CORRUPT, "cookie"),
        _case("express-cookie-str", c.rec(k["express"], b'{"cookie":"x"}'), "express", S.CORRUPT, "cookie"),
        _case("express-bad-expires", c.rec(k["express"], c.express_value("next tuesday")), "express", S.CORRUPT, "expires"),
        _case("express-num-expires", c.rec(k["express"], c.express_value(12345)), "express", S.CORRUPT, "expires"),
        _case("express-not-utf8", c.rec(k["express"], b'{"cookie":{},"u":"\xff"}'), "express", S.CORRUPT, "UTF-8"),
        _case("express-deep", c.rec(k["express"], b'{"cookie":{},"a":' + b"[" * 50_000 + b"]" * 50_000 + b"}"),
              "express", S.CORRUPT, "nested"),
        _case("express-bad-escape", c.rec(k["express"], b'{"cookie":{},"u":"\\x"}'), "express", S.CORRUPT, "JSON"),
        _case("express-stale", c.rec(k["express"], c.express_value(c.iso(past)), ttl_ms=None), "express", S.STALE, "cookie.expires", "no TTL"),
        _case("express-no-ttl-future", c.rec(k["express"], c.express_value(c.iso(future)), ttl_ms=None), "express", S.VALID, "cookie"),
        _case("express-no-ttl-session-cookie", c.rec(k["express"], c.express_value(None), ttl_ms=None), "express", S.VALID, "cookie"),
        _case("express-ttl-beats-cookie", c.rec(k["express"], c.express_value(c.iso(past))), "express", S.VALID, "cookie"),
        # flask
        _case("flask-garbage", c.rec(k["flask"], b"\x00garbage"), "flask", S.CORRUPT, "msgpack", "JSON", "pickle"),
        _case("flask-msgpack-array", c.rec(k["flask"], msgpack.packb([1, 2])), "flask", S.CORRUPT, "session dict"),
        _case("flask-truncated-pickle", c.rec(k["flask"], pickle.dumps({"_permanent": True, "a": 1}, 4)[:-3]), "flask", S.CORRUPT, "pickle"),
        _case("flask-pickled-list", c.rec(k["flask"], pickle.dumps([1, 2], 4)), "flask", S.CORRUPT, "not a dict"),
        _case("flask-proto3-pickle", c.rec(k["flask"], pickle.dumps({"_permanent": True}, 3)), "flask", S.VALID, "pickle"),
        _case("flask-proto0-pickle", c.rec(k["flask"], pickle.dumps({"_permanent": True}, 0)), "flask", S.VALID, "protocol 0/1"),
        _case("flask-no-ttl", fx["flask"].record(expire_at_ms=None), "flask", S.STALE, "no TTL"),
        # django
        _case("django-truncated", c.rec(k["django"], c.django_pickle()[:-5]), "django", S.CORRUPT, "pickle"),
        _case("django-not-dict", c.rec(k["django"], pickle.dumps(["a"], 5)), "django", S.CORRUPT, "not a dict"),
        _case("django-garbage", c.rec(k["django"], b"hello"), "django", S.CORRUPT, "not a pickle"),
        _case("django-zlib", c.rec(k["django"], zlib.compress(c.django_pickle(protocol=4))), "django", S.VALID, "zlib"),
        _case("django-gzip", c.rec(k["django"], __import__("gzip").compress(c.django_pickle(protocol=4))), "django", S.VALID, "gzip"),
        _case("django-lzma", c.rec(k["django"], c.lzma_compress(c.django_pickle(protocol=4))), "django", S.VALID, "lzma"),
        _case("django-zlib-of-garbage", c.rec(k["django"], zlib.compress(b"not a pickle at all")), "django", S.CORRUPT, "not a pickle"),
        _case("django-zlib-truncated", c.rec(k["django"], zlib.compress(c.django_pickle())[:-6]), "django", S.CORRUPT, "zlib"),
        _case("django-lz4", c.rec(k["django"], c.lz4_compress(c.django_pickle(protocol=4))), "django", S.VALID, "lz4"),
        _case("django-lz4-broken", c.rec(k["django"], b"\x04\x22\x4d\x18" + b"\x00" * 20), "django", S.CORRUPT, "lz4", "broken"),
        _case("django-zstd", c.rec(k["django"], c.zstd_compress(c.django_pickle(protocol=4))), "django", S.VALID, "zstd"),
        _case("django-zstd-truncated", c.rec(k["django"], c.zstd_compress(c.django_pickle(protocol=4))[:-4]), "django", S.CORRUPT,
              "zstd", "truncated"),
        _case("django-expiry-passed", c.rec(k["django"], c.django_pickle({"_session_expiry": c.iso(past)})), "django", S.STALE, "_session_expiry"),
        _case("django-expiry-naive-iso", c.rec(k["django"], c.django_pickle({"_session_expiry": "2026-11-01T00:00:00"})), "django", S.STALE, "_session_expiry"),
        _case("django-expiry-ahead", c.rec(k["django"], c.django_pickle({"_session_expiry": c.iso(future)})), "django", S.VALID, "ahead"),
        _case("django-expiry-relative", c.rec(k["django"], c.django_pickle({"_session_expiry": 300})), "django", S.VALID, "relative"),
        _case("django-expiry-bad", c.rec(k["django"], c.django_pickle({"_session_expiry": "soon"})), "django", S.CORRUPT, "_session_expiry"),
        _case(
            "django-expiry-datetime-object",  # Django < 4 pickled a datetime: allow-listed, not judged
            c.rec(k["django"], c.django_pickle({"_session_expiry": datetime(2026, 1, 1, tzinfo=timezone.utc)}, protocol=4)),
            "django", S.VALID, "datetime.datetime",
        ),
        _case("django-json-serializer", c.rec(k["django"], b'{"user":"u"}'), "django", S.VALID, "JSON"),
        _case("django-no-ttl", fx["django"].record(expire_at_ms=None), "django", S.STALE, "no TTL"),
        # starsessions
        _case("star-not-json", c.rec(k["starsessions"], b"\x80\x04}."), "starsessions", S.CORRUPT, "JSON"),
        _case("star-meta-not-object", c.rec(k["starsessions"], b'{"__metadata__": 5}'), "starsessions", S.CORRUPT, "__metadata__"),
        _case("star-meta-bad", c.rec(k["starsessions"], b'{"__metadata__": {"lifetime": "x", "created": 1}}'), "starsessions", S.CORRUPT, "lifetime"),
        _case("star-lifetime-passed", c.rec(k["starsessions"], c.starsessions_value(NOW_S - 2 * 86400, 86400)), "starsessions", S.STALE, "lifetime"),
        _case("star-browser-session", c.rec(k["starsessions"], c.starsessions_value(NOW_S - 90 * 86400, 0)), "starsessions", S.VALID, "metadata"),
        _case("star-no-ttl", fx["starsessions"].record(expire_at_ms=None), "starsessions", S.STALE, "no TTL"),
        # aiohttp
        _case("aiohttp-not-json", c.rec(k["aiohttp"], b"created=1"), "aiohttp", S.CORRUPT, "JSON"),
        _case("aiohttp-not-utf8", c.rec(k["aiohttp"], b'{"created": 1, "session": {"u": "\xe9"}}'), "aiohttp", S.CORRUPT, "UTF-8"),
        _case("aiohttp-session-not-object", c.rec(k["aiohttp"], b'{"created": 1, "session": [1]}'), "aiohttp", S.CORRUPT, "session"),
        _case("aiohttp-created-string", c.rec(k["aiohttp"], b'{"created": "x", "session": {}}'), "aiohttp", S.CORRUPT, "created"),
        _case("aiohttp-no-ttl-no-max-age", c.rec(k["aiohttp"], c.aiohttp_value(int(NOW_S) - 400 * 86400), ttl_ms=None), "aiohttp", S.VALID, "max_age"),
        # php
        _case("php-garbage", c.rec(k["php"], b'user|s:99:"x";'), "php", S.CORRUPT, "PHP session"),
        _case("php-binary", c.rec(k["php"], b"\x01\x02\x03"), "php", S.CORRUPT, "PHP session"),
        _case("php-bad-array", c.rec(k["php"], b"a:2:{i:0;N;}"), "php", S.CORRUPT, "PHP session"),
        _case("php-empty", c.rec(k["php"], b""), "php", S.VALID, "empty"),
        _case("php-zstd", c.rec(k["php"], c.zstd_compress(fx["php"].value)), "php", S.VALID, "PHP session encoding"),
        _case("php-zstd-of-garbage", c.rec(k["php"], c.zstd_compress(b"\x01\x02")), "php", S.CORRUPT, "PHP session"),
        _case("php-no-ttl", fx["php"].record(expire_at_ms=None), "php", S.STALE, "no TTL"),
        _case("php-lock", c.rec(k["php"] + b"_LOCK", b"host|1234", ttl_ms=30_000), "php", S.VALID, "session lock"),
        _case("php-lock-no-ttl", c.rec(k["php"] + b"_LOCK", b"host|1234", ttl_ms=None), "php", S.STALE, "session lock"),
        _case("php-igbinary", c.rec(k["php"], b"\x00\x00\x00\x02\x14\x01"), "php", S.VALID, "igbinary"),
        # laravel
        _case("laravel-no-token", c.rec(k["laravel"], c.laravel_value(c.php(entry))), "laravel", S.CORRUPT, "_token"),
        _case("laravel-not-string", c.rec(k["laravel"], c.laravel_attrs()), "laravel", S.CORRUPT, "string"),
        _case("laravel-truncated", c.rec(k["laravel"], fx["laravel"].value[:-10]), "laravel", S.CORRUPT, "unserialize"),
        _case("laravel-inner-broken", c.rec(k["laravel"], c.laravel_value(c.laravel_attrs()[:-4])), "laravel", S.CORRUPT, "inner"),
        _case("laravel-json", c.rec(k["laravel"], c.laravel_value(b'{"_token":"t","user":"u"}')), "laravel", S.VALID, "JSON"),
        _case("laravel-json-no-token", c.rec(k["laravel"], c.laravel_value(b'{"user":"u"}')), "laravel", S.CORRUPT, "_token"),
        _case("laravel-encrypted", c.rec(k["laravel"], c.laravel_value(c.laravel_encrypted())), "laravel", S.VALID, "encrypted"),
        _case("laravel-random-string", c.rec(k["laravel"], c.laravel_value(b"hello")), "laravel", S.CORRUPT, "neither"),
        _case("laravel-no-ttl", fx["laravel"].record(expire_at_ms=None), "laravel", S.STALE, "no TTL"),
        # rails redis-actionpack
        _case("actionpack-truncated", c.rec(k["rails-actionpack"], fx["rails-actionpack"].value[:-7]), "rails-actionpack", S.CORRUPT, "Marshal"),
        _case("actionpack-array", c.rec(k["rails-actionpack"], c.rb(["a"])), "rails-actionpack", S.CORRUPT, "hash"),
        _case("actionpack-no-ttl", fx["rails-actionpack"].record(expire_at_ms=None), "rails-actionpack", S.STALE, "no TTL"),
        _case("actionpack-built", c.rec(k["rails-actionpack"], c.rb({"user": "user0", "n": 300, "big": 2**40, "neg": -300})), "rails-actionpack", S.VALID, "hash"),
        # rails cache store
        _case("cachestore-61-expired", c.rec(k["rails-cachestore"], c.rails_entry_61(entry, created_s=NOW_S - 7200, expires_in=3600.0)), "rails-cachestore", S.EXPIRED, "entry"),
        _case("cachestore-61-no-expiry", c.rec(k["rails-cachestore"], c.rails_entry_61(entry, created_s=NOW_S - 7200, expires_in=None), ttl_ms=None), "rails-cachestore", S.VALID, "6.1"),
        _case("cachestore-not-entry", c.rec(k["rails-cachestore"], c.rb({"user": "u"})), "rails-cachestore", S.CORRUPT, "Entry"),
        _case("cachestore-truncated", c.rec(k["rails-cachestore"], fx["rails-cachestore"].value[:40]), "rails-cachestore", S.CORRUPT, "Marshal"),
        _case("cachestore-70", c.rec(k["rails-cachestore"], c.rails_entry_70(entry, expires_at_s=NOW_S + 60)), "rails-cachestore", S.VALID, "7.0"),
        _case("cachestore-70-expired", c.rec(k["rails-cachestore"], c.rails_entry_70(entry, expires_at_s=NOW_S - 60, compressed=True)), "rails-cachestore", S.EXPIRED, "expiry"),
        _case("cachestore-70-bad-zlib", c.rec(k["rails-cachestore"], b"\x01\x78\x9cgarbage"), "rails-cachestore", S.CORRUPT, "inflate"),
        _case("cachestore-71", c.rec(k["rails-cachestore"], c.rails_entry_71(entry, expires_at_s=NOW_S + 60, version=b"v1")), "rails-cachestore", S.VALID, "7.1"),
        _case("cachestore-71-never", c.rec(k["rails-cachestore"], c.rails_entry_71(entry, expires_at_s=-1.0, compressed=True)), "rails-cachestore", S.VALID, "7.1"),
        _case("cachestore-71-expired", c.rec(k["rails-cachestore"], c.rails_entry_71(entry, expires_at_s=NOW_S - 1)), "rails-cachestore", S.EXPIRED, "expiry"),
        _case("cachestore-71-bad-type", c.rec(k["rails-cachestore"], b"\x00\x11\x09" + bytes(12)), "rails-cachestore", S.CORRUPT, "type"),
        _case("cachestore-71-broken-payload", c.rec(k["rails-cachestore"], c.rails_entry_71(entry, expires_at_s=-1.0)[:-3]), "rails-cachestore", S.CORRUPT, "Marshal"),
        # gorilla
        _case("gorilla-truncated", c.rec(k["gorilla"], fx["gorilla"].value[:-1]), "gorilla", S.CORRUPT, "gob"),
        _case("gorilla-bad-length", c.rec(k["gorilla"], b"\x7f" + fx["gorilla"].value[1:]), "gorilla", S.CORRUPT, "gob"),
        _case("gorilla-types-only", c.rec(k["gorilla"], fx["gorilla"].value[:15]), "gorilla", S.CORRUPT, "no value"),
        _case("gorilla-json", c.rec(k["gorilla"], b'{"user":"u"}'), "gorilla", S.VALID, "JSON"),
        _case("gorilla-no-ttl", fx["gorilla"].record(expire_at_ms=None), "gorilla", S.STALE, "no TTL"),
    ]
    # Spring Session (built from the documented hash layout)
    sid = c.SPRING_ID
    yield from [
        _case("spring-default", c.spring_hash(last_ms=NOW_MS - 60_000), "spring", S.VALID, "within"),
        _case("spring-indexed", c.spring_hash(last_ms=NOW_MS - 60_000, indexed=True), "spring", S.VALID, "within"),
        _case("spring-plain-numbers", c.spring_hash(last_ms=NOW_MS - 60_000, java=False), "spring", S.VALID, "within"),
        _case("spring-indexed-expired", c.spring_hash(last_ms=NOW_MS - 1801_000, indexed=True), "spring", S.EXPIRED, "maxInactiveInterval"),
        _case("spring-exactly-expired", c.spring_hash(last_ms=NOW_MS - 1800_000, indexed=True), "spring", S.EXPIRED, "maxInactiveInterval"),
        _case("spring-never-expires", c.spring_hash(last_ms=NOW_MS - 400 * DAY_MS, max_inactive_s=-1), "spring", S.VALID, "never"),
        _case("spring-missing-field", c.spring_hash(last_ms=NOW_MS, drop="lastAccessedTime"), "spring", S.CORRUPT, "lastAccessedTime"),
        _case("spring-missing-max", c.spring_hash(last_ms=NOW_MS, drop="maxInactiveInterval"), "spring", S.CORRUPT, "maxInactiveInterval"),
        _case(
            "spring-unreadable-field",
            KeyRecord(key=f"spring:session:sessions:{sid}".encode(), type="hash", expire_at_ms=NOW_MS + HOUR_MS,
                      fields=((b"creationTime", b"x"), (b"lastAccessedTime", b"1"), (b"maxInactiveInterval", b"1800"))),
            "spring", S.CORRUPT, "creationTime",
        ),
        _case("spring-no-ttl", c.spring_hash(last_ms=NOW_MS - 60_000, ttl=False), "spring", S.STALE, "TTL"),
        _case("spring-custom-namespace", c.spring_hash(last_ms=NOW_MS, key=f"myapp:sessions:{sid}".encode()), "spring", S.VALID, "within"),
        _case("spring-wrong-type", c.rec(f"spring:session:sessions:{sid}".encode(), b"x"), "spring", S.CORRUPT, "hash"),
        _case("spring-expires-marker", c.rec(f"spring:session:sessions:expires:{sid}".encode(), b"", ttl_ms=1800_000), "spring", S.VALID, "expiry marker"),
        _case("spring-expires-marker-wrong-type", c.rec(f"spring:session:sessions:expires:{sid}".encode(), type="set", items=(b"x",)), "spring", S.CORRUPT, "expiry marker"),
        _case("spring-expirations-bucket", c.rec(b"spring:session:expirations:1795626900000", type="set", items=(f"expires:{sid}".encode(),), ttl_ms=2100_000), "spring", S.VALID, "expirations bucket"),
        _case("spring-expirations-bucket-jdk", c.rec(b"spring:session:expirations:1795626900000", type="set", items=(c.java_string(f"expires:{sid}"),)), "spring", S.VALID, "expirations bucket"),
        _case("spring-expirations-bad-member", c.rec(b"spring:session:expirations:1795626900000", type="set", items=(b"nonsense",)), "spring", S.CORRUPT, "expires:"),
        _case("spring-expirations-bad-suffix", c.rec(b"spring:session:expirations:soon", type="set", items=()), "spring", S.CORRUPT, "minute"),
        _case("spring-expirations-zset", c.rec(b"spring:session:sessions:expirations", type="zset", members=((sid.encode(), 1.0),), ttl_ms=None), "spring", S.VALID, "sorted set"),
        _case(
            "spring-principal-index",
            c.rec(b"spring:session:index:org.springframework.session.FindByIndexNameSessionRepository.PRINCIPAL_NAME_INDEX_NAME:user0",
                  type="set", items=(sid.encode(),), ttl_ms=None),
            "spring", S.VALID, "index",
        ),
        _case("spring-index-wrong-type", c.rec(b"spring:session:index:x:user0", b"x"), "spring", S.CORRUPT, "index"),
        _case("spring-odd-key", c.rec(b"spring:session:something", b"x"), "spring", S.UNKNOWN, "Spring"),
    ]
    # ASP.NET Core (data blob built from the documented binary layout)
    yield from [
        _case("aspnet-sliding", c.aspnet_hash(), "aspnet", S.VALID, "well formed"),
        _case("aspnet-absolute-ahead", c.aspnet_hash(absexp=c.ticks(NOW_MS + HOUR_MS)), "aspnet", S.VALID, "well formed"),
        _case("aspnet-absolute-passed", c.aspnet_hash(absexp=c.ticks(NOW_MS - 1)), "aspnet", S.EXPIRED, "absexp"),
        _case("aspnet-empty-session", c.aspnet_hash(data=c.aspnet_blob({})), "aspnet", S.VALID, "well formed"),
        _case("aspnet-bad-revision", c.aspnet_hash(data=b"\x01" + c.aspnet_blob({"a": b"b"})[1:]), "aspnet", S.CORRUPT, "02"),
        _case("aspnet-truncated-id", c.aspnet_hash(data=c.aspnet_blob({})[:10]), "aspnet", S.CORRUPT, "truncated"),
        _case("aspnet-truncated-value", c.aspnet_hash(data=c.aspnet_blob({"user": b"user0"})[:-2]), "aspnet", S.CORRUPT, "truncated"),
        _case("aspnet-count-too-big", c.aspnet_hash(data=b"\x02\x00\x00\x05" + c.aspnet_blob({"a": b"b"})[4:]), "aspnet", S.CORRUPT, "truncated"),
        _case("aspnet-no-data", KeyRecord(key=c.ASPNET_GUID.encode(), type="hash", fields=((b"absexp", b"-1"), (b"sldexp", b"-1"))), "aspnet", S.CORRUPT, "data"),
        _case(
            "aspnet-bad-absexp",
            KeyRecord(key=c.ASPNET_GUID.encode(), type="hash", fields=((b"absexp", b"soon"), (b"data", c.aspnet_blob({})))),
            "aspnet", S.CORRUPT, "absexp",
        ),
        _case("aspnet-no-ttl", c.aspnet_hash(ttl_ms=None), "aspnet", S.STALE, "TTL"),
        _case("aspnet-instance-name", c.aspnet_hash(key=f"MyApp_{c.ASPNET_GUID}".encode()), "aspnet", S.VALID, "well formed"),
        _case(
            "aspnet-fields-without-guid-key",
            KeyRecord(key=b"custom-session-key", type="hash", fields=((b"absexp", b"-1"), (b"sldexp", b"-1"), (b"data", c.aspnet_blob({})))),
            "aspnet", S.VALID, "well formed",
        ),
    ]


@pytest.mark.parametrize("record,store,status,words", list(_variant_cases()))
def test_variant(record: KeyRecord, store: str, status: SessionStatus, words: tuple[str, ...]):
    result = classify(record, NOW_MS, {})
    assert (result.store, result.status) == (store, status), result
    for word in words:
        assert word in f"{result.reason} {result.detail}", result
    _assert_no_leak(result, record.key, record.value or b"")


@pytest.mark.parametrize("kind", ["lz4", "zstd"])
def test_optional_decompressor_missing_means_not_checked(monkeypatch, kind):
    import sys

    value = {"lz4": c.lz4_compress, "zstd": c.zstd_compress}[kind](c.django_pickle(protocol=4))
    monkeypatch.setitem(sys.modules, {"lz4": "lz4.frame", "zstd": "zstandard"}[kind], None)  # import fails
    result = classify(c.rec(b":1:django.contrib.sessions.cachex", value), NOW_MS)
    assert (result.store, result.status) == ("django", S.VALID), result
    assert "not checked" in result.reason


def test_aiohttp_max_age_from_the_operator():
    key = c.fixture("aiohttp").key
    old = c.rec(key, c.aiohttp_value(int(NOW_S) - 2 * 86400), ttl_ms=None)
    fresh = c.rec(key, c.aiohttp_value(int(NOW_S) - 60), ttl_ms=None)
    limits = {"aiohttp": DAY_MS}
    assert classify(old, NOW_MS).status is S.VALID  # max_age unknown: only the TTL counts
    result = classify(old, NOW_MS, limits)
    assert result.status is S.EXPIRED and "max_age" in result.reason
    assert classify(fresh, NOW_MS, limits).status is S.VALID


def test_data_protection_keys_are_never_a_session():
    record = c.rec(b"DataProtection-Keys", type="list", items=(b"<key id='x'/>",), ttl_ms=None)
    assert detect_store(record.key, record.type) is None
    result = classify(record, NOW_MS)
    assert (result.store, result.status) == (None, S.UNKNOWN)
    assert "Data Protection" in result.reason


def test_unknown_keys():
    for record in (
        c.rec(b"cache:users:1", b"hello"),
        c.rec(b"queue", type="list", items=(b"a",)),
        c.rec(b"counter", b"12"),
    ):
        result = classify(record, NOW_MS)
        assert (result.store, result.status) == (None, S.UNKNOWN)


def test_value_not_captured():
    result = classify(c.rec(b"sess:abc", None), NOW_MS)
    assert (result.store, result.status) == ("express", S.UNKNOWN)


# ---------------------------------------------------------------- security


@pytest.mark.parametrize("name", list(c.evil_pickles(Path("/x")).keys()))
@pytest.mark.parametrize("store_key", [b"session:evil", b":1:django.contrib.sessions.cacheevil", b"flask-x:evil"])
def test_malicious_pickle_is_flagged_and_never_run(tmp_path: Path, name: str, store_key: bytes):
    target = tmp_path / "pwned"
    payload, callable_name = c.evil_pickles(target)[name]
    record = c.rec(store_key, payload)
    result = classify(record, NOW_MS)
    assert not target.exists()
    if store_key == b"flask-x:evil" and b"_permanent" not in payload[:64]:
        # unknown prefix, unmarked pickle: not ours to judge, but a PROTO-headed one is named
        assert (result.store, result.status) == (None, S.UNKNOWN)
        if payload.startswith(b"\x80"):
            assert "would call code" in result.reason and callable_name in result.detail, result
        return
    assert result.status is S.CORRUPT, result
    assert result.reason == "pickle would call code outside the allow-list; not executed", result
    assert callable_name in result.detail, result  # the callable is named in the detail, never in the reason
    assert not target.exists()


def test_allow_list_can_be_emptied(monkeypatch):
    from session_migration.sessions import pickle_walk

    value = c.django_pickle({"_session_expiry": datetime(2026, 1, 1, tzinfo=timezone.utc)}, protocol=4)
    record = c.rec(b":1:django.contrib.sessions.cachex", value)
    assert classify(record, NOW_MS).status is S.VALID
    monkeypatch.setattr(pickle_walk, "SAFE_GLOBALS", frozenset())
    result = classify(record, NOW_MS)
    assert result.status is S.CORRUPT and result.detail == "datetime.datetime"


def test_pickle_walker_never_imports_named_modules():
    import sys

    payload = b"\x80\x04\x8c\x1asession_test_never_importd\x94\x8c\x01f\x94\x93)R."
    with pytest.raises(PickleCodeRef, match="session_test_never_importd.f"):
        walk(payload)
    assert "session_test_never_importd" not in sys.modules


def test_pickle_walker_follows_memo_and_marks():
    value = {"a": [1, 2, {"b": (3, 4)}], "_session_expiry": "2026-01-01T00:00:00+00:00", "s": {1, 2}, "f": frozenset({3})}
    for protocol in range(0, 6):
        result = walk(pickle.dumps(value, protocol=protocol))
        assert isinstance(result.top, PDict)
        assert result.top.get("_session_expiry") == "2026-01-01T00:00:00+00:00"
    shared = [1]
    result = walk(pickle.dumps({"x": shared, "y": shared}, protocol=4))  # second is a memo GET
    assert [k for k, _ in result.top.items] == ["x", "y"]
    with pytest.raises(PickleError):
        walk(b"\x80\x04h\x05.")  # memo slot never set
    with pytest.raises(PickleError):
        walk(b"\x80\x04(K\x01K\x02s.")  # SETITEM target hidden behind a MARK


# ---------------------------------------------------------------- hostile input


# Hostile values that some store recognises by their bytes alone, under a key of no store.
_FOUND_UNDER_AN_UNKNOWN_KEY = {
    "php-huge-array": "php", "php-deep": "php", "php-bad-int": "php",  # `a:N:{` / `name|` encodings
    "laravel-huge": "laravel",  # `s:N:"`
    "json-deep-object": "express",  # starts with `{"cookie":`
    "rails71-short": "rails-cachestore", "rails71-huge-version": "rails-cachestore",  # `00 11`
    "ff-bytes": "gorilla",  # a gob message header
}
# Damaged fixtures that are still (or not yet) something: what each one is, and why.
_DAMAGED_BUT_NOT_CORRUPT = {
    "flipped-django-0hud2o": ("django", S.VALID),  # the flips fell inside a pickled string
    # redistore's gob: only the framing is checked, and these flips left it intact
    "flipped-gorilla-XNDN7A": ("gorilla", S.VALID),
    "flipped-gorilla-5FOADA": ("gorilla", S.VALID),
    "flipped-gorilla-KNCJ2Q": ("gorilla", S.VALID),
    # custom-prefix Flask keys: recognised by `_permanent`, which the damage removed or hid
    "flipped-flask--Wxhng": (None, S.UNKNOWN),
    "flipped-flask-HPv9TQ": (None, S.UNKNOWN),
    "flipped-flask-eNlgLI": (None, S.UNKNOWN),
    "spring-wrong-values": ("spring", S.CORRUPT),
    "string-no-value": ("express", S.UNKNOWN),  # no value captured: nothing to judge
    "hash-no-fields": ("aspnet", S.CORRUPT),
    "stream": (None, S.UNKNOWN),  # a stream under `session:` is no Flask session
}


_COMPRESSION_BOMBS = ("zlib-bomb", "gzip-bomb", "lzma-bomb", "lzma-dictionary-bomb", "zstd-bomb", "lz4-bomb")


def _expected_hostile(name: str, record: KeyRecord) -> tuple[str | None, SessionStatus]:
    """The one verdict each hostile case must get (see `c.hostile_records`)."""
    value_name, _, column = name.partition("@")
    if column == "unknown":
        found = _FOUND_UNDER_AN_UNKNOWN_KEY.get(value_name)
        return (found, S.CORRUPT) if found else (None, S.UNKNOWN)
    if column:
        if (value_name, column) == ("empty", "php"):
            return "php", S.VALID  # an empty PHP session is a session
        return column, S.CORRUPT
    if name in _DAMAGED_BUT_NOT_CORRUPT:
        return _DAMAGED_BUT_NOT_CORRUPT[name]
    if name.startswith("random-"):
        return "flask", S.CORRUPT  # random bytes under `session:`
    if name.startswith("aspnet-"):
        return "aspnet", S.CORRUPT
    store = record.store or detect_store(record.key, "string")
    cut = int(name.rsplit("-", 1)[1]) if name.startswith("truncated-") else None
    if store is None and cut is not None and cut <= 3:
        return None, S.UNKNOWN  # a custom prefix and too few bytes left to recognise the store
    if record.value == b"\x80":
        return "django", S.VALID  # one byte of a pickle is an empty msgpack map, which Django loads
    kind = name.split("-", 1)[0]  # truncated / flipped, then the fixture's store
    return next(s for s in sorted(STORES, key=len, reverse=True) if name.startswith(f"{kind}-{s}-")), S.CORRUPT


@pytest.mark.parametrize("name,record", c.hostile_records(), ids=lambda v: v if isinstance(v, str) else "")
def test_hostile_input_gets_its_exact_verdict(name: str, record: KeyRecord):
    detect_store(record.key, record.type, record.value)
    result = classify(record, NOW_MS, {"aiohttp": DAY_MS})
    assert (result.store, result.status) == _expected_hostile(name, record), result
    assert "checker failed" not in result.reason, result  # a crash inside a judge would be a bug
    assert len(result.detail) <= DETAIL_CHARS and not _CONTROL.search(result.detail), result
    if name.split("@")[0] in _COMPRESSION_BOMBS and result.store == "django":
        assert "size cap" in result.reason or "decoder memory" in result.reason, result


def test_reasons_are_a_small_fixed_set_over_all_hostile_input():
    """Reasons carry no offsets, names or payload text: "by reason" stays a short table."""
    reasons = {classify(record, NOW_MS).reason for _name, record in c.hostile_records()}
    assert len(reasons) <= 45, sorted(reasons)
    assert not any(_CONTROL.search(r) or re.search(r"offset|0x|\d{3,}", r) for r in reasons), sorted(reasons)


def test_a_thousand_different_breakages_make_one_reason_per_kind():
    """Issue 14: reasons carried payload text, so 1,000 corrupt keys made 1,000 "by reason" rows."""
    rows = []
    for i in range(250):  # each kind broken at a different offset, or naming a different callable
        rows += [
            (b"PHPREDIS_SESSION:x", b'user|s:5:"abcde";' * i + b"x|Q:1;"),
            (b"rack:session:2::x", b"\x04\x08[\x01\xc8" + b"i\x06" * (i % 100) + b"\x01"),  # 0x01: no such type
            (b":1:django.contrib.sessions.cachex", b"\x80\x04\x8c\x02os\x8c\x06sys%03d\x93." % i),
            (b"session_x", b"\x03\xff\x81\x00" * (i + 1) + b"\x05\x02"),
        ]
    results = [classify(c.rec(key, value), NOW_MS) for key, value in rows]
    assert len(results) == 1000 and all(r.status is S.CORRUPT for r in results)
    assert len({r.detail for r in results}) > 100  # the details do differ...
    assert len({(r.store, r.reason) for r in results}) == 4, {(r.store, r.reason) for r in results}  # ...the reasons do not


def test_pickle_with_a_shared_tuple_key_is_walked_in_linear_steps():
    """Issue 14: 12,000 uses of one memoized tuple as a dict key took 1.6 CPU-s (quadratic)."""
    payload = c.shared_tuple_key_pickle(12_000)
    result = walk(payload)
    assert isinstance(result.top, PDict) and len(result.top.items) == 12_000
    assert result.steps <= 2 * len(payload), (result.steps, len(payload))
    twice = walk(c.shared_tuple_key_pickle(24_000))
    assert twice.steps <= 2 * result.steps + 16  # double the input, double the steps
    verdict = classify(c.rec(b":1:django.contrib.sessions.cachex", payload), NOW_MS)
    assert (verdict.store, verdict.status) == ("django", S.VALID), verdict


def test_pickle_memo_slots_named_by_colliding_integers_are_walked_in_linear_steps():
    payload = c.colliding_memo_pickle(5_000)
    result = walk(payload)
    assert isinstance(result.top, PDict) and result.steps <= 2 * len(payload)
    verdict = classify(c.rec(b":1:django.contrib.sessions.cachex", payload), NOW_MS)
    assert (verdict.store, verdict.status) == ("django", S.VALID), verdict


@pytest.mark.parametrize("key,value", [
    (b"PHPREDIS_SESSION:x", b"user|s:5:\"alice\";" * 100),
    (b"rack:session:2::x", b"\x04\x08{\x01\xc8" + b"i\x06i\x06" * 200),
    (b":1:django.contrib.sessions.cachex", pickle.dumps({f"k{i}": i for i in range(200)}, 4)),
    (b"laravel_database_laravel_cache:x", c.laravel_value(c.laravel_attrs(**{f"k{i}": "v" for i in range(100)}))),
], ids=["php", "marshal", "pickle", "laravel"])
def test_a_parser_past_its_step_budget_gives_a_fixed_corrupt_verdict(monkeypatch, key, value):
    from session_migration.sessions import model

    assert classify(c.rec(key, value), NOW_MS).status is not S.CORRUPT
    monkeypatch.setattr(model, "STEPS_PER_BYTE", 0)  # the budget shrinks to its constant part
    result = classify(c.rec(key, value), NOW_MS)
    assert (result.status, result.reason) == (S.CORRUPT, model.BUDGET_REASON), result


def test_a_value_above_the_parse_limit_is_corrupt_without_being_parsed(monkeypatch):
    from session_migration.sessions import model, registry

    monkeypatch.setattr(registry, "MAX_PARSED_BYTES", 1000)
    value = json.dumps({"cookie": {}, "x": "y" * 2000}).encode()
    for record in (c.rec(b"sess:x", value), c.rec(b"myapp:x", value)):
        result = classify(record, NOW_MS)
        assert (result.store, result.status, result.reason) == ("express", S.CORRUPT, model.TOO_LARGE_REASON)


@pytest.mark.parametrize("kind", ["zlib", "gzip", "lzma", "lz4", "zstd"])
def test_decompression_bomb_is_refused_under_the_cap(kind):
    """Issue 14: zstd's declared content size bypassed the cap (a 8 KiB frame became 256 MiB)."""
    import tracemalloc

    from session_migration.sessions.compression import CAP_EXCEEDED, MAX_INFLATED, CompressionError, inflate

    values = c.hostile_values()
    bomb = {"zlib": values["zlib-bomb"], "gzip": values["gzip-bomb"], "lzma": values["lzma-bomb"],
            "lz4": values["lz4-bomb"], "zstd": values["zstd-bomb"]}[kind]
    tracemalloc.start()
    try:
        with pytest.raises(CompressionError, match=CAP_EXCEEDED):
            inflate(bomb, kind)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the output buffer, at most once more while it is resized: never anything like the bomb's size
    assert peak < 2 * MAX_INFLATED + (4 << 20), f"{peak >> 20} MiB allocated for a {len(bomb)}-byte {kind} bomb"
    result = classify(c.rec(b":1:django.contrib.sessions.cachex", bomb), NOW_MS)
    assert (result.store, result.status) == ("django", S.CORRUPT)
    assert result.reason == f"{kind} payload does not decompress: {CAP_EXCEEDED}"


def test_lzma_stream_asking_for_a_huge_dictionary_is_refused():
    from session_migration.sessions.compression import MEMORY_LIMIT

    result = classify(c.rec(b":1:django.contrib.sessions.cachex", c.lzma_dictionary_bomb()), NOW_MS)
    assert (result.status, result.reason) == (S.CORRUPT, f"lzma payload does not decompress: {MEMORY_LIMIT}")


def test_hostile_input_under_the_rightful_store_is_corrupt():
    values = c.hostile_values()
    for name in ("php-huge-string", "php-deep", "php-huge-array"):
        assert classify(c.rec(b"PHPREDIS_SESSION:x", values[name]), NOW_MS).status is S.CORRUPT
    for name in ("marshal-huge-array", "marshal-deep", "marshal-bad-link", "marshal-bignum"):
        assert classify(c.rec(b"rack:session:2::x", values[name]), NOW_MS).status is S.CORRUPT
    for name in ("pickle-huge-bytes8", "pickle-huge-unicode", "pickle-no-stop", "pickle-underflow", "pickle-proto-9"):
        assert classify(c.rec(b":1:django.contrib.sessions.cachex", values[name]), NOW_MS).status is S.CORRUPT
    for name in ("json-deep", "json-deep-object"):
        assert classify(c.rec(b"sess:x", values[name]), NOW_MS).status is S.CORRUPT


# ---------------------------------------------------------------- helpers


def _assert_no_leak(result: Classification, key: bytes, value: bytes) -> None:
    """Reasons may name formats and fields, never the session id or session content."""
    reason = result.reason
    assert key.decode(errors="replace") not in reason
    ident = key.rsplit(b":", 1)[-1].rsplit(b".", 1)[-1]
    if len(ident) >= 16:
        assert ident.decode(errors="replace") not in reason
    for secret in (b"user0", b"user1", b"user2", b"reader"):
        if secret in value:
            assert secret.decode() not in reason
