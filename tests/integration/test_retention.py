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
    # the damaged newest one is not a keeper: the next one is, and the damaged one is left alone
    assert (ids(plan.keep), ids(plan.delete), plan.protected) == ([IDS[2]], [IDS[1], IDS[0]], None)
    assert [s["name"] for s in plan.suspicious] == [IDS[3]]
    assert "its parts fail validation" in plan.suspicious[0]["reason"]
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


# -- a root whoever can write to the storage has added to ---------------------------------------

FORGED = "29990101T000000Z-ffffff"


def forge(root, name, *, finished_at, parts=None):
    """A snapshot folder written by an attacker: a manifest copied from a real one, re-dated,
    with its own parts (none by default) and every checksum recomputed."""
    import json

    from session_migration.snapshot import manifest_bytes

    real = next(p for p in sorted(root.iterdir()) if (p / "manifest.json").exists())
    manifest = json.loads((real / "manifest.json").read_text())
    manifest.pop("signature", None)
    manifest.update(snapshot_id=name, started_at=finished_at, finished_at=finished_at, parts=parts or [])
    manifest["totals"]["keys"] = sum(p["rows"] for p in parts or [])
    (root / name).mkdir()
    (root / name / "manifest.json").write_bytes(manifest_bytes(manifest))


def on_disk(root):
    return sorted(p.name for p in root.iterdir() if (p / "manifest.json").exists())


@pytest.fixture
def no_key(monkeypatch):
    monkeypatch.delenv("SESSION_MIGRATION_SIGNING_KEY", raising=False)
    monkeypatch.delenv("SESSION_MIGRATION_SIGNING_KEYS", raising=False)


def test_a_forged_future_snapshot_cannot_make_real_ones_deletable(root, no_key):
    real = on_disk(root)
    forge(root, FORGED, finished_at="2999-01-01T00:00:00+00:00")
    fs, path = storage.resolve(str(root))
    plan = prune_snapshots(fs, path, RetentionOptions(keep_last=1, dry_run=False))
    assert ids(plan.keep) == [real[-1]] and sorted(ids(plan.delete)) == real[:-1]
    assert [s["name"] for s in plan.suspicious] == [repr(FORGED)]
    assert on_disk(root) == [real[-1], FORGED]  # the forgery is listed, never deleted


def test_with_a_key_an_unsigned_snapshot_never_counts(valkey, tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("SESSION_MIGRATION_SIGNING_KEY", "retention-test-signing-key-0123456789abcdef")
    valkey.client().set("sess:x", "v")
    real = [backup(valkey.url, str(tmp_path), patterns=["sess:*"], snapshot_id=f"2026112{i}T000000Z-00000{i}").snapshot_id
            for i in range(3)]
    # A plausible forgery: finished a minute ago, one part that passes its checksums, no signature.
    newest = tmp_path / real[-1]
    part = json.loads((newest / "manifest.json").read_text())["parts"][0]
    name = f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}-eeeeee"
    minute_ago = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)).isoformat()
    forge(tmp_path, name, finished_at=minute_ago, parts=[part])
    (tmp_path / name / "parts").mkdir()
    (tmp_path / name / "parts" / part["name"]).write_bytes((newest / "parts" / part["name"]).read_bytes())
    fs, path = storage.resolve(str(tmp_path))
    plan = prune_snapshots(fs, path, RetentionOptions(keep_last=2, dry_run=False))
    assert ids(plan.keep) == real[:0:-1] and ids(plan.delete) == real[:1]
    assert [s["name"] for s in plan.suspicious] == [repr(name)] and "not signed" in plan.suspicious[0]["reason"]
    assert on_disk(tmp_path) == sorted([*real[1:], name])


def test_a_snapshot_whose_id_is_not_its_folders_name_never_counts(root, no_key):
    import shutil

    real = on_disk(root)
    shutil.copytree(root / real[-1], root / "29990101T000000Z-c0c0c0")  # a copy of the newest, renamed
    fs, path = storage.resolve(str(root))
    plan = prune_snapshots(fs, path, RetentionOptions(keep_last=1))
    assert ids(plan.keep) == [real[-1]]
    assert plan.suspicious[0]["name"] == repr("29990101T000000Z-c0c0c0")
    assert "names snapshot" in plan.suspicious[0]["reason"]


# -- pre-images are counted apart, and follow their migration --------------------------------


def _migration_state(root, migration_id, *, snapshot_id, pre_image_id, step):
    from session_migration.migration import MigrationState

    fs, path = storage.resolve(str(root))
    MigrationState(migration_id=migration_id, source="redis://s/0", target="redis://t/0",
                   options={"patterns": ["sess:*"], "batch_size": 1000}, started_at="2026-11-20T00:00:00+00:00",
                   step=step, snapshot_id=snapshot_id, pre_image_id=pre_image_id).save(fs, path)


@pytest.fixture
def series(valkey, tmp_path, no_key):
    """b0 < p0 < b1 < p1 < b2 < p2 < c0 < b3 < c1 in time; p* are migration pre-images, c*
    cleanup pre-images (no migration state)."""
    valkey.client().set("sess:x", "v")
    names = ["b0", "p0", "b1", "p1", "b2", "p2", "c0", "b3", "c1"]
    made = {}
    for n, name in enumerate(names):
        suffix = "-pre" if name[0] in "pc" else ""
        made[name] = backup(valkey.url, str(tmp_path), patterns=["sess:*"],
                            snapshot_id=f"2026112{n}T000000Z-{name}{suffix}").snapshot_id
    return tmp_path, made


def test_keep_last_counts_backups_only(series):
    root, made = series
    fs, path = storage.resolve(str(root))
    plan = prune_snapshots(fs, path, RetentionOptions(keep_last=2))
    kept = set(ids(plan.keep))
    assert {made["b3"], made["b2"]} <= kept and made["b1"] not in kept and made["b0"] not in kept
    # cleanup pre-images are a series of their own: the newest 2 of them
    assert {made["c0"], made["c1"]} <= kept
    # migration pre-images without a state file: the newest 2 of those too (c1, c0 are newer)
    assert made["p0"] not in kept


def test_a_pre_image_follows_its_migration(series):
    root, made = series
    _migration_state(root, "migration-old-unfinished", snapshot_id=made["b0"], pre_image_id=made["p0"], step="rolling_back")
    _migration_state(root, "migration-done-kept", snapshot_id=made["b2"], pre_image_id=made["p2"], step="done")
    _migration_state(root, "migration-done-gone", snapshot_id=made["b1"], pre_image_id=made["p1"], step="done")
    fs, path = storage.resolve(str(root))
    plan = prune_snapshots(fs, path, RetentionOptions(keep_last=2, dry_run=False))
    why = {k["snapshot_id"]: k["why"] for k in plan.keep}
    assert "unfinished" in why[made["p0"]]  # kept however old: its migration may still roll back
    assert made["b2"] in why[made["p2"]]  # its backup is kept
    assert made["p1"] in ids(plan.delete) and made["b1"] in ids(plan.delete)  # its backup goes, so does it
    assert made["b0"] in ids(plan.delete)
    assert set(on_disk(root)) == set(why)


def test_an_unreadable_state_file_keeps_every_pre_image(series):
    root, made = series
    (root / "migrations").mkdir()
    (root / "migrations" / "migration-x.json").write_text("{not json")
    fs, path = storage.resolve(str(root))
    plan = prune_snapshots(fs, path, RetentionOptions(keep_last=1))
    assert {made[n] for n in ("p0", "p1", "p2", "c0", "c1")} <= set(ids(plan.keep))
    assert plan.notes and "could not be read" in plan.notes[0]


# -- what is in a root -------------------------------------------------------------------------


def test_a_missing_root_is_an_error(tmp_path):
    from session_migration.errors import SnapshotRootNotFound

    with pytest.raises(SnapshotRootNotFound, match="does not exist"):
        list_snapshots(str(tmp_path / "no-such-root"))
    fs, path = storage.resolve(str(tmp_path / "no-such-root"))
    with pytest.raises(SnapshotRootNotFound):
        prune_snapshots(fs, path, RetentionOptions(keep_last=1))


def test_a_folder_that_is_not_a_snapshot_is_not_called_unfinished(root, no_key):
    from session_migration.snapshot import inspect_root
    from session_migration.validation import validate_snapshot

    (root / "holiday-photos").mkdir()
    (root / "holiday-photos" / "beach.jpg").write_bytes(b"\xff\xd8")
    (root / "stopped").mkdir()
    (root / "stopped" / "checkpoint.json").write_text("{}")
    fs, path = storage.resolve(str(root))
    inventory = inspect_root(fs, path).as_dict()
    assert inventory["not_snapshots"] == ["holiday-photos"] and inventory["unfinished"] == ["stopped"]
    plan = prune_snapshots(fs, path, RetentionOptions(keep_last=1)).as_dict()
    assert plan["not_snapshots"] == ["holiday-photos"] and plan["unfinished"] == ["stopped"]
    report = validate_snapshot(fs, f"{path}/holiday-photos")
    assert [p.code for p in report.problems] == ["not-a-snapshot"] and "is not a snapshot" in report.problems[0].message
