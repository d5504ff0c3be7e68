"""What a key, a payload detail or any untrusted text looks like when shown (issue 14)."""

from __future__ import annotations

import pytest

from session_migration import redaction
from session_migration.redaction import markdown_escape, redact_key, safe_text

ID = "0123456789abcdef0123456789abcdef"
GUID = "3f1c7a52-9b1e-4c55-8a0e-1d2b3c4d5e6f"


@pytest.mark.parametrize("key, shown", [
    (f"sess:{ID}:csrf", "sess:0123"),  # issue 14: was shown whole (prefix up to the last ':')
    (f"sess:{ID}", "sess:0123"),
    (f"session:{ID}:flash:notice", "session:0123"),
    (f":1:django.contrib.sessions.cache{ID}", ":1:django.contrib.sessions.cache0123"),
    (f"myapp:v2:1:django.contrib.sessions.cached_db{ID}", "myapp:v2:1:django.contrib.sessions.cached_db0123"),
    (f"rack:session:2::{ID}", "rack:session:2::0123"),
    (f"_session_id:2::{ID}", "_session_id:2::0123"),
    (f"spring:session:sessions:{GUID}", "spring:session:sessions:3f1c"),
    (f"spring:session:sessions:expires:{GUID}", "spring:session:sessions:expires:3f1c"),
    (f"myns:sessions:{GUID}", "myns:sessions:3f1c"),
    (f"MyApp_{GUID}", "MyApp_3f1c"),  # ASP.NET: <InstanceName><GUID>
    (GUID, "3f1c"),
    (f"PHPREDIS_SESSION:{ID}_LOCK", "PHPREDIS_SESSION:0123"),
    (f"laravel_database_laravel_cache:{ID}", "laravel_database_laravel_cache:0123"),
    (f"starsessions.{ID}", "starsessions.0123"),
    (f"AIOHTTP_SESSION_{ID}", "AIOHTTP_SESSION_0123"),
    (f"session_{ID}", "session_0123"),
    (f"cache:user:{ID}", "cache:"),  # unknown layout: the first segment only
    (f"{ID[:22]}:session", ""),  # an id first: nothing of it
    ("sess:abcdefgh", "sess:ab"),  # never more than a quarter of the id
    ("sess:ab", "sess:"),
])
def test_redaction_follows_the_stores_key_layout(key, shown):
    result = redact_key(key.encode())
    assert result.split("…#")[0] == shown, result
    assert result == redact_key(key)  # bytes or text alike
    assert ID[:5] not in result and GUID[:5] not in result


def test_the_hash_is_keyed_and_stable(monkeypatch):
    key = f"sess:{ID}".encode()
    default = redact_key(key)
    assert default == redact_key(key) and default.rsplit("#", 1)[1].isalnum() and len(default.rsplit("#", 1)[1]) == 8
    monkeypatch.setenv("SESSION_MIGRATION_REDACTION_KEY", "site-secret")
    redaction._hash_key.cache_clear()
    try:
        keyed = redact_key(key)
        assert keyed != default and keyed.split("…")[0] == default.split("…")[0]
    finally:
        monkeypatch.delenv("SESSION_MIGRATION_REDACTION_KEY")
        redaction._hash_key.cache_clear()
    assert redact_key(key) == default


@pytest.mark.parametrize("key", [b"sess:\x1b[2J\x1b]0;x\x07abc", b"sess:\r\n\x9bab", "sess:\u202eabcdefgh".encode()])
def test_redacted_keys_hold_no_control_characters(key):
    shown = redact_key(key)
    assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F or c == "\u202e" for c in shown), repr(shown)


def test_safe_text_escapes_every_control_character_visibly():
    assert safe_text("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert safe_text("line\r\nnext\tx\x00") == "line\\x0d\\x0anext\\x09x\\x00"
    assert safe_text("\x9b\u2028\u202e\u2066") == "\\x9b\\u2028\\u202e\\u2066"
    assert safe_text("plain text, ünïcode ok") == "plain text, ünïcode ok"
    assert safe_text("x" * 50, limit=10) == "x" * 9 + "…"
    assert safe_text(42) == "42"


def test_markdown_escape_leaves_no_markup():
    text = markdown_escape("<img src=x onerror=alert(1)> | **b** [l](u) `c` # h \x1b[2J & _i_")
    assert "<" not in text and ">" not in text and "\x1b" not in text
    assert "&lt;img" in text and "&amp;" in text
    for mark in ("|", "*", "[", "]", "(", ")", "`", "#", "_"):
        assert f"\\{mark}" in text and text.count(mark) == text.count(f"\\{mark}"), mark
