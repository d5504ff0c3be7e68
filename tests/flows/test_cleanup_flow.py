"""cleanup_expired_sessions under Prefect and `session-migration cleanup` from the shell."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import read_flow_run, run_flow

pytestmark = [pytest.mark.flows, pytest.mark.integration]


def plant(r):
    r.set("sess:corruptcorruptcorruptcorrupt00", b"\xff not json", ex=3600)
    r.set("sess:okokokokokokokokokokokokokokokok", json.dumps({"cookie": {"expires": None}}), ex=3600)
    r.set("other:key", "never touched")


def test_flow_dry_run_then_apply(prefect_harness, valkey, tmp_path):
    from flows import cleanup_expired_sessions
    from session_migration.errors import InvalidParameter

    r = valkey.client()
    plant(r)
    dry = cleanup_expired_sessions(source=valkey.url, include=["corrupt"])
    assert dry["total"] == 1 and dry["deleted"] == 0 and r.dbsize() == 3
    with pytest.raises(InvalidParameter, match="needs a backup_path"):
        cleanup_expired_sessions(source=valkey.url, include=["corrupt"], apply=True)
    state, run_id = run_flow(cleanup_expired_sessions, source=valkey.url, include=["corrupt"], apply=True,
                             backup_path=str(tmp_path))
    done = state.result()
    assert done["deleted"] == 1 and done["pre_image"].startswith("file://")
    assert r.dbsize() == 2 and r.get("other:key") == b"never touched"
    run = read_flow_run(run_id, task_runs=1)
    assert run.task_names() == ["clean-up-sessions"] and run.artifact_keys() == ["cleanup-progress", "cleanup-report", "cleanup-summary"]
    assert {row["category"]: row["keys"] for row in run.table("cleanup-summary")} == {
        "expired": 0, "stale": 0, "corrupt": 1, "locks": 0, "orphans": 0}
    assert f"pre-image snapshot (restore it to undo): `{done['pre_image']}`" in run.artifact("cleanup-report").data


def test_cli_cleanup(prefect_harness, valkey, tmp_path):
    r = valkey.client()
    plant(r)

    def cli(*args):
        done = subprocess.run([sys.executable, "-m", "session_migration_cli", "cleanup", valkey.url, *args, "--json"],
                              capture_output=True, text=True, env=dict(os.environ), timeout=300)
        return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])

    code, report = cli("--include", "corrupt", "--max-delete", "0")
    assert code == 1 and "max_delete must be" in report["error"]
    code, report = cli("--include", "corrupt", "--max-age", "nosuchstore=1d")
    assert code == 1 and "Unknown store 'nosuchstore'" in report["error"]
    code, report = cli("--include", "corrupt", "--apply", "--backup-path", str(tmp_path))
    assert code == 0 and report["deleted"] == 1 and r.dbsize() == 2
