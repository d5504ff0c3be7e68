"""The signing key from a Prefect Secret block in flows, and the CLI's signing options."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from session_migration.signing import key_id

pytestmark = [pytest.mark.flows, pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

KEY_ENV, KEYS_ENV = "SESSION_MIGRATION_SIGNING_KEY", "SESSION_MIGRATION_SIGNING_KEYS"
KEY = "flow-test-signing-key-in-a-secret-block-0123456789"
BLOCK = "session-migration-signing-key-test"


@pytest.fixture(autouse=True)
def no_key(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEYS_ENV, raising=False)


def cli(*args, env=None):
    clean = {k: v for k, v in os.environ.items() if k not in (KEY_ENV, KEYS_ENV)}
    return subprocess.run([sys.executable, "-m", "session_migration_cli", *args], capture_output=True, text=True,
                          env={**clean, **(env or {})}, timeout=300)


def last_json(stdout: str):
    return json.loads(stdout.strip().splitlines()[-1])


def test_a_secret_block_signs_in_flows_and_never_becomes_a_parameter(valkey, tmp_path):
    from prefect.blocks.system import Secret

    from flows.backup import backup_sessions
    from flows.restore import restore_sessions
    from flows.validate import validate_snapshot
    from helpers import read_flow_run, run_flow

    Secret(value=KEY).save(BLOCK, overwrite=True)
    for i in range(30):
        valkey.client().set(f"sess:{i}", "v", ex=3600)
    summary = backup_sessions(source=valkey.url, backup_path=str(tmp_path), patterns=["sess:*"],
                              signing_key_block=BLOCK)
    manifest = json.loads((tmp_path / summary["snapshot_id"] / "manifest.json").read_text())
    assert manifest["signature"]["key_id"] == key_id(KEY.encode())

    report = validate_snapshot(snapshot=summary["snapshot"], signing_key_block=BLOCK)
    assert report["valid"] and (report["signed"], report["signature"]) == (True, "valid")
    unchecked = validate_snapshot(snapshot=summary["snapshot"])  # no key anywhere: nothing to check with
    assert unchecked["valid"] and unchecked["signature"] == "unchecked"

    target = valkey.url.rsplit("/", 1)[0] + "/1"
    state, run_id = run_flow(restore_sessions, snapshot=summary["snapshot"], target=target, signing_key_block=BLOCK)
    restored = state.result()
    assert restored["written"] == 30 and restored["scope_from"] == "signed manifest"
    record = read_flow_run(run_id)
    assert record.run.parameters["signing_key_block"] == BLOCK
    assert KEY not in json.dumps(record.run.parameters, default=str)
    assert record.artifacts and all(KEY not in json.dumps(a.data, default=str) for a in record.artifacts)


def test_cli_validate_json_and_resume_rollback_dry_run(valkey_server, redis_server, tmp_path):
    from session_migration import storage
    from session_migration.endpoints import RedisEndpoint
    from session_migration.migration import MigrationFailed, MigrationOptions, run_migration

    src, dst = valkey_server, redis_server
    src.client().flushall()
    dst.client().flushall()
    src.client().set("sess:a", b"1", px=3_600_000)
    dst.client().set("app:config", b"{}")
    root = tmp_path / "snaps"
    fs, path = storage.resolve(str(root))

    def progress(step, info):
        if step == "restore":
            dst.client().set("sess:a", b"changed")

    with pytest.raises(MigrationFailed) as failed:
        run_migration(RedisEndpoint.from_url(src.url), RedisEndpoint.from_url(dst.url), fs, path,
                      MigrationOptions(patterns=("sess:*",), rollback_on_failure=False), progress=progress)
    summary = failed.value.summary

    checked = cli("validate", summary["snapshot"], "--json")
    assert checked.returncode == 0, checked.stderr
    assert (last_json(checked.stdout)["signed"], last_json(checked.stdout)["signature"]) == (False, "unchecked")
    with_key = cli("validate", summary["snapshot"], "--json", env={KEY_ENV: KEY})
    assert with_key.returncode == 1 and last_json(with_key.stdout)["problems"][0]["code"] == "unsigned"

    plan = cli("migrate", src.url, dst.url, "--backup-path", str(root), "--resume-rollback",
               summary["migration_id"], "--pattern", "sess:*", "--dry-run", "--json")
    assert plan.returncode == 0, plan.stderr
    got = last_json(plan.stdout)
    assert got["dry_run"] and got["would_delete"] == 1 and got["would_restore"] == 0
    assert dst.client().get("sess:a") == b"changed"  # nothing written
    done = cli("migrate", src.url, dst.url, "--backup-path", str(root), "--resume-rollback",
               summary["migration_id"], "--pattern", "sess:*", "--json")
    assert done.returncode == 0, done.stderr
    assert last_json(done.stdout)["rolled_back"] and dst.client().exists("sess:a") == 0
    assert dst.client().get("app:config") == b"{}"
