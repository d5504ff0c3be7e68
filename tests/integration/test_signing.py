"""Signed snapshots: what the key signs, key rotation, format-1 snapshots, and keys that never leak."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from session_migration import backup, open_snapshot, storage
from session_migration.errors import InvalidParameter, SignatureInvalid
from session_migration.restore import restore
from session_migration.signing import Keyring, key_id
from session_migration.snapshot import manifest_bytes
from session_migration.validation import validate_snapshot

pytestmark = pytest.mark.integration

KEY_ENV, KEYS_ENV = "SESSION_MIGRATION_SIGNING_KEY", "SESSION_MIGRATION_SIGNING_KEYS"
OLD_KEY = "the-key-of-last-year-0123456789abcdefghij"
NEW_KEY = "the-key-of-this-year-0123456789abcdefghij"


@pytest.fixture(autouse=True)
def no_key(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEYS_ENV, raising=False)


def seed(r):
    for i in range(20):
        r.set(f"sess:{i:02d}", f"session {i}", ex=3600)
    r.set("app:session-like", b"outside every session pattern")


def url(server, db):
    return server.url.rsplit("/", 1)[0] + f"/{db}"


def report(result_url, **kw):
    fs, path = storage.resolve(result_url)
    return validate_snapshot(fs, path, **kw).as_dict()


def test_a_snapshot_signed_with_an_old_key_is_verified_when_that_key_is_configured(valkey, tmp_path, monkeypatch):
    seed(valkey.client())
    monkeypatch.setenv(KEY_ENV, OLD_KEY)
    old = backup(valkey.url, str(tmp_path), patterns=["sess:*"])
    manifest = json.loads((tmp_path / old.snapshot_id / "manifest.json").read_text())
    assert manifest["format_version"] == 2 and manifest["signature"]["key_id"] == key_id(OLD_KEY.encode())

    # Rotation: a new key signs; the old one still verifies what it signed.
    monkeypatch.setenv(KEY_ENV, NEW_KEY)
    monkeypatch.setenv(KEYS_ENV, f"{OLD_KEY}, some-other-retired-key-0123456789abcdef")
    assert report(old.url)["signature"] == "valid"
    assert restore(old.url, url(valkey, 1)).counters.written == 20
    new = backup(valkey.url, str(tmp_path), patterns=["sess:*"])
    assert json.loads((tmp_path / new.snapshot_id / "manifest.json").read_text())["signature"]["key_id"] == key_id(NEW_KEY.encode())

    # Without the old key, the old snapshot is refused and the message names its key id.
    monkeypatch.delenv(KEYS_ENV)
    refused = report(old.url)
    assert [p["code"] for p in refused["problems"]] == ["signature-invalid"] and refused["signature"] == "invalid"
    assert key_id(OLD_KEY.encode()) in refused["problems"][0]["message"]
    with pytest.raises(SignatureInvalid):
        restore(old.url, url(valkey, 2))
    assert valkey.client(2).dbsize() == 0
    assert report(new.url)["signature"] == "valid"


def test_the_key_comes_from_an_explicit_keyring_too(valkey, tmp_path):
    seed(valkey.client())
    keyring = Keyring.from_secrets(NEW_KEY)
    result = backup(valkey.url, str(tmp_path), patterns=["sess:*"], keyring=keyring)
    fs, path = storage.resolve(result.url)
    assert validate_snapshot(fs, path, keyring=keyring).signature == "valid"
    assert validate_snapshot(fs, path).signature == "unchecked"  # no key in the environment
    assert open_snapshot(result.url, keyring=keyring).trusted


def _as_format_1(folder: Path) -> None:
    """Rewrite a manifest exactly as the format-1 writer did: version 1, no signature."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["format_version"] = 1
    manifest.pop("signature", None)
    manifest.pop("manifest_sha256")
    (folder / "manifest.json").write_bytes(manifest_bytes(manifest))


def test_format_1_snapshots_stay_readable(valkey, tmp_path, monkeypatch):
    seed(valkey.client())
    result = backup(valkey.url, str(tmp_path), patterns=["sess:*", "app:*"])
    _as_format_1(tmp_path / result.snapshot_id)

    checked = report(result.url)
    assert checked["valid"] and checked["format_version"] == 1
    assert (checked["signed"], checked["signature"]) == (False, "unchecked")
    # Restorable without a key; its scope is not an authority, so app:* needs asking for.
    done = restore(result.url, url(valkey, 1))
    assert done.counters.written == 20 and done.counters.outside_default_patterns == 1
    assert restore(result.url, url(valkey, 1), patterns=["app:*"]).counters.written == 1

    # With a key: refused, unless the operator accepts the unsigned snapshot knowingly.
    monkeypatch.setenv(KEY_ENV, NEW_KEY)
    assert [p["code"] for p in report(result.url)["problems"]] == ["unsigned"]
    with pytest.raises(SignatureInvalid, match="allow-unsigned"):
        restore(result.url, url(valkey, 2))
    assert valkey.client(2).dbsize() == 0
    knowingly = Keyring.from_env(allow_unsigned=True)
    assert report(result.url, keyring=knowingly)["valid"]
    done = restore(result.url, url(valkey, 2), keyring=knowingly)
    assert done.counters.written == 20 and done.summary()["scope_from"] == "default session patterns"


def test_a_wrong_signature_is_refused_even_when_unsigned_ones_are_allowed(valkey, tmp_path, monkeypatch):
    seed(valkey.client())
    monkeypatch.setenv(KEY_ENV, NEW_KEY)
    result = backup(valkey.url, str(tmp_path), patterns=["sess:*"])
    folder = tmp_path / result.snapshot_id
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["scope"]["patterns"] = ["*"]
    (folder / "manifest.json").write_bytes(manifest_bytes(manifest))
    with pytest.raises(SignatureInvalid, match="does not match"):
        restore(result.url, url(valkey, 1), keyring=Keyring.from_env(allow_unsigned=True))


def test_keys_never_reach_manifests_checkpoints_reports_or_reprs(valkey, tmp_path, monkeypatch):
    seed(valkey.client())
    monkeypatch.setenv(KEY_ENV, NEW_KEY)
    monkeypatch.setenv(KEYS_ENV, OLD_KEY)
    result = backup(valkey.url, str(tmp_path), patterns=["sess:*"])
    restore(result.url, url(valkey, 1))
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    checked = json.dumps(report(result.url))
    keyring = Keyring.from_env()
    for secret in (NEW_KEY, OLD_KEY):
        assert secret.encode() not in written and secret not in checked
        assert secret not in repr(keyring) and secret not in str(keyring)


def test_short_keys_and_orphan_old_keys_are_refused(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "too-short")
    with pytest.raises(InvalidParameter, match="at least 32"):
        Keyring.from_env()
    monkeypatch.delenv(KEY_ENV)
    monkeypatch.setenv(KEYS_ENV, OLD_KEY)
    with pytest.raises(InvalidParameter, match=KEY_ENV):
        Keyring.from_env()
