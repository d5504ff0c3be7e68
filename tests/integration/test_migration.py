"""Full migration against real servers: both directions, forced verify failure -> exact rollback,
a rollback killed with SIGKILL and resumed, and the refusals that write nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import HOUR_MS, expire_in_snapshot, now_ms
from helpers import state as db_state
from session_migration import open_snapshot, storage
from session_migration.endpoints import RedisEndpoint
from session_migration.migration import (
    MigrationFailed, MigrationOptions, MigrationRefused, MigrationState, list_migrations, resume_rollback,
    run_migration,
)

pytestmark = pytest.mark.integration

PATTERNS = ("sess:*", "session:*")


def endpoint(server) -> RedisEndpoint:
    return RedisEndpoint.from_url(server.url)


def seed_source(r) -> None:
    r.set("sess:str", b"\x00binary\xffvalue", px=2 * HOUR_MS)
    r.set("sess:forever", b"no ttl")
    r.set("sess:shared", b"from the source", px=HOUR_MS)
    r.hset("session:hash", mapping={b"a": b"1", b"b\x00": b"\xff2"})
    r.pexpire("session:hash", HOUR_MS)
    r.rpush("sess:list", b"x", b"y", b"x", b"")
    r.sadd("sess:set", b"m1", b"m2")
    r.zadd("sess:zset", {b"a": 1.5, b"b": -2.0})
    r.xadd("sess:stream", {b"f": b"v"}, id=b"1-1")
    r.set("cache:source-only", b"out of scope on the source")


def seed_target(r) -> None:
    """A target that already holds things: overlapping keys, own keys, out-of-scope keys."""
    r.set("sess:shared", b"the target's own value", px=5 * HOUR_MS)  # overwritten by the migration
    r.hset("sess:list", mapping={b"other": b"type"})  # same key, another type
    r.pexpire("sess:list", 3 * HOUR_MS)
    r.set("sess:target-only", b"kept", px=4 * HOUR_MS)
    r.sadd("session:target-set", b"t1", b"t2")
    r.set("cache:user:42", b"{}", px=HOUR_MS)  # out of scope: never touched
    r.rpush("queue:jobs", b"j1")


def seeded(src, dst) -> dict:
    """Empty both servers, seed the source and the target; return the target's state."""
    src.client().flushall()
    dst.client().flushall()
    seed_source(src.client())
    seed_target(dst.client())
    return db_state(dst.client())


def migrate(src, dst, fs, root, progress=None, **options):
    """run_migration of PATTERNS from `src` to `dst` with these MigrationOptions."""
    return run_migration(endpoint(src), endpoint(dst), fs, root, MigrationOptions(patterns=PATTERNS, **options),
                         progress=progress)


def tamper_after_restore(server):
    client = server.client()

    def progress(step, info):
        if step == "restore":
            client.set("sess:str", b"changed behind the migration's back")

    return progress


@pytest.mark.parametrize("direction", [("valkey", "redis"), ("redis", "valkey")])
def test_migration_happy_path_both_ways(direction, valkey_server, redis_server, tmp_path):
    servers = {"valkey": valkey_server, "redis": redis_server}
    src, dst = servers[direction[0]], servers[direction[1]]
    seeded(src, dst)
    fs, root = storage.resolve(str(tmp_path / "snaps"))
    steps = []
    result = migrate(src, dst, fs, root, progress=lambda s, i: steps.append(s))
    summary = result.summary()
    json.dumps(summary)  # JSON-safe
    assert result.ok and summary["rolled_back"] is False and summary["step"] == "done"
    assert steps == ["preflight", "started", "backup", "validate", "pre_image", "restore", "verify", "audit", "done"]
    assert summary["verify"]["ok"] and summary["verify"]["counts"]["OK"] == 8
    assert summary["verify"]["kept_target_only"] == 2  # sess:target-only, session:target-set
    assert summary["backup"]["keys"] == 8 and summary["pre_image_keys"] == 4
    assert summary["restore"]["written"] == 8 and summary["restore"]["overwritten"] == 2
    for kind in ("json", "md", "html", "csv"):
        assert Path(summary["audit"][kind].removeprefix("file://")).is_file()
    assert (tmp_path / "snaps" / summary["snapshot"].rsplit("/", 1)[-1] / "audit" / "report.json").is_file()
    after = db_state(dst.client())
    source = db_state(src.client())
    for key, value in source.items():
        if key.startswith((b"sess:", b"session:")):
            assert after[key] == value
    assert b"cache:source-only" not in after
    assert after[b"cache:user:42"][1] == b"{}" and after[b"sess:target-only"][1] == b"kept"
    state = json.loads((tmp_path / "snaps" / "migrations" / f"{result.migration_id}.json").read_text())
    assert state["step"] == "done" and state["pre_image"] and state["snapshot"]


def test_forced_verify_failure_rolls_target_back_exactly(valkey_server, redis_server, tmp_path):
    src, dst = valkey_server, redis_server
    before = seeded(src, dst)
    fs, root = storage.resolve(str(tmp_path / "snaps"))
    steps = []

    def progress(step, info):
        steps.append(step)
        tamper_after_restore(dst)(step, info)

    with pytest.raises(MigrationFailed) as failed:
        migrate(src, dst, fs, root, progress=progress)
    assert "rolled back" in str(failed.value) and "VALUE 1" in str(failed.value)
    summary = failed.value.summary
    assert summary["rolled_back"] is True and summary["step"] == "rolled_back"
    assert summary["rollback"]["deleted_new"] == 6  # keys the migration created
    assert "audit" not in steps and steps[-1] == "rolled_back"
    after = db_state(dst.client())
    assert after == before  # type, value and PEXPIRETIME of every key, in scope or not


def test_rollback_removes_keys_whose_preimage_expired_meanwhile(valkey_server, redis_server, tmp_path):
    """A target key whose pre-image expiry passes during the migration stays gone after the
    rollback: neither written back nor left in the state the migration gave it."""
    src, dst = redis_server, valkey_server
    before = seeded(src, dst)
    client = dst.client()
    fs, root = storage.resolve(str(tmp_path / "snaps"))
    seen = {}

    def progress(step, info):
        if step == "pre_image":
            seen["pre_image"] = {r["key"]: r for r in open_snapshot(info["snapshot"]).read_table().to_pylist()}
            # The clock passes the pre-image's instant for sess:shared (no key on a server can be
            # older than its expiry, so the pre-image says it instead).
            expire_in_snapshot(info["snapshot"], [b"sess:shared"], now_ms() - 1)
        if step == "restore":
            seen["after_restore"] = client.get("sess:shared")
            client.set("sess:str", b"tampered")  # verify fails for real -> rollback

    with pytest.raises(MigrationFailed) as failed:
        migrate(src, dst, fs, root, progress=progress)
    shared = seen["pre_image"][b"sess:shared"]
    assert (shared["value"], shared["expire_at_ms"]) == (b"the target's own value", before[b"sess:shared"][2])
    assert seen["after_restore"] == b"from the source"  # the migration had overwritten it
    rollback = failed.value.summary["rollback"]
    assert (rollback["expired_on_arrival"], rollback["removed_expired"]) == (1, 1)
    assert db_state(client) == {k: v for k, v in before.items() if k != b"sess:shared"}


KILLER = textwrap.dedent("""
    import os, signal, sys
    import redis
    from session_migration import storage
    from session_migration.endpoints import RedisEndpoint
    from session_migration.migration import MigrationOptions, run_migration

    src, dst, root = sys.argv[1], sys.argv[2], sys.argv[3]
    target = redis.Redis.from_url(dst)

    kill_at = sys.argv[4]

    def progress(step, info):
        if step == "restore":
            target.set("sess:str", b"tampered")  # verify fails for real -> rollback
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # die right there

    fs, path = storage.resolve(root)
    run_migration(RedisEndpoint.from_url(src), RedisEndpoint.from_url(dst), fs, path,
                  MigrationOptions(patterns=("sess:*", "session:*")), progress=progress)
""")


@pytest.mark.parametrize("kill_at, step, stage", [
    ("rollback_delete", "rolling_back", "new_keys_deleted"),  # in the middle of the rollback
    ("restore", "restored", None),  # after writing, before verify: no rollback started yet
])
def test_killed_run_is_rolled_back_on_resume(kill_at, step, stage, valkey_server, redis_server, tmp_path):
    src, dst = valkey_server, redis_server
    before = seeded(src, dst)
    root = str(tmp_path / "snaps")
    proc = subprocess.run([sys.executable, "-c", KILLER, src.url, dst.url, root, kill_at], capture_output=True,
                          env={**os.environ}, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    fs, path = storage.resolve(root)
    [state] = list_migrations(fs, path)
    assert state.step == step and state.rollback.get("stage") == stage
    assert db_state(dst.client()) != before  # the target is not back yet
    # A new migration onto the same target is refused until the rollback is finished.
    with pytest.raises(MigrationRefused, match="resume_rollback"):
        migrate(src, dst, fs, path)
    done = resume_rollback(endpoint(dst), fs, path, state.migration_id)
    assert done.step == "rolled_back" and done.rolled_back
    assert db_state(dst.client()) == before
    again = resume_rollback(endpoint(dst), fs, path, state.migration_id)  # idempotent
    assert again.step == "rolled_back" and db_state(dst.client()) == before
    assert MigrationState.load(fs, path, state.migration_id).rollback["stage"] == "done"


def test_no_rollback_leaves_target_then_resume_rolls_back(valkey_server, redis_server, tmp_path):
    src, dst = valkey_server, redis_server
    before = seeded(src, dst)
    fs, root = storage.resolve(str(tmp_path / "snaps"))
    with pytest.raises(MigrationFailed, match="NOT rolled back") as failed:
        migrate(src, dst, fs, root, progress=tamper_after_restore(dst), rollback_on_failure=False)
    assert failed.value.summary["rolled_back"] is False
    assert dst.client().get("sess:forever") == b"no ttl"  # the migration's writes are still there
    resume_rollback(endpoint(dst), fs, root, failed.value.summary["migration_id"])
    assert db_state(dst.client()) == before


def _nothing_written(tmp_root: Path, dst, before) -> None:
    assert not tmp_root.exists() or not any(tmp_root.iterdir())
    assert db_state(dst.client()) == before


def test_refuses_same_source_and_target(valkey_server, tmp_path):
    valkey_server.client().flushall()
    seed_source(valkey_server.client())
    before = db_state(valkey_server.client())
    fs, root = storage.resolve(str(tmp_path / "snaps"))
    with pytest.raises(MigrationRefused, match="same database"):
        migrate(valkey_server, valkey_server, fs, root)
    _nothing_written(tmp_path / "snaps", valkey_server, before)


def test_refuses_unwritable_backup_path(valkey_server, redis_server, tmp_path):
    src, dst = valkey_server, redis_server
    before = seeded(src, dst)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    fs, root = storage.resolve(str(blocker / "snaps"))
    from session_migration.errors import DestinationNotWritable

    with pytest.raises(DestinationNotWritable):
        migrate(src, dst, fs, root)
    assert blocker.read_text() == "not a folder"
    assert db_state(dst.client()) == before


def test_refuses_non_empty_target_when_required(valkey_server, redis_server, tmp_path):
    src, dst = valkey_server, redis_server
    before = seeded(src, dst)
    fs, root = storage.resolve(str(tmp_path / "snaps"))
    with pytest.raises(MigrationRefused, match="already holds keys in scope"):
        migrate(src, dst, fs, root, require_empty_target=True)
    _nothing_written(tmp_path / "snaps", dst, before)
    # Out-of-scope keys alone do not count: only keys in scope make a target "not empty".
    dst.client().flushall()
    dst.client().set("cache:user:42", b"{}")
    result = migrate(src, dst, fs, root, require_empty_target=True)
    assert result.ok and result.summary()["pre_image_keys"] == 0


def test_dry_run_writes_nothing(valkey_server, redis_server, tmp_path):
    src, dst = valkey_server, redis_server
    before = seeded(src, dst)
    fs, root = storage.resolve(str(tmp_path / "snaps"))
    result = migrate(src, dst, fs, root, dry_run=True)
    plan = result.summary()
    assert plan["dry_run"] is True and plan["backup"]["keys"] == 8
    assert plan["restore_plan"] == {"would_create": 6, "would_overwrite": 2, "target_keys_in_scope": 4,
                                    "target_only_kept": 2}
    _nothing_written(tmp_path / "snaps", dst, before)
