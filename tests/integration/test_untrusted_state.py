"""A migration state file from the storage cannot widen what a resumed rollback deletes or writes.

Each test leaves a failed migration's target un-rolled-back (`rollback_on_failure=False`), then
plays an attacker who can write to the backup storage: the state file's patterns widened to
`*`, the pre-image forged to match, the pre-image's URL pointed elsewhere, a migration id that
leaves `migrations/`. Keys outside the operator's patterns must survive byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import HOUR_MS
from helpers import state as db_state
from session_migration import storage
from session_migration.endpoints import RedisEndpoint
from session_migration.errors import InvalidParameter, SnapshotInvalid
from session_migration.migration import MigrationFailed, MigrationOptions, resume_rollback, run_migration
from session_migration.snapshot import manifest_bytes

pytestmark = pytest.mark.integration

KEY_ENV = "SESSION_MIGRATION_SIGNING_KEY"
KEY = "integration-test-signing-key-0123456789abcdef"
PATTERNS = ("sess:*",)
OUTSIDE = (b"app:config", b"cache:user:42", b"queue:jobs", b"session_go1")  # not sess:*; session_go1 is a default pattern


@pytest.fixture(autouse=True)
def no_key(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv("SESSION_MIGRATION_SIGNING_KEYS", raising=False)


def ep(server) -> RedisEndpoint:
    return RedisEndpoint.from_url(server.url)


def dumps(r, keys=None):
    """DUMP payload and PEXPIRETIME of every key (or of `keys`): the server's bytes."""
    keys = keys if keys is not None else list(r.scan_iter(count=1000))
    return {k: (r.dump(k), r.execute_command("PEXPIRETIME", k)) for k in keys}


@pytest.fixture
def failed(valkey_server, redis_server, tmp_path):
    """A migration valkey -> redis that failed verification after writing, not rolled back:
    (target, root, migration id, the target's state before the migration)."""
    src, dst = valkey_server, redis_server
    src.client().flushall()
    dst.client().flushall()
    s, t = src.client(), dst.client()
    s.set("sess:new", b"from the source", px=HOUR_MS)
    s.set("sess:shared", b"from the source", px=HOUR_MS)
    t.set("sess:shared", b"the target's own", px=2 * HOUR_MS)
    t.set("sess:target-only", b"kept", px=3 * HOUR_MS)
    t.set("app:config", b'{"feature": true}')
    t.set("cache:user:42", b"{}", px=HOUR_MS)
    t.rpush("queue:jobs", b"j1", b"j2")
    t.set("session_go1", b"a Go session, not in this migration's scope", px=HOUR_MS)
    before = db_state(t)

    def progress(step, info):
        if step == "restore":
            t.set("sess:new", b"changed behind the migration's back")  # verify fails

    root = str(tmp_path / "snaps")
    fs, path = storage.resolve(root)
    with pytest.raises(MigrationFailed) as failure:
        run_migration(ep(src), ep(dst), fs, path, MigrationOptions(patterns=PATTERNS, rollback_on_failure=False),
                      progress=progress)
    migration_id = failure.value.summary["migration_id"]
    assert t.get("sess:shared") == b"from the source"  # the migration's writes are there
    return dst, Path(root), migration_id, before


def edit_state(root: Path, migration_id: str, change) -> None:
    path = root / "migrations" / f"{migration_id}.json"
    state = json.loads(path.read_text())
    change(state)
    path.write_text(json.dumps(state))


def test_widened_state_alone_is_refused_and_nothing_is_touched(failed):
    dst, root, migration_id, _before = failed
    edit_state(root, migration_id, lambda s: s["options"].update(patterns=["*"]))
    fs, path = storage.resolve(str(root))
    target = dst.client()
    snapshot_before = dumps(target)
    with pytest.raises(SnapshotInvalid, match="not taken with the patterns"):
        resume_rollback(ep(dst), fs, path, migration_id)
    assert dumps(target) == snapshot_before


def test_widened_state_and_forged_pre_image_act_only_within_the_operators_patterns(failed):
    dst, root, migration_id, before = failed
    state = json.loads((root / "migrations" / f"{migration_id}.json").read_text())
    edit_state(root, migration_id, lambda s: s["options"].update(patterns=["*"]))
    pre = root / state["pre_image_id"]
    manifest = json.loads((pre / "manifest.json").read_text())
    manifest["scope"]["patterns"] = ["*"]
    (pre / "manifest.json").write_bytes(manifest_bytes(manifest))
    target = dst.client()
    outside = dumps(target, list(OUTSIDE))

    fs, path = storage.resolve(str(root))
    done = resume_rollback(ep(dst), fs, path, migration_id, patterns=["sess:*"])
    assert done.rolled_back and done.rollback["narrowed"] is True
    assert dumps(target, list(OUTSIDE)) == outside  # byte for byte
    assert db_state(target) == before  # and the sessions are back as they were


def test_the_pre_image_is_read_from_under_the_root_only(failed, tmp_path):
    dst, root, migration_id, before = failed
    state = json.loads((root / "migrations" / f"{migration_id}.json").read_text())
    # An attacker's copy of the pre-image elsewhere, every session value theirs, checksums recomputed.
    evil = tmp_path / "elsewhere" / state["pre_image_id"]
    shutil.copytree(root / state["pre_image_id"], evil)
    manifest = json.loads((evil / "manifest.json").read_text())
    entry = manifest["parts"][0]
    part = evil / "parts" / entry["name"]
    table = pq.read_table(part)
    values = pa.array([b"attacker's session"] * table.num_rows, pa.binary())
    pq.write_table(table.set_column(table.schema.get_field_index("value"), "value", values), part)
    entry.update(bytes=part.stat().st_size, sha256=hashlib.sha256(part.read_bytes()).hexdigest())
    (evil / "manifest.json").write_bytes(manifest_bytes(manifest))
    edit_state(root, migration_id, lambda s: s.update(pre_image=evil.as_uri()))

    fs, path = storage.resolve(str(root))
    resume_rollback(ep(dst), fs, path, migration_id)
    assert db_state(dst.client()) == before


def test_a_migration_id_with_path_characters_is_refused(failed):
    dst, root, migration_id, _before = failed
    # A state file planted outside migrations/, reached by a migration id that climbs out of it.
    shutil.copy(root / "migrations" / f"{migration_id}.json", root / "planted.json")
    edit_state(root, migration_id, lambda s: None)
    target = dst.client()
    snapshot_before = dumps(target)
    fs, path = storage.resolve(str(root))
    for bad in ("../planted", "a/b", "/etc/passwd", ".hidden", ""):
        with pytest.raises(InvalidParameter, match="not valid"):
            resume_rollback(ep(dst), fs, path, bad)
    assert dumps(target) == snapshot_before


def test_dry_run_of_a_resumed_rollback_says_what_it_would_do_and_writes_nothing(failed):
    from session_migration.migration import plan_rollback

    dst, root, migration_id, before = failed
    fs, path = storage.resolve(str(root))
    target = dst.client()
    target_before, state_before = dumps(target), (root / "migrations" / f"{migration_id}.json").read_bytes()
    plan = plan_rollback(ep(dst), fs, path, migration_id, patterns=list(PATTERNS))
    assert plan["dry_run"] and plan["action"] == "roll back" and plan["narrowed"] is False
    assert plan["would_delete"] == 1 and len(plan["delete_examples"]) == 1  # sess:new, which the migration created
    assert "sess:new" not in json.dumps(plan["delete_examples"]) or "…#" in plan["delete_examples"][0]
    assert plan["would_restore"] == 2 and plan["would_remove_expired"] == 0  # sess:shared, sess:target-only
    assert dumps(target) == target_before
    assert (root / "migrations" / f"{migration_id}.json").read_bytes() == state_before
    done = resume_rollback(ep(dst), fs, path, migration_id, patterns=list(PATTERNS))
    assert done.rollback["deleted_new"] == plan["would_delete"] and done.rollback["restored"] == plan["would_restore"]
    assert db_state(target) == before


def test_with_a_key_an_edited_state_file_is_refused(valkey_server, redis_server, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    src, dst = valkey_server, redis_server
    src.client().flushall()
    dst.client().flushall()
    src.client().set("sess:a", b"1", px=HOUR_MS)
    dst.client().set("app:config", b"{}")
    fs, path = storage.resolve(str(tmp_path / "snaps"))

    def progress(step, info):
        if step == "restore":
            dst.client().set("sess:a", b"changed")

    with pytest.raises(MigrationFailed) as failure:
        run_migration(ep(src), ep(dst), fs, path, MigrationOptions(patterns=PATTERNS, rollback_on_failure=False),
                      progress=progress)
    migration_id = failure.value.summary["migration_id"]
    state_file = tmp_path / "snaps" / "migrations" / f"{migration_id}.json"
    assert json.loads(state_file.read_text())["signature"]["key_id"]
    edit_state(tmp_path / "snaps", migration_id, lambda s: s["options"].update(patterns=["*"]))
    snapshot_before = dumps(dst.client())
    with pytest.raises(SnapshotInvalid, match="signature does not match"):
        resume_rollback(ep(dst), fs, path, migration_id)
    assert dumps(dst.client()) == snapshot_before
