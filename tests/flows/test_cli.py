"""The command line, run as a user would: a subprocess, stdout parsed as the scripts parse it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.flows, pytest.mark.integration, pytest.mark.slow,
              pytest.mark.usefixtures("prefect_harness")]  # CLI runs report to the shared server


def cli(*args, env=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "session_migration.cli", *args], capture_output=True, text=True,
        env={**os.environ, **(env or {})}, cwd=cwd, timeout=300,
    )


def last_json(stdout: str):
    return json.loads(stdout.strip().splitlines()[-1])


def test_backup_then_list(valkey, tmp_path):
    r = valkey.client()
    for i in range(100):
        r.set(f"sess:{i}", "v", ex=60)
    done = cli("backup", valkey.url, str(tmp_path), "--pattern", "sess:*", "--batch-size", "10",
               "--snapshot-id", "cli-1", "--json")
    assert done.returncode == 0, done.stderr
    summary = last_json(done.stdout)
    assert summary["keys"] == 100 and summary["snapshot"] == f"file://{tmp_path}/cli-1"
    listed = cli("snapshots", str(tmp_path), "--json")
    assert listed.returncode == 0
    assert [s["snapshot_id"] for s in last_json(listed.stdout)] == ["cli-1"]


def test_password_in_url_is_never_printed(tmp_path):
    from servers import start_server

    server = start_server("valkey", password="cli-secret-77")
    try:
        done = cli("backup", server.url, str(tmp_path), "--json", "--verbose")
        assert done.returncode == 0, done.stderr
        assert "cli-secret-77" not in done.stdout + done.stderr
        wrong = cli("backup", server.url.replace("cli-secret-77", "nope-nope"), str(tmp_path), "--json")
        assert wrong.returncode == 1
        assert "Authentication" in last_json(wrong.stdout)["error"]
        assert "nope-nope" not in wrong.stdout + wrong.stderr
    finally:
        server.stop()


@pytest.mark.parametrize("args, message", [
    (["backup", "mongodb://x", "{tmp}"], "Unknown URL scheme"),
    (["backup", "redis://127.0.0.1:1/0", "{tmp}", "--batch-size", "0"], "batch_size must be"),
    (["backup", "redis://127.0.0.1:1/0", "{tmp}"], "Cannot reach the Redis server"),
])
def test_errors_are_one_clear_sentence(args, message, tmp_path):
    done = cli(*[a.replace("{tmp}", str(tmp_path)) for a in args], "--json")
    assert done.returncode == 1
    assert message in last_json(done.stdout)["error"]
    assert "Traceback" not in done.stderr


def test_demo(tmp_path):
    done = cli("demo", "--output", str(tmp_path / "demo"), "--copies", "3", "--json")
    assert done.returncode == 0, done.stderr
    summary = last_json(done.stdout)
    assert summary["keys"] > 100 and summary["snapshot"].startswith("file://")
    assert summary["by_store"].get("unknown", 0) == 0  # every demo key is a recognised session


def test_snapshots_prune_dry_run_then_apply(valkey, tmp_path):
    valkey.client().set("sess:x", "v")
    for i in range(3):
        assert cli("backup", valkey.url, str(tmp_path), "-p", "sess:*", "--snapshot-id", f"s{i}", "--json").returncode == 0
    dry = cli("snapshots", "prune", str(tmp_path), "--keep-last", "1", "--json")
    assert dry.returncode == 0, dry.stderr
    assert [s["snapshot_id"] for s in last_json(dry.stdout)["delete"]] == ["s1", "s0"]
    assert len(last_json(cli("snapshots", str(tmp_path), "--json").stdout)) == 3
    applied = cli("snapshots", "prune", str(tmp_path), "--keep-last", "1", "--apply", "--json")
    assert last_json(applied.stdout)["deleted"] == 2
    assert [s["snapshot_id"] for s in last_json(cli("snapshots", str(tmp_path), "--json").stdout)] == ["s2"]
    refused = cli("snapshots", "prune", str(tmp_path), "--json")
    assert refused.returncode == 1 and "keep_last and/or keep_days" in last_json(refused.stdout)["error"]
