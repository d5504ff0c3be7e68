"""The audit_report flow under a real Prefect server, and `session-migration audit` as a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from session_migration import backup, demo

pytestmark = [pytest.mark.flows, pytest.mark.integration]


def _artifacts():
    from prefect.client.orchestration import get_client

    async def read():
        async with get_client() as client:
            return await client.read_artifacts()

    return asyncio.run(read())


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "session_migration_cli", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=300)


@pytest.fixture
def demo_snapshot(valkey, tmp_path) -> Path:
    demo.seed(valkey.client(), copies=2)
    result = backup(valkey.url, str(tmp_path / "snapshots"))
    return tmp_path / "snapshots" / result.snapshot_id


def test_flow_writes_report_and_publishes_artifacts(prefect_harness, demo_snapshot):
    from flows import audit_report

    report = audit_report(snapshot=str(demo_snapshot))
    assert report["valid"] is True and report["keys"] > 0
    assert set(report["files"]) == {"json", "md", "html", "csv"}
    for name in ("report.json", "report.md", "report.html", "findings.csv"):
        assert (demo_snapshot / "audit" / name).is_file()  # default output: <snapshot>/audit
    assert json.loads((demo_snapshot / "audit" / "report.json").read_text())["by_store"] == report["by_store"]

    artifacts = {a.key: a for a in _artifacts() if a.key in ("audit-by-store", "audit-report")}
    assert set(artifacts) == {"audit-by-store", "audit-report"}
    table = artifacts["audit-by-store"].data
    rows = json.loads(table) if isinstance(table, str) else table
    by_store = {r["store"]: r for r in rows}
    assert by_store["total"]["total"] == f"{report['keys']:,}"  # numbers read with separators in the UI
    assert by_store["express"]["valid"] == f"{report['by_store']['express']['valid']:,}"
    markdown = artifacts["audit-report"].data
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
