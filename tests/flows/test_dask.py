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
        pipe.set(f"sess:{i:06d}", os.urandom(40), px=7_200_000 + i)  # 2 h: far from any TTL bucket edge
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


def _units_under_way(snapshot_dir) -> int:
    """Units of an unfinished snapshot whose checkpoints record a part, and are not done."""
    import json

    count = 0
    for path in snapshot_dir.glob("units/*.json"):
        try:
            record = json.loads(path.read_text())
        except (ValueError, OSError):  # being replaced right now
            continue
        count += bool(record["parts"]) and not record["done"]
    return count


def test_a_unit_whose_worker_is_killed_resumes_from_its_checkpoint(prefect_harness, dask_cluster, valkey, tmp_path):
    """kill -9 of the worker processes running unit tasks: Dask runs each task again (on a
    worker its nanny restarts), the unit goes on after its last part, and the snapshot is
    complete and exact."""
    import contextvars
    import signal
    import threading
    import time

    from flows import backup_sessions
    from session_migration.snapshot import new_snapshot_id

    _fill(valkey.client(), 40_000)
    plain = backup_sessions(source=valkey.url, backup_path=str(tmp_path / "plain"), patterns=["sess:*"])
    snapshot_id = new_snapshot_id()
    outcome: dict = {}

    def back_up() -> None:
        try:
            outcome["summary"] = backup_sessions(source=valkey.url, backup_path=str(tmp_path / "dask"),
                                                 patterns=["sess:*"], part_rows=500, batch_size=50,
                                                 snapshot_id=snapshot_id, dask_address=dask_cluster.address)
        except BaseException as exc:  # noqa: BLE001 - asserted below
            outcome["error"] = exc

    runner = threading.Thread(target=contextvars.copy_context().run, args=(back_up,))  # Prefect's settings too
    runner.start()
    deadline = time.monotonic() + 120
    while _units_under_way(tmp_path / "dask" / snapshot_id) < 1:  # a unit has written a part and goes on
        assert runner.is_alive() and time.monotonic() < deadline, outcome
        time.sleep(0.01)
    with dask_cluster.client() as client:
        busy = [address for address, keys in client.processing().items() if keys]
    pids = dask_cluster.worker_pids()
    for address in busy:  # among them, the one running that unit
        os.kill(pids[address], signal.SIGKILL)
    runner.join(300)
    assert "error" not in outcome, outcome.get("error")
    summary = outcome["summary"]
    assert sum(unit["resumed_parts"] for unit in summary["units"]) >= 1  # the killed unit went on, not over
    assert _rows(summary["snapshot"]) == _rows(plain["snapshot"])
    assert {k: summary[k] for k in COUNTS} == {k: plain[k] for k in COUNTS}
    dask_cluster.wait_for_workers(2)  # the nanny has started the killed worker again


def test_restore_on_dask_equals_the_restore_without(prefect_harness, dask_cluster, valkey, redis_server, tmp_path):
    """Groups of parts written at once from the Dask workers: the target ends as a plain restore
    leaves it, every part recorded once, the per-part records folded into the checkpoint."""
    from flows import restore_sessions
    from session_migration import backup
    from helpers import state

    _fill(valkey.client(), 3000)
    snapshot = backup(valkey.url, str(tmp_path), patterns=["sess:*"], part_rows=400, batch_size=100).url
    target = redis_server.client()
    target.flushall()
    plain = restore_sessions(snapshot=snapshot, target=redis_server.url, patterns=["sess:*"])
    expected = state(target, "sess:*")
    target.flushall()
    state_, run_id = run_flow(restore_sessions, snapshot=snapshot, target=redis_server.url, patterns=["sess:*"],
                              dask_address=dask_cluster.address)
    on_dask = state_.result()
    assert state(target, "sess:*") == expected
    assert {k: v for k, v in on_dask.items() if k != "checkpoint"} == {k: v for k, v in plain.items()
                                                                       if k != "checkpoint"}
    assert on_dask["parts"] == len(open_snapshot(snapshot).parts) >= 5 and on_dask["written"] == len(expected)
    assert not list(tmp_path.glob("*/restores/*.parts"))
    run = read_flow_run(run_id, task_runs=4)
    assert run.task_names() == ["check-restore", "finish-restore", "restore-parts", "restore-parts"]


def test_audit_on_dask_reports_what_the_audit_without_reports(prefect_harness, dask_cluster, valkey, tmp_path):
    from flows import audit_report
    from session_migration import backup

    _fill(valkey.client(), 2000)
    snapshot = backup(valkey.url, str(tmp_path), patterns=["sess:*"], part_rows=500, batch_size=100).url
    plain = audit_report(snapshot=snapshot, output=str(tmp_path / "plain"))
    state_, run_id = run_flow(audit_report, snapshot=snapshot, output=str(tmp_path / "dask"),
                              dask_address=dask_cluster.address)
    on_dask = state_.result()
    parts = len(open_snapshot(snapshot).parts)
    for name in ("valid", "keys", "by_store", "by_status", "by_type", "ttl_buckets", "size_buckets", "findings"):
        assert on_dask[name] == plain[name], name
    run = read_flow_run(run_id, task_runs=3 + 2 * parts)
    names = run.task_names()
    assert names.count("check-part") == parts and names.count("count-part-slice") >= parts


# -- the command line ------------------------------------------------------------------------------


def _cli(*args: str):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "session_migration_cli", *args], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ))


def test_cli_backup_with_dask(prefect_harness, dask_cluster, valkey, tmp_path):
    import json

    _fill(valkey.client(), 1000)
    done = _cli("backup", valkey.url, str(tmp_path), "-p", "sess:*", "--batch-size", "100", "--snapshot-id", "on-dask",
                "--dask", dask_cluster.address, "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert "Backing up in 2 unit(s), one task each" in done.stderr
    assert [unit["unit"] for unit in summary["units"]] == ["0-of-2", "1-of-2"]
    assert summary["keys"] == open_snapshot(summary["snapshot"]).totals["keys"] == len(
        list(valkey.client().scan_iter("sess:*")))


def test_a_wrong_dask_address_is_one_sentence_and_no_run(prefect_harness, valkey, tmp_path):
    import json

    from servers import free_port

    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    done = _cli("backup", valkey.url, str(tmp_path), "--dask", address, "--json")
    assert done.returncode == 1
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["kind"] == "DaskUnavailable"
    assert answer["error"].startswith(f"No Dask scheduler answered at {address} within")
    assert "Traceback" not in done.stderr and not list(tmp_path.iterdir())
    malformed = _cli("restore", str(tmp_path / "x"), valkey.url, "--dask", "not an address", "--json")
    assert json.loads(malformed.stdout.strip().splitlines()[-1])["kind"] == "DaskUnavailable"
    refused = _cli("audit", str(tmp_path / "x"), "--dask", address, "--no-prefect")
    assert refused.returncode == 2 and "drop --no-prefect" in refused.stderr


def test_a_rerun_with_the_same_snapshot_id_goes_on_after_the_units_done(prefect_harness, dask_cluster, valkey,
                                                                          tmp_path):
    """A backup in units that stopped after one unit (the flow failed, was cancelled): the rerun
    with its snapshot id runs only what is left; without --dask it is refused in one sentence."""
    from flows import backup_sessions
    from session_migration import backup, steps
    from session_migration.errors import InvalidParameter
    from session_migration.options import BackupOptions

    _fill(valkey.client(), 3000)
    plain = backup(valkey.url, str(tmp_path / "plain"), patterns=["sess:*"])
    options = BackupOptions(patterns=("sess:*",), part_rows=300, batch_size=100, snapshot_id="stopped")
    root = str(tmp_path / "dask")
    steps.start_backup_units(valkey.url, root, options, 2)
    first = steps.back_up_unit(valkey.url, root, options, 0, 2)
    assert first["parts"] >= 2 and first["resumed_parts"] == 0
    with pytest.raises(InvalidParameter, match="was started in units on a task runner"):
        backup(valkey.url, root, patterns=["sess:*"], part_rows=300, batch_size=100, snapshot_id="stopped")
    summary = backup_sessions(source=valkey.url, backup_path=root, patterns=["sess:*"], part_rows=300, batch_size=100,
                              snapshot_id="stopped", dask_address=dask_cluster.address)
    assert summary["units"][0] == {**first, "resumed_parts": first["parts"], "seconds": summary["units"][0]["seconds"]}
    assert summary["units"][1]["resumed_parts"] == 0
    assert _rows(summary["snapshot"]) == _rows(plain.url)
    assert summary["keys"] == plain.counters.keys


def test_a_run_started_with_another_task_runner_sends_its_units_to_dask(prefect_harness, dask_cluster, valkey,
                                                                         tmp_path):
    """A deployment's run starts the flow as defined (Prefect's default task runner), not through
    `SessionFlow.__call__`: with dask_address its units go to the Dask cluster all the same."""
    from prefect import Flow

    from flows import backup_sessions

    _fill(valkey.client(), 1000)
    summary = Flow.__call__(backup_sessions, source=valkey.url, backup_path=str(tmp_path), patterns=["sess:*"],
                            dask_address=dask_cluster.address)
    assert [unit["unit"] for unit in summary["units"]] == ["0-of-2", "1-of-2"]
    assert summary["keys"] == len(list(valkey.client().scan_iter("sess:*")))


def test_a_flow_with_a_prefect_server_never_loads_prefects_own_server_package(prefect_harness):
    """Asking whether a temporary server must be named for the tasks does not import Prefect's
    server (2-4 s of FastAPI and SQLAlchemy, most of what a Dask run once cost more)."""
    import subprocess
    import sys

    asks = ("import sys\nfrom flows._dask import _temporary_server_for_tasks\n"
            "with _temporary_server_for_tasks():\n    print(sorted(m for m in sys.modules if m.startswith('prefect.server.api')))")
    done = subprocess.run([sys.executable, "-c", asks], capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
