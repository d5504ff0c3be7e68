"""Retention keeps what the rules say, never the last valid snapshot, and dry-runs first."""

from __future__ import annotations

import datetime as dt

import pytest

from session_migration import backup, list_snapshots, storage
from session_migration.errors import InvalidParameter
from session_migration.retention import RetentionOptions, prune_snapshots

pytestmark = pytest.mark.integration


@pytest.fixture
def root(valkey, tmp_path):
    valkey.client().set("sess:x", "v")
    for i in range(4):
        backup(valkey.url, str(tmp_path), patterns=["sess:*"], snapshot_id=f"2026112{i}T000000Z-00000{i}")
    return tmp_path


def ids(items):
    return [i["snapshot_id"] for i in items]


def test_keep_last_dry_run_then_apply(root):
    fs, path = storage.resolve(str(root))
    plan = prune_snapshots(fs, path, RetentionOptions(keep_last=2))
    assert plan.dry_run and len(plan.delete) == 2 and len(list_snapshots(str(root))) == 4
    applied = prune_snapshots(fs, path, RetentionOptions(keep_last=2, dry_run=False))
    assert ids(applied.delete) == ids(plan.delete)
    assert [s.snapshot_id for s in list_snapshots(str(root))] == sorted(ids(applied.keep))


def test_keep_days(root):
    fs, path = storage.resolve(str(root))
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)
    plan = prune_snapshots(fs, path, RetentionOptions(keep_days=7), now=later)
    # every snapshot is older than 7 days then, but the newest valid one is protected
    assert len(plan.keep) == 1 and plan.protected == plan.keep[0]["snapshot_id"]


def test_never_deletes_the_only_valid_snapshot(root):
    fs, path = storage.resolve(str(root))
    snaps = sorted(list_snapshots(str(root)), key=lambda s: s.manifest["finished_at"])
    newest = snaps[-1]
    part = root / newest.snapshot_id / "parts" / newest.parts[0].name
    part.write_bytes(b"corrupted")  # the newest is now invalid
    plan = prune_snapshots(fs, path, RetentionOptions(keep_last=1, dry_run=False))
    # the damaged newest one is not a keeper: the next one is, and the damaged one is left alone
    assert ids(plan.keep) == [snaps[-2].snapshot_id] and plan.protected is None
    assert [s["name"] for s in plan.suspicious] == [newest.snapshot_id]
    assert "its parts fail validation" in plan.suspicious[0]["reason"]
    left = [s.snapshot_id for s in list_snapshots(str(root))]
    assert left == [snaps[-2].snapshot_id, newest.snapshot_id]


def test_unfinished_backups_are_left_alone(root):
    (root / "unfinished").mkdir()
    (root / "unfinished" / "checkpoint.json").write_text("{}")
    fs, path = storage.resolve(str(root))
    plan = prune_snapshots(fs, path, RetentionOptions(keep_last=1, dry_run=False))
    assert plan.unfinished == ["unfinished"] and (root / "unfinished").exists()


def test_rules_are_required():
    with pytest.raises(InvalidParameter, match="keep_last and/or keep_days"):
        RetentionOptions()
    with pytest.raises(InvalidParameter, match="keep_last must be"):
        RetentionOptions(keep_last=0)
