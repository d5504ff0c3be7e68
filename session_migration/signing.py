"""HMAC-SHA256 signatures over manifests, migration state files and checkpoints.

Whoever can write to the backup storage can rewrite a manifest and recompute every checksum
in it; only a key that the storage never sees tells our own files from theirs. With a key
configured, every JSON document this tool writes to the storage carries

    "signature": {"algorithm": "HMAC-SHA256", "key_id": "<16 hex>", "hmac": "<64 hex>"}

over the document's canonical JSON (keys sorted, no spaces, ASCII; without `signature` and
`manifest_sha256`), prefixed with what the document is (`purpose`), so that a signed state
file can never pass for a signed manifest. A manifest's canonical JSON lists every part's
sha256, so its signature covers the data too.

Keys come from the environment or a Prefect `Secret` block (`tasks/blocks.py`), never from the
storage:

- `SESSION_MIGRATION_SIGNING_KEY`: the current key, at least 32 characters. It signs, and it
  verifies what it signed.
- `SESSION_MIGRATION_SIGNING_KEYS`: earlier keys, separated by commas or white space, still
  accepted for verification after a rotation. They never sign.

A key's id is a fingerprint of the key (`key_id`), so nothing but the keys has to be configured
and an id can never point at the wrong key. The keys themselves never reach a log, a report,
a Prefect parameter or a file: `Keyring` does not print them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidParameter, SignatureInvalid

SIGNING_KEY_ENV = "SESSION_MIGRATION_SIGNING_KEY"
VERIFY_KEYS_ENV = "SESSION_MIGRATION_SIGNING_KEYS"
MIN_KEY_CHARS = 32
ALGORITHM = "HMAC-SHA256"
SIGNATURE = "signature"
UNSIGNED_FIELDS = frozenset({SIGNATURE, "manifest_sha256"})  # what a signature does not cover

# What `Keyring.check` finds: the words `validate --json` reports as `signature`.
VALID, INVALID, UNCHECKED = "valid", "invalid", "unchecked"

_KEY_ID_RE = re.compile(r"^[0-9a-f]{16}$")
_HMAC_RE = re.compile(r"^[0-9a-f]{64}$")


def key_id(secret: bytes) -> str:
    """The public name of a key: a fingerprint that says nothing about the key itself."""
    return hashlib.sha256(b"redis-session-migration signing key id\0" + secret).hexdigest()[:16]


def canonical_bytes(document: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers (and `manifest_sha256` hashes, with the signature)."""
    body = {k: v for k, v in document.items() if k not in UNSIGNED_FIELDS}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _mac(secret: bytes, purpose: str, document: Mapping[str, Any]) -> str:
    message = f"redis-session-migration/{purpose}\n".encode() + canonical_bytes(document)
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def _secret(text: str, where: str) -> bytes:
    text = text.strip()
    if len(text) < MIN_KEY_CHARS:
        raise InvalidParameter(
            f"The signing key in {where} has {len(text)} characters; use at least {MIN_KEY_CHARS} random ones, "
            "e.g. from `python -c 'import secrets; print(secrets.token_urlsafe(32))'`."
        )
    return text.encode()


@dataclass(frozen=True)
class Verdict:
    """What a signature check found: `status` is VALID, INVALID or UNCHECKED (no key, or unsigned)."""

    signed: bool
    status: str
    key_id: str | None = None
    reason: str | None = None  # for INVALID, and for an unsigned document while a key is set

    @property
    def valid(self) -> bool:
        return self.status == VALID


@dataclass(frozen=True)
class Keyring:
    """The signing key and the keys still accepted for verification; empty = no signing.

    `allow_unsigned` lets a reader accept an *unsigned* document although a key is configured
    (an operator restoring a snapshot made before signing was set up, knowingly); a document
    with a wrong signature is refused all the same.
    """

    signing_key: bytes | None = field(default=None, repr=False)
    verify_keys: Mapping[str, bytes] = field(default_factory=dict, repr=False)  # key id -> key
    allow_unsigned: bool = False

    @classmethod
    def from_secrets(cls, current: str | None, previous: Iterable[str] = (), *, allow_unsigned: bool = False,
                     where: str = SIGNING_KEY_ENV) -> Keyring:
        """A keyring from key texts: `current` signs; `previous` only verify."""
        previous = list(previous)
        if current is None or not current.strip():
            if previous:
                raise InvalidParameter(
                    f"{VERIFY_KEYS_ENV} holds earlier signing keys but no current key is set; set {SIGNING_KEY_ENV} "
                    "(or --signing-key-block) too."
                )
            return cls(allow_unsigned=allow_unsigned)
        signing = _secret(current, where)
        keys = {key_id(k): k for k in (_secret(p, VERIFY_KEYS_ENV) for p in previous)}
        keys[key_id(signing)] = signing
        return cls(signing_key=signing, verify_keys=keys, allow_unsigned=allow_unsigned)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, allow_unsigned: bool = False,
                 current: str | None = None, where: str = SIGNING_KEY_ENV) -> Keyring:
        """The keys of the environment; `current` (e.g. a Prefect Secret's value) replaces
        `SESSION_MIGRATION_SIGNING_KEY` when given."""
        environ = os.environ if environ is None else environ
        previous = environ.get(VERIFY_KEYS_ENV, "").replace(",", " ").split()
        if current is None:
            current = environ.get(SIGNING_KEY_ENV)
        return cls.from_secrets(current, previous, allow_unsigned=allow_unsigned, where=where)

    @property
    def configured(self) -> bool:
        return self.signing_key is not None

    @property
    def key_id(self) -> str | None:
        return key_id(self.signing_key) if self.signing_key is not None else None

    def sign(self, document: Mapping[str, Any], purpose: str) -> dict[str, Any]:
        """`document` with its signature (unchanged, without one, when no key is configured)."""
        body = {k: v for k, v in document.items() if k != SIGNATURE}
        if self.signing_key is None:
            return body
        body[SIGNATURE] = {"algorithm": ALGORITHM, "key_id": self.key_id,
                           "hmac": _mac(self.signing_key, purpose, body)}
        return body

    def check(self, document: Mapping[str, Any], purpose: str) -> Verdict:
        """Never raises: a malformed signature is INVALID."""
        signature = document.get(SIGNATURE)
        if SIGNATURE not in document:
            reason = "it is not signed" if self.configured else None
            return Verdict(signed=False, status=UNCHECKED, reason=reason)
        if not self.configured:
            return Verdict(signed=True, status=UNCHECKED)
        if (not isinstance(signature, dict) or signature.get("algorithm") != ALGORITHM
                or not isinstance(signature.get("key_id"), str) or not _KEY_ID_RE.match(signature["key_id"])
                or not isinstance(signature.get("hmac"), str) or not _HMAC_RE.match(signature["hmac"])):
            return Verdict(signed=True, status=INVALID, reason="its signature is malformed")
        secret = self.verify_keys.get(signature["key_id"])
        if secret is None:
            return Verdict(signed=True, status=INVALID, key_id=signature["key_id"],
                           reason=(f"it is signed with key id {signature['key_id']}, which is not configured "
                                   f"(add that key to {VERIFY_KEYS_ENV} if it is one of yours)"))
        if not hmac.compare_digest(_mac(secret, purpose, document), signature["hmac"]):
            return Verdict(signed=True, status=INVALID, key_id=signature["key_id"],
                           reason="its signature does not match its content (it was altered or signed with another key)")
        return Verdict(signed=True, status=VALID, key_id=signature["key_id"])

    def accepts(self, verdict: Verdict) -> bool:
        """Whether a reader may go on: always without a key; with one, a valid signature, or
        an unsigned document when `allow_unsigned`."""
        if not self.configured:
            return True
        return verdict.valid or (not verdict.signed and self.allow_unsigned)

    def require(self, document: Mapping[str, Any], purpose: str, what: str) -> Verdict:
        """`check`, raising `SignatureInvalid` naming `what` when the keyring does not accept it."""
        verdict = self.check(document, purpose)
        if not self.accepts(verdict):
            raise SignatureInvalid(f"Refusing {what}: a signing key is configured and {verdict.reason}.")
        return verdict


def resolve(keyring: Keyring | None) -> Keyring:
    """The keyring to use: the one given, else the environment's."""
    return keyring if keyring is not None else Keyring.from_env()


# -- where a run's keys come from (this, never a key, travels as a parameter) -----------------------

_secret_loader: Callable[[str], str] | None = None


def register_secret_loader(loader: Callable[[str], str]) -> None:
    """How a Prefect `Secret` block's name becomes its value (tasks/blocks.py)."""
    global _secret_loader
    _secret_loader = loader


@dataclass(frozen=True)
class KeySource:
    """Where a run takes its signing keys: the environment, or the Prefect `Secret` block
    named `block` for the current key; and whether unsigned documents are accepted knowingly.
    Only names and flags: safe as a flow or task parameter."""

    block: str | None = None
    allow_unsigned: bool = False

    def keyring(self) -> Keyring:
        if not self.block:
            return Keyring.from_env(allow_unsigned=self.allow_unsigned)
        if _secret_loader is None:
            raise InvalidParameter(f"The signing key block {self.block!r} is a Prefect Secret: run through the flows "
                                   "(or the CLI), or set SESSION_MIGRATION_SIGNING_KEY instead.")
        return Keyring.from_env(current=_secret_loader(self.block), allow_unsigned=self.allow_unsigned,
                                where=f"the Secret block {self.block!r}")


def keyring_of(keys: KeySource | Keyring | None) -> Keyring:
    """The keyring a step uses: a `KeySource`'s, a keyring given as it is, else the environment's."""
    if isinstance(keys, KeySource):
        return keys.keyring()
    return resolve(keys)
