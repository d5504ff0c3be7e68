"""A backup killed with SIGKILL and started again resumes and yields the same rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from session_migration import backup, open_snapshot
from session_migration.errors import SnapshotInvalid

pytestmark = pytest.mark.integration

KILL_AFTER_PARTS = 3

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from session_migration import backup

    def progress(event):
        if event.parts >= int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no flush: a crash

    backup(sys.argv[1], sys.argv[2], patterns=["sess:*"], snapshot_id="resume-me", part_rows=1000,
           batch_size=100, progress=progress, readers=int(sys.argv[4]))
    """
)


def _rows(url):
    table = open_snapshot(url).read_table().sort_by("key")
    return table.drop_columns(["dump"]).to_pylist()


@pytest.mark.parametrize("readers", [1, 2])
def test_kill_9_then_resume_gives_the_same_rows(readers, valkey, tmp_path):
    r = valkey.client()
    pipe = r.pipeline()
    for i in range(8000):
        pipe.set(f"sess:{i:05d}", os.urandom(50), ex=7200)
    for i in range(20):
        pipe.hset(f"sess:h{i}", mapping={"a": "1", "b": os.urandom(8)})
    pipe.execute()
    root = tmp_path / "root"

    child = subprocess.run([sys.executable, "-c", CHILD, valkey.url, str(root), str(KILL_AFTER_PARTS), str(readers)])
    assert child.returncode == -signal.SIGKILL
    folder = root / "resume-me"
    assert not (folder / "manifest.json").exists()
    checkpoint = json.loads((folder / "checkpoint.json").read_text())
    assert len(checkpoint["parts"]) == KILL_AFTER_PARTS
    assert len(checkpoint["positions"]) == readers
    with pytest.raises(SnapshotInvalid, match="unfinished backup"):
        open_snapshot(str(folder))

    resumed = backup(valkey.url, str(root), patterns=["sess:*"], snapshot_id="resume-me", part_rows=1000, batch_size=100)
    assert resumed.resumed_parts == KILL_AFTER_PARTS
    assert not (folder / "checkpoint.json").exists()

    clean = backup(valkey.url, str(tmp_path / "clean"), patterns=["sess:*"], part_rows=1000, batch_size=100)
    assert _rows(resumed.url) == _rows(clean.url)
    assert resumed.counters.keys == clean.counters.keys == 8020
    assert resumed.counters.as_dict()["by_type"] == {"hash": 20, "string": 8000}


def test_a_resume_must_share_what_decides_the_rows_and_says_what_differs(valkey, tmp_path):
    """Batch and part sizes may change on resume (a SCAN cursor fits any COUNT); patterns,
    expiry capture and compression may not, and the refusal names what differs."""
    from session_migration.checkpoint import BackupCheckpoint, load_checkpoint
    from session_migration.errors import InvalidParameter
    from session_migration.storage import resolve

    r = valkey.client()
    for i in range(300):
        r.set(f"sess:{i}", "v", ex=600)
    fs, root = resolve(str(tmp_path))
    started = BackupCheckpoint(snapshot_id="half", started_at="2026-12-01T00:00:00+00:00", source=valkey.url,
                               options={"patterns": ["sess:*"], "batch_size": 50, "preserve_ttl": True,
                                        "compression": "zstd", "capture_dump": False, "part_rows": 100,
                                        "row_group_rows": 10_000})
    started.save(fs, f"{root}/half")
    with pytest.raises(InvalidParameter) as refused:
        backup(valkey.url, str(tmp_path), patterns=["sess:*"], snapshot_id="half", compression="snappy")
    assert "options.compression was 'zstd', now 'snappy'" in str(refused.value)
    assert load_checkpoint(fs, f"{root}/half") is not None  # refused: nothing changed
    done = backup(valkey.url, str(tmp_path), patterns=["sess:*"], snapshot_id="half", batch_size=500,
                  part_rows=1000)
    assert done.counters.keys == 300
