"""Every way a snapshot can be broken gives its own precise problem."""

from __future__ import annotations

import json
import shutil

import pytest

import numpy as np

from session_migration import backup, storage, validation
from session_migration.snapshot import manifest_bytes
from session_migration.validation import validate_snapshot

pytestmark = pytest.mark.integration


@pytest.fixture
def snapshot_dir(valkey, tmp_path):
    pipe = valkey.client().pipeline()
    for i in range(3000):
        pipe.set(f"sess:{i:05d}", f"value-{i}", ex=3600)
    pipe.execute()
    result = backup(valkey.url, str(tmp_path / "root"), patterns=["sess:*"], part_rows=1000)
    return tmp_path / "root" / result.snapshot_id


@pytest.fixture(params=[1, 2], ids=["one-process", "two-processes"])
def workers(request):
    """Every check runs in this process and in two worker processes: same report."""
    return request.param


def check(folder, workers=None):
    fs, path = storage.resolve(str(folder))
    return validate_snapshot(fs, path, workers=workers)


def codes(report):
    return [p.code for p in report.problems]


def first_part(folder):
    return sorted((folder / "parts").iterdir())[0]


def rewrite_manifest(folder, change):
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_bytes(manifest_bytes(manifest))


def test_a_good_snapshot_is_valid(snapshot_dir, workers):
    report = check(snapshot_dir, workers)
    assert report.valid, report.problems
    assert (report.parts_checked, report.checksums_verified, report.rows_checked) == (3, 3, 3000)


def test_truncated_part(snapshot_dir, workers):
    part = first_part(snapshot_dir)
    part.write_bytes(part.read_bytes()[:-100])
    assert codes(check(snapshot_dir, workers)) == ["part-size"]


def test_flipped_byte(snapshot_dir, workers):
    part = first_part(snapshot_dir)
    data = bytearray(part.read_bytes())
    data[200] ^= 0x01
    part.write_bytes(bytes(data))
    report = check(snapshot_dir, workers)
    assert codes(report) == ["part-checksum"] and report.problems[0].part == part.name


def test_missing_part(snapshot_dir, workers):
    first_part(snapshot_dir).unlink()
    assert codes(check(snapshot_dir, workers)) == ["part-missing"]


def test_extra_unlisted_part(snapshot_dir, workers):
    shutil.copy(first_part(snapshot_dir), snapshot_dir / "parts" / "part-00099.parquet")
    assert codes(check(snapshot_dir, workers)) == ["part-unlisted"]


def test_edited_manifest(snapshot_dir, workers):
    manifest = json.loads((snapshot_dir / "manifest.json").read_text())
    manifest["totals"]["vanished"] = 5
    (snapshot_dir / "manifest.json").write_text(json.dumps(manifest))
    assert codes(check(snapshot_dir, workers)) == ["manifest-edited"]


def test_wrong_format_version(snapshot_dir, workers):
    rewrite_manifest(snapshot_dir, lambda m: m.update(format_version=3))
    assert codes(check(snapshot_dir, workers)) == ["format-version"]


def test_non_parquet_part(snapshot_dir, workers):
    import hashlib

    part = first_part(snapshot_dir)
    junk = b"this is not parquet" * 10
    part.write_bytes(junk)

    def relabel(m):
        m["parts"][0].update(bytes=len(junk), sha256=hashlib.sha256(junk).hexdigest())

    rewrite_manifest(snapshot_dir, relabel)
    assert codes(check(snapshot_dir, workers)) == ["part-not-parquet"]


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    assert codes(check(tmp_path / "empty")) == ["empty"]


def test_unparsable_manifest(snapshot_dir, workers):
    (snapshot_dir / "manifest.json").write_text("{not json")
    assert codes(check(snapshot_dir, workers)) == ["manifest-unparsable"]


def test_rows_outside_scope_and_duplicates(snapshot_dir, workers):
    # Declare a narrower scope and duplicate a part under another listed name.
    shutil.copy(first_part(snapshot_dir), snapshot_dir / "parts" / "part-00003.parquet")

    def change(m):
        m["scope"]["patterns"] = ["sess:01*"]
        m["parts"].append({**m["parts"][0], "name": "part-00003.parquet"})
        m["totals"]["keys"] += m["parts"][0]["rows"]

    rewrite_manifest(snapshot_dir, change)
    report = check(snapshot_dir, workers)
    assert codes(report) == ["duplicate-keys", "out-of-scope"]
    copied_rows = json.loads((snapshot_dir / "manifest.json").read_text())["parts"][0]["rows"]
    assert f"{copied_rows} key(s) appear more than once" in report.problems[0].message
    assert "sess:" in report.problems[1].message and "…#" in report.problems[1].message


def test_duplicates_across_parts_are_exact_even_when_digests_collide(snapshot_dir, monkeypatch):
    # Two copies of part 0: each of its keys is there three times, so two rows in three are duplicates.
    for name in ("part-00003.parquet", "part-00004.parquet"):
        shutil.copy(first_part(snapshot_dir), snapshot_dir / "parts" / name)

    def change(m):
        for name in ("part-00003.parquet", "part-00004.parquet"):
            m["parts"].append({**m["parts"][0], "name": name})
            m["totals"]["keys"] += m["parts"][0]["rows"]

    rewrite_manifest(snapshot_dir, change)
    rows = json.loads((snapshot_dir / "manifest.json").read_text())["parts"][0]["rows"]
    expected = f"{2 * rows} key(s) appear more than once"
    report = check(snapshot_dir, workers=1)
    assert codes(report) == ["duplicate-keys"] and expected in report.problems[0].message
    assert "in part-00003.parquet" in report.problems[0].message  # the copies are the duplicates, not the original

    # Every digest equal: every row is a candidate, and only the real duplicates are counted.
    monkeypatch.setattr(validation, "keyed_hashes", lambda values, hash_key: np.zeros(len(values), dtype=np.uint64))
    collided = check(snapshot_dir, workers=1)
    assert [p.message for p in collided.problems] == [p.message for p in report.problems]


def test_scope_uses_redis_glob_semantics(snapshot_dir, workers):
    # Redis reads '[!1]' as "'!' or '1'" (fnmatch: "not 1"), and '\\*' as a literal '*'.
    rewrite_manifest(snapshot_dir, lambda m: m["scope"].update(patterns=["sess:0[!1]*", "sess:\\*"]))
    report = check(snapshot_dir, workers)
    assert codes(report) == ["out-of-scope"]
    assert report.problems[0].message.startswith("2000 row(s)")  # only sess:01000-01999 are in scope
