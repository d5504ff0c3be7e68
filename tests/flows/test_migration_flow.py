"""The full_migration flow under a real Prefect server: happy path with audit and artifacts,
a real verify failure (a key changed right after the restore) rolled back exactly, dry run."""

from __future__ import annotations

import json

import pytest

from helpers import read_flow_run, run_flow
from session_migration.errors import TerminalError
from session_migration.migration import MigrationFailed

pytestmark = [pytest.mark.flows, pytest.mark.integration]

PATTERNS = ["sess:*", "session:*"]


# The task runs of a migration of one snapshot part, by name (without their run suffix).
RECORDED_STEPS = ["record-backed_up", "record-validated", "record-pre_image", "record-restoring", "record-restored",
                  "record-restored", "record-verified", "record-audited", "record-done"]
HAPPY_TASKS = sorted(["check-migration", "start-migration", "check-backup", "back-up-sessions", "validate-snapshot",
                      "take-pre-image",
                      "check-restore", "restore-part", "finish-restore", "verify-sessions", "judge-verification",
                      "compute-snapshot-stats", "write-audit-report", "migration-summary"]
                     + ["record"] * len(RECORDED_STEPS))
ROLLED_BACK_TASKS = sorted(["check-migration", "start-migration", "check-backup", "back-up-sessions", "validate-snapshot",
                            "take-pre-image", "check-restore", "restore-part", "finish-restore", "verify-sessions",
                            "judge-verification", "handle-migration-failure"] + ["record"] * 6)


@pytest.fixture
def pair(valkey_server, redis_server):
    from integration.test_migration import seeded

    seeded(valkey_server, redis_server)
    return valkey_server, redis_server


def test_full_migration_flow_happy_path(prefect_harness, pair, tmp_path):
    from flows import full_migration

    src, dst = pair
    state, run_id = run_flow(full_migration, source=src.url, target=dst.url, backup_path=str(tmp_path),
                             patterns=PATTERNS)
    summary = state.result()
    json.dumps(summary)
    assert summary["ok"] and summary["step"] == "done" and not summary["rolled_back"]
    assert summary["verify"]["ok"] and summary["verify"]["counts"]["OK"] == 8
    assert summary["verify"]["kept_target_only"] == 2 and summary["restore"]["written"] == 8
    assert (tmp_path / summary["snapshot_id"] / "audit" / "report.html").is_file()
    assert dst.client().get("sess:forever") == b"no ttl" and dst.client().get("cache:user:42") == b"{}"
    run = read_flow_run(run_id, task_runs=len(HAPPY_TASKS))
    assert run.run.state.is_completed()
    assert sorted(t.name for t in run.task_runs if t.name.startswith("record-")) == sorted(RECORDED_STEPS)
    assert run.task_names() == HAPPY_TASKS
    assert run.artifact_keys() == ["backup-progress", "migration-report", "migration-restore-progress",
                                   "migration-verify-progress"]
    assert summary["migration_id"] in run.artifact("migration-report").data


def test_full_migration_flow_rolls_back_on_verify_failure(prefect_harness, pair, tmp_path):
    from integration.test_migration import db_state

    from flows import full_migration
    from tasks.progress import subscribe

    src, dst = pair
    before = db_state(dst.client())
    client = dst.client()

    def tamper(event):  # the restore's last progress event: change a migrated key for real
        if getattr(event, "fraction", 0) >= 1.0 and hasattr(event, "parts_done"):
            client.set("sess:str", b"changed behind the flow's back")

    unsubscribe = subscribe(tamper)
    try:
        state, run_id = run_flow(full_migration, source=src.url, target=dst.url, backup_path=str(tmp_path),
                                 patterns=PATTERNS)
    finally:
        unsubscribe()
    with pytest.raises(MigrationFailed, match="rolled back"):
        state.result()
    assert db_state(dst.client()) == before
    run = read_flow_run(run_id, task_runs=len(ROLLED_BACK_TASKS))
    assert run.run.state.is_failed()
    assert run.task_names() == ROLLED_BACK_TASKS
    assert run.artifact_keys() == ["backup-progress", "migration-report", "migration-restore-progress",
                                   "migration-verify-progress"]
    assert "FAILED, rolled back" in run.artifact("migration-report").data
    state_file = next((tmp_path / "migrations").glob("*.json"))
    state = json.loads(state_file.read_text())
    assert state["step"] == "rolled_back" and state["rolled_back"] and state["rollback"]["stage"] == "done"


def test_full_migration_flow_dry_run_and_refusal(prefect_harness, pair, tmp_path):
    from integration.test_migration import db_state

    from flows import full_migration

    src, dst = pair
    before = db_state(dst.client())
    state, run_id = run_flow(full_migration, source=src.url, target=dst.url, backup_path=str(tmp_path / "r"),
                             patterns=PATTERNS, dry_run=True)
    plan = state.result()
    assert plan["dry_run"] and plan["restore_plan"] == {"would_create": 6, "would_overwrite": 2,
                                                         "target_keys_in_scope": 4, "target_only_kept": 2}
    run = read_flow_run(run_id, task_runs=2)
    assert run.task_names() == ["check-migration", "plan-migration"]
    assert run.artifact_keys() == ["migration-dry-run"]
    with pytest.raises(TerminalError, match="already holds keys in scope"):
        full_migration(source=src.url, target=dst.url, backup_path=str(tmp_path / "r"), patterns=PATTERNS,
                       require_empty_target=True)
    assert db_state(dst.client()) == before and not (tmp_path / "r").exists()


def _cli(*args):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "session_migration_cli", *args], capture_output=True, text=True,
                          env={**os.environ}, timeout=300)


def test_cli_migrate_json_dry_run_refusal_and_passwords(prefect_harness, valkey_server, tmp_path):
    from integration.test_migration import db_state, seed_source
    from servers import start_server

    secret = "pw-never-printed-7f3"
    target = start_server("redis", password=secret)
    try:
        valkey_server.client().flushall()
        seed_source(valkey_server.client())
        root = str(tmp_path / "snaps")
        plan = _cli("migrate", valkey_server.url, target.url, "--backup-path", root, "-p", "sess:*", "-p", "session:*",
                    "--dry-run", "--json")
        assert plan.returncode == 0, plan.stderr
        assert json.loads(plan.stdout.strip().splitlines()[-1])["restore_plan"]["would_create"] == 8
        assert target.client().dbsize() == 0

        done = _cli("migrate", valkey_server.url, target.url, "--backup-path", root, "-p", "sess:*", "-p", "session:*",
                    "--require-empty-target", "--json")
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert summary["ok"] and summary["verify"]["counts"]["OK"] == 8 and summary["audit"]["html"]
        assert secret not in done.stdout + done.stderr + plan.stdout + plan.stderr
        assert secret not in json.dumps(summary)
        for path in (tmp_path / "snaps").rglob("*.json"):
            assert secret not in path.read_text()

        before = db_state(target.client())
        refused = _cli("migrate", valkey_server.url, target.url, "--backup-path", root, "-p", "sess:*",
                       "--require-empty-target", "--json")
        assert refused.returncode == 1
        error = json.loads(refused.stdout.strip().splitlines()[-1])
        assert "already holds keys in scope" in error["error"] and error["kind"] == "MigrationRefused"
        assert db_state(target.client()) == before

        again = _cli("migrate", valkey_server.url, target.url, "--backup-path", root,
                     "--resume-rollback", summary["migration_id"], "--json")
        assert again.returncode == 0, again.stderr  # a finished migration is left alone
        assert json.loads(again.stdout.strip().splitlines()[-1])["step"] == "done"
    finally:
        target.stop()


def _comparable(state_file, root, summary) -> object:
    """A migration state file without what differs between any two runs: times, durations,
    rates, the ids and root folder (as placeholders), and the snapshot's size in bytes (the
    absolute expiry times it stores differ per run, so its Parquet pages compress differently)."""
    text = state_file.read_text()
    for value, placeholder in [(summary["migration_id"], "<migration>"), (summary["snapshot_id"], "<snapshot>"),
                               (summary["pre_image_id"], "<pre-image>"), (str(root), "<root>")]:
        text = text.replace(value, placeholder)

    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items()
                    if not (k.endswith(("_at", "_s", "seconds")) or k in {"at", "rate", "keys_per_s", "duration", "snapshot_bytes"})}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(json.loads(text))


def test_the_flow_and_the_core_write_the_same_state_file(prefect_harness, valkey_server, redis_server, tmp_path):
    """One orchestration: the flow (steps as tasks) and `migrate()` (steps called directly)
    record the same steps, counts, verification, audit and history for the same migration."""
    from flows import full_migration
    from integration.test_migration import seeded
    from session_migration.migration import migrate

    src, dst = valkey_server, redis_server
    seeded(src, dst)
    state, _ = run_flow(full_migration, source=src.url, target=dst.url, backup_path=str(tmp_path / "flow"),
                        patterns=PATTERNS)
    by_flow = state.result()
    seeded(src, dst)
    by_core = migrate(src.url, dst.url, str(tmp_path / "core"), patterns=PATTERNS).summary()
    assert by_flow["ok"] and by_core["ok"]
    flow_state = _comparable(tmp_path / "flow" / "migrations" / f"{by_flow['migration_id']}.json",
                             tmp_path / "flow", by_flow)
    core_state = _comparable(tmp_path / "core" / "migrations" / f"{by_core['migration_id']}.json",
                             tmp_path / "core", by_core)
    assert [h["step"] for h in flow_state["history"]] == [h["step"] for h in core_state["history"]]
    assert flow_state == core_state
