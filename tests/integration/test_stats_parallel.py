"""Stats computed by several processes over groups of parts equal the single-process result."""

from __future__ import annotations

import pytest

from session_migration import backup, open_snapshot
from session_migration.demo import seed
from session_migration.stats import compute_stats

pytestmark = pytest.mark.integration


def test_parallel_stats_equal_sequential(valkey, tmp_path):
    r = valkey.client()
    seed(r, copies=30)
    r.set("sess:brokenbrokenbrokenbrokenbroken00", b"\xff not json", ex=600)
    snapshot = open_snapshot(backup(valkey.url, str(tmp_path), part_rows=200, batch_size=50).url)
    assert len(snapshot.parts) >= 4
    now = 1_800_000_000_000
    one = compute_stats(snapshot, now_ms=now, workers=1).as_dict()
    two = compute_stats(snapshot, now_ms=now, workers=2).as_dict()
    three = compute_stats(snapshot, now_ms=now, workers=3, max_findings=7).as_dict()
    assert one == two
    assert one["keys"] == snapshot.totals["keys"] and one["findings_total"] > 7
    assert three["findings"] == one["findings"][:7] and three["by_store"] == one["by_store"]


def test_spawned_workers_give_the_same_stats_and_report(valkey, tmp_path):
    """With another thread alive (as under Prefect) workers are spawned, not forked: same results."""
    import threading

    from session_migration import storage
    from session_migration.validation import validate_snapshot

    seed(valkey.client(), copies=10)
    snapshot = open_snapshot(backup(valkey.url, str(tmp_path), part_rows=100, batch_size=50).url)
    fs, path = storage.resolve(snapshot.url)
    now = 1_800_000_000_000
    alone = compute_stats(snapshot, now_ms=now, workers=1).as_dict()
    report = validate_snapshot(fs, path, workers=1).as_dict()
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert compute_stats(snapshot, now_ms=now, workers=2).as_dict() == alone
        spawned = validate_snapshot(fs, path, workers=2).as_dict()
    finally:
        release.set()
        other.join()
    assert {**spawned, "checked_at": None} == {**report, "checked_at": None}


def test_one_part_cut_into_runs_of_row_groups(valkey, tmp_path):
    """A single large part is still shared: its row groups are sliced between processes."""
    r = valkey.client()
    seed(r, copies=20)
    r.set("sess:brokenbrokenbrokenbrokenbroken00", b"\xff not json", ex=600)
    snapshot = open_snapshot(backup(valkey.url, str(tmp_path), row_group_rows=37, batch_size=50).url)
    assert len(snapshot.parts) == 1
    now = 1_800_000_000_000
    one = compute_stats(snapshot, now_ms=now, workers=1, batch_size=20).as_dict()
    assert compute_stats(snapshot, now_ms=now, workers=2, batch_size=20).as_dict() == one
    assert compute_stats(snapshot, now_ms=now, workers=3, max_findings=5).as_dict()["findings"] == one["findings"][:5]
