"""validate_snapshot under a real Prefect server: the report it returns and the artifact of its own run."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import read_flow_run, run_flow
from session_migration import backup, open_snapshot

pytestmark = [pytest.mark.flows, pytest.mark.integration]


def test_validate_flow_passes_a_snapshot_then_names_its_damaged_part(prefect_harness, valkey, tmp_path):
    from flows import validate_snapshot

    r = valkey.client()
    for i in range(30):
        r.set(f"sess:{i:02d}", f"value-{i}", ex=3600)
    url = backup(valkey.url, str(tmp_path), patterns=["sess:*"], part_rows=10, batch_size=10).url
    # SCAN's COUNT is a hint: a call may return more than 10 keys, so 30 keys make 2 or 3 parts
    parts = len(open_snapshot(url).parts)
    assert parts >= 2

    state, run_id = run_flow(validate_snapshot, snapshot=url)
    report = state.result()
    assert (report["valid"], report["parts_checked"], report["rows_checked"], report["problems"]) == (True, parts, 30, [])
    run = read_flow_run(run_id, task_runs=1)
    assert run.run.state.is_completed() and run.task_names() == ["validate-snapshot"]
    assert run.artifact_keys() == ["snapshot-validation"]
    assert run.artifact("snapshot-validation").data.startswith("# Snapshot validation: valid\n")

    part = Path(url.removeprefix("file://")) / "parts" / "part-00001.parquet"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    state, run_id = run_flow(validate_snapshot, snapshot=url)
    report = state.result()  # a damaged snapshot is a report, not a failed run
    assert report["valid"] is False
    assert [(p["code"], p["part"]) for p in report["problems"]] == [("part-checksum", "part-00001.parquet")]
    run = read_flow_run(run_id, task_runs=1)
    assert run.run.state.is_completed() and run.artifact_keys() == ["snapshot-validation"]
    markdown = run.artifact("snapshot-validation").data
    assert markdown.startswith("# Snapshot validation: INVALID\n")
    assert "| part-checksum | part-00001.parquet |" in markdown
