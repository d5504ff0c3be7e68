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
