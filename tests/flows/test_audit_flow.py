"""The audit_report flow under a real Prefect server, and `session-migration audit` as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import demo_keys_in_scope, read_flow_run, run_flow
from session_migration import backup, demo

pytestmark = [pytest.mark.flows, pytest.mark.integration]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "session_migration_cli", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=300)


@pytest.fixture
def demo_snapshot(valkey, tmp_path) -> Path:
    counts = demo.seed(valkey.client(), copies=2)
    result = backup(valkey.url, str(tmp_path / "snapshots"))
    assert result.counters.keys == counts["sessions"] + counts["companion_keys"] == demo_keys_in_scope(2)
    return tmp_path / "snapshots" / result.snapshot_id


def test_flow_writes_report_and_publishes_artifacts(prefect_harness, demo_snapshot):
    from flows import audit_report

    keys = demo_keys_in_scope(2)
    state, run_id = run_flow(audit_report, snapshot=str(demo_snapshot))
    report = state.result()
    assert report["valid"] is True and report["keys"] == keys
    assert sum(sum(counts.values()) for counts in report["by_store"].values()) == keys
    assert set(report["files"]) == {"json", "md", "html", "csv"}
    for name in ("report.json", "report.md", "report.html", "findings.csv"):
        assert (demo_snapshot / "audit" / name).is_file()  # default output: <snapshot>/audit
    assert json.loads((demo_snapshot / "audit" / "report.json").read_text())["by_store"] == report["by_store"]

    run = read_flow_run(run_id, task_runs=3)
    assert run.run.state.is_completed()
    assert run.task_names() == ["compute-snapshot-stats", "validate-snapshot", "write-audit-report"]
    assert run.artifact_keys() == ["audit-by-store", "audit-report"]
    by_store = {r["store"]: r for r in run.table("audit-by-store")}
    assert set(by_store) == {*report["by_store"], "total"}
    assert by_store["total"]["total"] == keys
    assert by_store["express"]["valid"] == report["by_store"]["express"]["valid"]
    markdown = run.artifact("audit-report").data
    assert "Control evidence" in markdown and "CP-10" in markdown and report["snapshot"]["snapshot_id"] in markdown
    assert "Keys by session status" in markdown and "█" in markdown  # the charts, as text
    assert f"`{demo_snapshot}/audit/report.html` (copy this path)" in markdown  # a local file: the path


def test_flow_refuses_a_missing_snapshot(prefect_harness, tmp_path):
    from flows import audit_report
    from session_migration.errors import SnapshotNotFound

    with pytest.raises(SnapshotNotFound):
        audit_report(snapshot=str(tmp_path / "nothing-here"))
    assert not (tmp_path / "nothing-here").exists()  # no report folder conjured up


@pytest.mark.slow
def test_cli_audit_exit_codes(demo_snapshot, tmp_path):
    done = _cli("audit", str(demo_snapshot), "--output", str(tmp_path / "good"), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["valid"] is True and report["by_store"] and report["files"]["html"].endswith("/good/report.html")
    assert (tmp_path / "good" / "findings.csv").is_file()

    part = sorted((demo_snapshot / "parts").iterdir())[0]
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    done = _cli("audit", str(demo_snapshot), "--output", str(tmp_path / "bad"), "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["valid"] is False and [p["code"] for p in report["validation"]["problems"]] == ["part-checksum"]
    assert json.loads((tmp_path / "bad" / "report.json").read_text())["valid"] is False  # written all the same
    assert "Traceback" not in done.stderr
