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
