"""Signing units: what a signature covers, what it refuses, and where keys come from. No services."""

from __future__ import annotations

import pytest

from session_migration.errors import InvalidParameter, SignatureInvalid
from session_migration.manifest import schema_problems
from session_migration.signing import INVALID, UNCHECKED, VALID, Keyring, key_id

KEY = "unit-test-signing-key-0123456789abcdefghij"


def test_a_signature_covers_every_field_but_itself_and_the_checksum():
    keyring = Keyring.from_secrets(KEY)
    doc = keyring.sign({"parts": [{"name": "part-00000.parquet", "sha256": "a" * 64}], "manifest_sha256": "x"}, "manifest")
    assert keyring.check(doc, "manifest").status == VALID
    assert keyring.check({**doc, "manifest_sha256": "y"}, "manifest").status == VALID
    edited = {**doc, "parts": [{"name": "part-00000.parquet", "sha256": "b" * 64}]}
    assert keyring.check(edited, "manifest").status == INVALID


def test_a_signature_is_bound_to_what_the_document_is():
    keyring = Keyring.from_secrets(KEY)
    state = keyring.sign({"migration_id": "m"}, "migration-state")
    verdict = keyring.check(state, "manifest")
    assert verdict.status == INVALID and "does not match" in verdict.reason
    with pytest.raises(SignatureInvalid, match="the thing"):
        keyring.require(state, "restore-checkpoint", "the thing")


@pytest.mark.parametrize("signature", [None, "hmac", {"algorithm": "HMAC-MD5"}, {"algorithm": "HMAC-SHA256", "key_id": "x", "hmac": "y"}])
def test_malformed_signatures_are_invalid_not_errors(signature):
    keyring = Keyring.from_secrets(KEY)
    verdict = keyring.check({"a": 1, "signature": signature}, "manifest")
    assert verdict.signed and verdict.status == INVALID and not keyring.accepts(verdict)


def test_without_a_key_nothing_is_checked_and_everything_is_accepted():
    keyring = Keyring()
    assert keyring.sign({"a": 1}, "manifest") == {"a": 1}
    verdict = keyring.check({"a": 1, "signature": {"whatever": 1}}, "manifest")
    assert (verdict.signed, verdict.status) == (True, UNCHECKED) and keyring.accepts(verdict)


def test_unsigned_documents_only_with_allow_unsigned():
    strict, lenient = Keyring.from_secrets(KEY), Keyring.from_secrets(KEY, allow_unsigned=True)
    verdict = strict.check({"a": 1}, "manifest")
    assert not verdict.signed and not strict.accepts(verdict) and lenient.accepts(verdict)


def test_key_ids_are_stable_fingerprints_and_keys_are_stripped():
    assert key_id(KEY.encode()) == key_id(KEY.encode()) != key_id(b"another-key-0123456789abcdefghijklm")
    assert Keyring.from_secrets(f"  {KEY}\n").key_id == key_id(KEY.encode())


def test_old_keys_are_read_from_the_environment_separated_by_commas_or_spaces():
    old1, old2 = "old-key-number-one-0123456789abcdefghij", "old-key-number-two-0123456789abcdefghij"
    keyring = Keyring.from_env({"SESSION_MIGRATION_SIGNING_KEY": KEY,
                                "SESSION_MIGRATION_SIGNING_KEYS": f"{old1},\n {old2}"})
    assert set(keyring.verify_keys) == {key_id(k.encode()) for k in (KEY, old1, old2)}
    assert keyring.signing_key == KEY.encode()
    with pytest.raises(InvalidParameter, match="at least 32"):
        Keyring.from_env({"SESSION_MIGRATION_SIGNING_KEY": KEY, "SESSION_MIGRATION_SIGNING_KEYS": "short"})


def test_schema_names_the_path_never_the_content():
    found = schema_problems({"snapshot_id": "\x1b[31mred", "parts": [{"name": "../x", "rows": 1, "bytes": 1, "sha256": "z"}]})
    text = " ".join(found)
    assert "`snapshot_id`" in text and "`parts[0].name`" in text and "\x1b" not in text and "../x" not in text
