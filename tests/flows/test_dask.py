"""Scale-out on Dask: the flows with dask_address run their per-unit tasks on a local Dask
cluster (a scheduler and two workers, real processes) and write exactly what they write
without it."""

from __future__ import annotations

import os

import pytest

from helpers import read_flow_run, run_flow, seed_all_types
from session_migration import open_snapshot

pytestmark = [pytest.mark.flows, pytest.mark.integration, pytest.mark.slow]


def _fill(client, strings: int) -> None:
    pipe = client.pipeline()
    for i in range(strings):
        pipe.set(f"sess:{i:06d}", os.urandom(40), px=3_600_000 + i)
    pipe.set("sess:no-ttl", "forever")
    pipe.set("other:1", "out of scope")
    pipe.execute()
    seed_all_types(client)


def _rows(url: str) -> list[dict]:
    return open_snapshot(url).read_table().drop_columns(["dump"]).sort_by("key").to_pylist()


COUNTS = ("keys", "bytes", "vanished", "with_ttl", "without_ttl", "by_type", "by_store", "by_pattern")


def test_backup_on_dask_equals_the_backup_without(prefect_harness, dask_cluster, server, tmp_path):
    from flows import backup_sessions

    _fill(server.client(), 6000)
    patterns = ["sess:*", "sess:h*"]  # a second pattern whose keys the first already wrote
    plain = backup_sessions(source=server.url, backup_path=str(tmp_path / "plain"), patterns=patterns,
                            part_rows=700, batch_size=200)
    state_, run_id = run_flow(backup_sessions, source=server.url, backup_path=str(tmp_path / "dask"),
                              patterns=patterns, part_rows=700, batch_size=200, dask_address=dask_cluster.address)
    on_dask = state_.result()
    assert _rows(on_dask["snapshot"]) == _rows(plain["snapshot"])
    assert {k: on_dask[k] for k in COUNTS} == {k: plain[k] for k in COUNTS}
    assert on_dask["keys"] == len(list(server.client().scan_iter("sess:*")))
    manifest = open_snapshot(on_dask["snapshot"]).manifest
    assert sum(p["rows"] for p in manifest["parts"]) == on_dask["keys"]
    assert not list((tmp_path / "dask").glob("*/units")) and not list((tmp_path / "dask").glob("*/checkpoint.json"))
    run = read_flow_run(run_id, task_runs=5)
    assert run.task_names() == ["back-up-unit-0-of", "back-up-unit-1-of", "check-backup", "commit-backup-units",
                                "start-backup-units"]
