"""Laravel cache-backed sessions: PHP `serialize()` of the string that holds the session.

The inner string is `serialize($attributes)` (default), JSON (`session.serialization=json`)
or an encrypted envelope (`session.encrypt=true`, base64 JSON with iv/value/mac). A session
always carries `_token`; an encrypted one can only be checked for its envelope.
"""

from __future__ import annotations

import base64
import binascii
import json

from ..record import KeyRecord
from .model import Context, Corrupt, Verdict, try_json_object, valid
from .php_unserialize import PhpError, unserialize


def judge(record: KeyRecord, ctx: Context) -> Verdict:
    try:
        inner = unserialize(record.value or b"")
    except PhpError as exc:
        raise Corrupt("value does not unserialize", exc) from None
    if not isinstance(inner, bytes):
        raise Corrupt("value unserializes to something other than a string")
    if inner.startswith(b"a:"):
        try:
            attributes = unserialize(inner)
        except PhpError as exc:
            raise Corrupt("inner session does not unserialize", exc) from None
        if not isinstance(attributes, dict) or b"_token" not in attributes:
            raise Corrupt("inner session is not an array with _token")
        return valid("serialized session array with _token")
    if inner.startswith(b"{"):
        doc = try_json_object(inner)
        if doc is None or "_token" not in doc:
            raise Corrupt("inner JSON session has no _token")
        return valid("JSON session with _token")
    if _is_encrypted_envelope(inner):
        return valid("encrypted session; only the envelope was checked")
    raise Corrupt("inner payload is neither a serialized array, JSON nor an encrypted envelope")


def _is_encrypted_envelope(inner: bytes) -> bool:
    try:
        envelope = json.loads(base64.b64decode(inner, validate=True))
    except (binascii.Error, ValueError, RecursionError):
        return False
    return isinstance(envelope, dict) and {"iv", "value", "mac"} <= envelope.keys()
