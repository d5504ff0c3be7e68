"""Session ids are bearer credentials: the artifacts of a flow run name keys only redacted,
even where they list examples (verify's mismatches, cleanup's candidates)."""

from __future__ import annotations

import json
import secrets

import pytest

from helpers import read_flow_run, run_flow
from session_migration import redact_key

pytestmark = [pytest.mark.flows, pytest.mark.integration]


def test_no_artifact_shows_a_whole_session_id(prefect_harness, valkey_server, redis_server):
    from flows import cleanup_expired_sessions, verify_sessions

    a, b = valkey_server.client(), redis_server.client()
    a.flushall(), b.flushall()
    kinds = ("ok", "missing", "extra", "type", "value", "ttl", "corrupt")
    keys = {kind: f"sess:{secrets.token_hex(16)}" for kind in kinds}
    session = json.dumps({"cookie": {"expires": None}, "user": "u"})
    for kind, key in keys.items():
        value = b"\xff not a session" if kind == "corrupt" else session
        if kind != "extra":
            a.set(key, value, ex=3600)
        if kind not in ("missing", "type"):
            b.set(key, "changed" if kind == "value" else value, ex=60 if kind == "ttl" else 3600)
    b.hset(keys["type"], mapping={"a": "1"})

    verified, verify_id = run_flow(verify_sessions, a=valkey_server.url, b=redis_server.url, patterns=["sess:*"])
    cleaned, cleanup_id = run_flow(cleanup_expired_sessions, source=valkey_server.url, patterns=["sess:*"],
                                   include=["corrupt"])
    counts = verified.result()["counts"]
    assert {k: counts[k] for k in ("OK", "MISSING", "EXTRA", "TYPE", "VALUE", "TTL")} == {
        "OK": 2, "MISSING": 1, "EXTRA": 1, "TYPE": 1, "VALUE": 1, "TTL": 1}
    assert cleaned.result()["candidates"]["corrupt"] == 1
    shown = {"verify": read_flow_run(verify_id).text(), "cleanup": read_flow_run(cleanup_id).text()}
    # The artifacts do name the keys they are about...
    for kind in ("missing", "extra", "type", "value", "ttl"):
        assert redact_key(keys[kind]) in shown["verify"], kind
    assert redact_key(keys["corrupt"]) in shown["cleanup"]
    # ...but never a whole id, nor does what the flows return.
    returned = json.dumps([verified.result(), cleaned.result()])
    for key in keys.values():
        ident = key.removeprefix("sess:")
        assert all(ident not in text for text in (*shown.values(), returned)), key
