"""Retention keeps what the rules say, never the last valid snapshot, and dry-runs first."""

from __future__ import annotations

import datetime as dt

import pytest

from session_migration import backup, list_snapshots, storage
from session_migration.errors import InvalidParameter
from session_migration.retention import RetentionOptions, prune_snapshots

pytestmark = pytest.mark.integration


IDS = [f"2026112{i}T000000Z-00000{i}" for i in range(4)]  # oldest first, as they are written


@pytest.fixture
def root(valkey, tmp_path):
    valkey.client().set("sess:x", "v")
    for snapshot_id in IDS:
        backup(valkey.url, str(tmp_path), patterns=["sess:*"], snapshot_id=snapshot_id)
    assert [s.snapshot_id for s in list_snapshots(str(tmp_path))] == IDS
    return tmp_path


def ids(items):
    return [i["snapshot_id"] for i in items]


def listed(root):
    return [s.snapshot_id for s in list_snapshots(str(root))]


def test_keep_last_dry_run_then_apply(root):
    fs, path = storage.resolve(str(root))
    plan = prune_snapshots(fs, path, RetentionOptions(keep_last=2))
    assert plan.dry_run and (ids(plan.keep), ids(plan.delete), plan.protected) == (IDS[:1:-1], IDS[1::-1], None)
    assert listed(root) == IDS  # a dry run deletes nothing
    applied = prune_snapshots(fs, path, RetentionOptions(keep_last=2, dry_run=False))
    assert (ids(applied.keep), ids(applied.delete)) == (IDS[:1:-1], IDS[1::-1])
    assert listed(root) == IDS[2:] and sorted(p.name for p in root.iterdir()) == IDS[2:]


def test_keep_days(root):
    fs, path = storage.resolve(str(root))
    assert ids(prune_snapshots(fs, path, RetentionOptions(keep_days=7)).delete) == []  # all are minutes old
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)
    plan = prune_snapshots(fs, path, RetentionOptions(keep_days=7), now=later)
    # every snapshot is older than 7 days then, but the newest valid one is protected
    assert (ids(plan.keep), ids(plan.delete), plan.protected) == ([IDS[3]], IDS[2::-1], IDS[3])


def test_never_deletes_the_only_valid_snapshot(root):
    fs, path = storage.resolve(str(root))
    newest = list_snapshots(str(root))[-1]
    assert newest.snapshot_id == IDS[3]
    part = root / newest.snapshot_id / "parts" / newest.parts[0].name
    part.write_bytes(b"corrupted")  # the newest is now invalid
    plan = prune_snapshots(fs, path, RetentionOptions(keep_last=1, dry_run=False))
    assert plan.protected == IDS[2]
    assert (ids(plan.keep), ids(plan.delete)) == ([IDS[3], IDS[2]], [IDS[1], IDS[0]])
    assert listed(root) == IDS[2:]


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
