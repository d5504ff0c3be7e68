"""verify_sessions under Prefect, and `session-migration verify` exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import read_flow_run, run_flow
from session_migration import backup

pytestmark = [pytest.mark.flows, pytest.mark.integration]


def test_verify_flow_snapshot_then_store_both_orders(prefect_harness, valkey_server, redis_server, tmp_path):
    from flows import verify_sessions

    a, b = valkey_server.client(), redis_server.client()
    a.flushall(), b.flushall()
    for i in range(30):
        a.set(f"sess:{i}", "v", ex=600)
        b.set(f"sess:{i}", "v", ex=600)
    b.set("sess:only-b", "v")
    snapshot = backup(valkey_server.url, str(tmp_path), patterns=["sess:*"]).url
    state, run_id = run_flow(verify_sessions, a=snapshot, b=redis_server.url)
    forward = state.result()
    assert forward["counts"]["EXTRA"] == 1 and forward["counts"]["OK"] == 30 and not forward["ok"]
    backward = verify_sessions(a=redis_server.url, b=snapshot)
    assert backward["counts"]["MISSING"] == 1 and backward["counts"]["OK"] == 30
    run = read_flow_run(run_id, task_runs=1)
    assert run.task_names() == ["verify-sessions"] and run.artifact_keys() == ["verify-counts", "verify-progress", "verify-report"]
    assert {row["category"]: row["keys"] for row in run.table("verify-counts")} == forward["counts"]
    assert run.artifact("verify-report").data.startswith("# Verify: MISMATCH\n")


def test_verify_cli_exit_codes(valkey_server, redis_server):
    a, b = valkey_server.client(), redis_server.client()
    a.flushall(), b.flushall()
    a.set("sess:x", "1"), b.set("sess:x", "1")

    def run():
        return subprocess.run([sys.executable, "-m", "session_migration_cli", "verify", valkey_server.url,
                               redis_server.url, "--pattern", "sess:*", "--json"],
                              capture_output=True, text=True, env=dict(os.environ), timeout=300)

    same = run()
    assert same.returncode == 0, same.stderr
    b.set("sess:x", "2")
    different = run()
    assert different.returncode == 1
    assert json.loads(different.stdout.strip().splitlines()[-1])["counts"]["VALUE"] == 1
