"""The restore flow under a real Prefect server: per-part tasks, artifacts, dry run, parameters."""

from __future__ import annotations

import pytest

from helpers import read_flow_run, run_flow
from session_migration import backup, open_snapshot
from session_migration.errors import InvalidParameter

pytestmark = [pytest.mark.flows, pytest.mark.integration]


def test_restore_flow_one_task_per_part(prefect_harness, valkey, tmp_path):
    from flows.restore import restore_sessions

    r = valkey.client()
    for i in range(250):
        r.set(f"laravel_database_laravel_cache:s{i}", f"v{i}", ex=3600)
    r.hset("laravel_database_laravel_cache:h", mapping={"a": "1"})
    snap = backup(valkey.url, str(tmp_path), patterns=["laravel_database_laravel_cache:*"], part_rows=100,
                  batch_size=50).url
    r.flushall()
    r.set("laravel_database_laravel_cache_s1", "exists")

    rename = ["laravel_database_laravel_cache:", "laravel_database_laravel_cache_"]
    state, plan_id = run_flow(restore_sessions, snapshot=snap, target=valkey.url, dry_run=True, rename_prefix=rename)
    plan = state.result()
    assert plan["dry_run"] and plan["would_create"] == 250 and plan["would_overwrite"] == 1
    assert r.dbsize() == 1
    dry = read_flow_run(plan_id, task_runs=1)
    assert dry.task_names() == ["check-restore"] and dry.artifact_keys() == ["restore-dry-run"]

    state, run_id = run_flow(restore_sessions, snapshot=snap, target=valkey.url, on_conflict="skip",
                             min_ttl_seconds=60, rename_prefix=rename)
    summary = state.result()
    assert summary["rows"] == 251 and summary["created"] == 250 and summary["skipped_existing"] == 1
    parts = len(open_snapshot(snap).parts)  # SCAN's COUNT is a hint: 251 rows make 2 or 3 parts of 100+
    assert summary["parts"] == parts >= 2 and summary["server"].startswith("valkey")
    assert r.get("laravel_database_laravel_cache_s1") == b"exists"
    assert r.get("laravel_database_laravel_cache_s2") == b"v2" and r.ttl("laravel_database_laravel_cache_s2") > 3000
    assert not r.keys("laravel_database_laravel_cache:*")

    run = read_flow_run(run_id, task_runs=2 + parts)
    assert run.run.state.is_completed()
    assert sorted(t.name for t in run.task_runs if t.name.startswith("restore-part")) == [
        f"restore-part-{i:05d}.parquet" for i in range(parts)]
    assert run.task_names() == ["check-restore", "finish-restore", *["restore-part"] * parts]
    assert run.artifact_keys() == ["restore-progress", "restore-summary"]
    assert run.artifact("restore-progress").data == 100.0
    table = {row["metric"]: row["value"] for row in run.table("restore-summary")}
    assert (table["rows"], table["created"], table["skipped_existing"]) == (251, 250, 1)


def test_restore_flow_refuses_bad_parameters_and_passwords(prefect_harness, valkey, tmp_path):
    from flows.restore import restore_sessions

    valkey.client().set("sess:x", "1")
    snap = backup(valkey.url, str(tmp_path), patterns=["sess:*"]).url
    with pytest.raises(InvalidParameter, match="ttl_policy"):
        restore_sessions(snapshot=snap, target=valkey.url, ttl_policy="sometimes")
    with pytest.raises(InvalidParameter, match="holds a password"):
        restore_sessions(snapshot=snap, target=f"redis://:pw-secret@127.0.0.1:{valkey.port}/0")


@pytest.mark.slow
def test_cli_restore_with_password_and_rename(valkey, tmp_path):
    import json
    import os
    import subprocess
    import sys

    from servers import start_server

    r = valkey.client()
    for i in range(30):
        r.set(f"laravel_database_laravel_cache:s{i}", f"v{i}", ex=3600)
    snap = backup(valkey.url, str(tmp_path), patterns=["laravel_database_laravel_cache:*"]).url
    server = start_server("redis", password="restore-secret-5")
    try:
        def cli(*args):
            return subprocess.run([sys.executable, "-m", "session_migration_cli", "restore", snap, server.url, *args],
                                  capture_output=True, text=True, env=dict(os.environ), timeout=300)

        dry = cli("--dry-run", "--json")
        assert dry.returncode == 0, dry.stderr
        assert json.loads(dry.stdout.strip().splitlines()[-1])["would_create"] == 30
        assert server.client().dbsize() == 0
        done = cli("--rename-prefix", "laravel_database_laravel_cache:", "laravel_database_laravel_cache_",
                   "--min-ttl", "60", "--ttl-policy", "relative", "--json", "--verbose")
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert summary["created"] == 30 and summary["written"] == 30
        assert "restore-secret-5" not in done.stdout + done.stderr
        assert server.client().get("laravel_database_laravel_cache_s7") == b"v7"
        bad = cli("--on-conflict", "fail", "--json", "--rename-prefix", "laravel_database_laravel_cache:",
                  "laravel_database_laravel_cache_")
        assert bad.returncode == 1
        assert "already exist" in json.loads(bad.stdout.strip().splitlines()[-1])["error"]
    finally:
        server.stop()
