"""Snapshots on file://, memory:// and s3:// (moto server), read back without this project."""

from __future__ import annotations

import json
import os

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from session_migration import backup, open_snapshot
from session_migration.errors import SnapshotInvalid

pytestmark = pytest.mark.integration


def _seed(valkey, n=2500):
    pipe = valkey.client().pipeline()
    for i in range(n):
        pipe.set(f"sess:{i:05d}", f'{{"cookie": {{}}, "n": {i}}}', ex=3600)
    pipe.execute()


@pytest.mark.parametrize("scheme", ["file", "memory", "s3"])
def test_round_trip_on_every_filesystem(valkey, tmp_path, scheme, request):
    _seed(valkey)
    root = {
        "file": lambda: f"file://{tmp_path}",
        "memory": lambda: f"memory://snapshots-{request.node.name}",
        "s3": lambda: request.getfixturevalue("s3_bucket") + "/root",
    }[scheme]()
    result = backup(valkey.url, root, patterns=["sess:*"], part_rows=1000)
    assert result.url.startswith(scheme)
    snap = open_snapshot(result.url)  # verifies every part's sha256 and row count
    assert snap.read_table().num_rows == 2500 == snap.totals["keys"]
    assert len(snap.parts) >= 2 and all(p.rows >= 1000 for p in snap.parts[:-1])  # a part ends after part_rows rows


def test_readable_by_pandas_pyarrow_and_duckdb_alone(valkey, tmp_path):
    _seed(valkey)
    result = backup(valkey.url, str(tmp_path), patterns=["sess:*"], part_rows=1000)
    folder = tmp_path / result.snapshot_id
    manifest = json.loads((folder / "manifest.json").read_text())
    files = [str(folder / "parts" / p["name"]) for p in manifest["parts"]]

    frame = pd.concat(pd.read_parquet(f) for f in files)
    assert len(frame) == 2500 and set(frame["type"]) == {"string"}
    assert pq.ParquetDataset(files).read().num_rows == 2500
    [(count, with_ttl)] = duckdb.sql(
        f"select count(*), count(expire_at_ms) from read_parquet('{folder}/parts/*.parquet')"
    ).fetchall()
    assert (count, with_ttl) == (2500, 2500)


def test_parts_are_on_disk_before_the_manifest_names_them(valkey, tmp_path, monkeypatch):
    """On a local disk every part, the parts folder, then the manifest and the names of the
    snapshot are fsynced, in that order: a power loss just after a backup cannot leave a
    manifest that names bytes still in the page cache. (os.fsync is only watched, still done.)"""
    _seed(valkey)
    synced: list[str] = []
    fsync = os.fsync

    def watched(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", watched)
    result = backup(valkey.url, str(tmp_path), patterns=["sess:*"], part_rows=1000)
    folder = os.path.realpath(tmp_path / result.snapshot_id)
    manifest_at = max(i for i, path in enumerate(synced) if path.startswith(f"{folder}/manifest.json"))
    before, after = synced[:manifest_at], synced[manifest_at:]
    parts = sorted(os.listdir(f"{folder}/parts"))
    assert len(parts) == len(open_snapshot(result.url).parts) >= 2
    assert all(f"{folder}/parts/{name}" in before for name in parts)
    assert f"{folder}/parts" in before
    assert folder in after and os.path.dirname(folder) in after


def test_snapshot_without_manifest_is_not_complete(valkey, tmp_path):
    _seed(valkey, 10)
    result = backup(valkey.url, str(tmp_path), patterns=["sess:*"])
    (tmp_path / result.snapshot_id / "manifest.json").unlink()
    with pytest.raises(SnapshotInvalid, match="no manifest.json"):
        open_snapshot(result.url)


def test_tampering_is_detected(valkey, tmp_path):
    _seed(valkey, 10)
    result = backup(valkey.url, str(tmp_path), patterns=["sess:*"])
    folder = tmp_path / result.snapshot_id
    part = next((folder / "parts").iterdir())
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(SnapshotInvalid, match="sha256"):
        open_snapshot(result.url)

    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["totals"]["keys"] = 11
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(SnapshotInvalid, match="edited"):
        open_snapshot(result.url)
