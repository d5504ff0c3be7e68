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
    parts = len(json.loads((snapshot_dir / "manifest.json").read_text())["parts"])
    assert parts >= 2  # parts of at least part_rows (1,000) rows, each ending at a read
    assert (report.parts_checked, report.checksums_verified, report.rows_checked) == (parts, parts, 3000)


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


def _bomb_part(folder, understate_footer: bool = False, dictionary: bool = False):
    """Part 0 replaced by a decompression bomb listed in the manifest with its true sha256, size
    and rows: two rows whose 40 MiB values of one repeated byte compress to a few KB, or (with
    `dictionary`) 2,000 rows that all repeat one 1 MiB dictionary value. With `understate_footer`,
    the footer's per-column totals are rewritten to 1 MiB (Arrow reads such a file all the same)."""
    import hashlib
    import struct

    import pyarrow as pa
    import pyarrow.parquet as pq

    from session_migration.schema import RECORD_SCHEMA

    part = first_part(folder)
    row = pq.read_table(part).slice(0, 1).to_pylist()[0]
    count, value = (2_000, b"a" * (1 << 20)) if dictionary else (2, b"a" * (40 << 20))
    rows = {name: [row[name]] * count for name in RECORD_SCHEMA.names}
    rows.update(key=[b"sess:bomb-%d" % i for i in range(count)], value=[value] * count, size_bytes=[len(value)] * count)
    pq.write_table(pa.Table.from_pydict(rows, schema=RECORD_SCHEMA), part, compression="zstd",
                   use_dictionary=["value"] if dictionary else False)
    data = bytearray(part.read_bytes())
    if understate_footer:
        def varint(n):  # Thrift compact: zigzag, then 7 bits a byte
            n, out = n * 2, bytearray()
            while n >= 0x80:
                out.append(n & 0x7F | 0x80)
                n >>= 7
            return bytes(out + bytes([n]))

        value_chunk = pq.ParquetFile(part).metadata.row_group(0).column(RECORD_SCHEMA.names.index("value"))
        footer_length = struct.unpack("<I", data[-8:-4])[0]
        footer = bytes(data[-8 - footer_length:-8])
        true_total, small = varint(value_chunk.total_uncompressed_size), varint(1 << 20)
        assert len(true_total) == len(small) and footer.count(true_total) == 1
        data[-8 - footer_length:-8] = footer.replace(true_total, small)
        part.write_bytes(bytes(data))
        value_chunk = pq.ParquetFile(part).metadata.row_group(0).column(RECORD_SCHEMA.names.index("value"))
        assert value_chunk.total_uncompressed_size == 1 << 20  # the footer now understates the pages
    assert len(data) < 1 << 20

    def relabel(m):
        m["parts"][0].update(bytes=len(data), sha256=hashlib.sha256(bytes(data)).hexdigest(), rows=count)
        m["totals"]["keys"] = sum(p["rows"] for p in m["parts"])

    rewrite_manifest(folder, relabel)
    return part


@pytest.mark.parametrize("understate_footer, dictionary", [(False, False), (True, False), (False, True)],
                         ids=["pages", "pages-understating-footer", "dictionary"])
def test_a_part_that_inflates_like_a_bomb_is_refused_unread(snapshot_dir, understate_footer, dictionary):
    part = _bomb_part(snapshot_dir, understate_footer, dictionary)
    report = check(snapshot_dir)
    assert codes(report) == ["part-inflates"] and report.problems[0].part == part.name
    assert "column value of row group 0 inflates from" in report.problems[0].message
    assert "beyond 1,024 times its size" in report.problems[0].message


@pytest.mark.parametrize("scheme", ["file", "s3"])
def test_readers_refuse_a_bomb_before_decoding_it(snapshot_dir, scheme, request):
    """On an object store a part is fetched once for its sha256, footer and pages (from memory)."""
    from session_migration import open_snapshot
    from session_migration.errors import SnapshotInvalid

    part = _bomb_part(snapshot_dir, understate_footer=True)
    url = str(snapshot_dir)
    if scheme == "s3":
        url = f"{request.getfixturevalue('s3_bucket')}/root/{snapshot_dir.name}"
        fs, path = storage.resolve(url)
        fs.put(str(snapshot_dir), path, recursive=True)
        report = validate_snapshot(fs, path)
        parts = len(json.loads((snapshot_dir / "manifest.json").read_text())["parts"])
        assert codes(report) == ["part-inflates"] and report.checksums_verified == parts
    with pytest.raises(SnapshotInvalid, match=f"Part {part.name} is refused unread: its column value of row group 0"):
        open_snapshot(url)
