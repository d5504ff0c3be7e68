"""Whoever can write to the backup storage must not steer a restore: attacks on snapshots.

Each test plays an attacker who can write to the snapshot storage but does not hold the
signing key: parts edited and every checksum recomputed, part names that leave `parts/`,
malformed manifests, checkpoints that are not the run's own.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from session_migration import backup, open_snapshot, storage
from session_migration.errors import SnapshotInvalid
from session_migration.restore import restore
from session_migration.schema import RECORD_SCHEMA
from session_migration.snapshot import manifest_bytes
from session_migration.validation import validate_snapshot

pytestmark = pytest.mark.integration

KEY_ENV = "SESSION_MIGRATION_SIGNING_KEY"
KEY = "integration-test-signing-key-0123456789abcdef"


@pytest.fixture(autouse=True)
def no_key(monkeypatch):
    """No key unless a test sets one: the environment of the machine must not decide."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv("SESSION_MIGRATION_SIGNING_KEYS", raising=False)


def seed(r, n=50):
    pipe = r.pipeline()
    for i in range(n):
        pipe.set(f"sess:{i:03d}", f"session {i}", ex=3600)
    pipe.execute()


def url(server, db):
    return server.url.rsplit("/", 1)[0] + f"/{db}"


def dumps(r):
    """Every key's DUMP payload and PEXPIRETIME: byte for byte what the server holds."""
    return {k: (r.dump(k), r.execute_command("PEXPIRETIME", k)) for k in r.scan_iter(count=1000)}


def rewrite(folder: Path, change) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_bytes(manifest_bytes(manifest))


def add_rows_recomputed(folder: Path, rows: dict[bytes, bytes], *, keep_signature: bool) -> None:
    """Add `rows` to the first part, widen the scope to `*` and recompute every size, sha256,
    row count and manifest_sha256: all an attacker with write access to the storage can do."""
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = manifest["parts"][0]
    path = folder / "parts" / entry["name"]
    extra = pa.Table.from_pylist([{"key": k, "type": "string", "value": v, "size_bytes": len(v), "db": 0}
                                  for k, v in rows.items()], schema=RECORD_SCHEMA)
    pq.write_table(pa.concat_tables([pq.read_table(path), extra]), path)
    data = path.read_bytes()
    entry.update(rows=entry["rows"] + len(rows), bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    manifest["totals"]["keys"] += len(rows)
    manifest["scope"]["patterns"] = ["*"]
    if not keep_signature:
        manifest.pop("signature", None)
    (folder / "manifest.json").write_bytes(manifest_bytes(manifest))


def codes(report):
    return [p.code for p in report.problems]


# -- a part edited, every checksum recomputed ---------------------------------------------------


@pytest.mark.parametrize("signature", ["kept", "stripped"])
def test_re_checksummed_tampered_part_is_refused_with_a_key(valkey, tmp_path, monkeypatch, signature):
    monkeypatch.setenv(KEY_ENV, KEY)
    seed(valkey.client())
    result = backup(valkey.url, str(tmp_path), patterns=["sess:*"])
    folder = tmp_path / result.snapshot_id
    add_rows_recomputed(folder, {b"app:config": b"attacker's config"}, keep_signature=signature == "kept")
    target = valkey.client(1)
    target.set("app:config", b"the target's own config")
    before = dumps(target)

    with pytest.raises(SnapshotInvalid, match="sign"):
        restore(result.url, url(valkey, 1))
    assert dumps(target) == before  # nothing written, not even the sessions

    fs, path = storage.resolve(result.url)
    report = validate_snapshot(fs, path).as_dict()
    expected = "signature-invalid" if signature == "kept" else "unsigned"
    assert [p["code"] for p in report["problems"]] == [expected]
    assert (report["signed"], report["signature"]) == ((True, "invalid") if signature == "kept" else (False, "unchecked"))


def test_re_checksummed_tampered_part_without_a_key_writes_only_session_patterns(valkey, tmp_path):
    seed(valkey.client())
    result = backup(valkey.url, str(tmp_path), patterns=["sess:*"])
    add_rows_recomputed(tmp_path / result.snapshot_id, {b"app:config": b"attacker's config"}, keep_signature=False)
    target = valkey.client(1)
    target.set("app:config", b"the target's own config")

    plan = restore(result.url, url(valkey, 1), dry_run=True).summary()
    assert plan["outside_default_patterns"] == 1 and plan["would_create"] == 50
    assert plan["scope_from"] == "default session patterns"
    done = restore(result.url, url(valkey, 1))
    assert target.get("app:config") == b"the target's own config"
    assert done.counters.written == 50 and done.counters.outside_default_patterns == 1
    # The operator can still restore the row, by asking for it by pattern.
    restore(result.url, url(valkey, 1), patterns=["app:*"])
    assert target.get("app:config") == b"attacker's config"


# -- part names that leave parts/ ----------------------------------------------------------------


def _two_snapshots(valkey, root: str):
    r = valkey.client()
    seed(r, 10)
    a = backup(valkey.url, root, patterns=["sess:*"], snapshot_id="20260101T000000Z-00000a")
    r.flushall()
    r.set("sess:from-b", b"a key of another snapshot")
    b = backup(valkey.url, root, patterns=["sess:*"], snapshot_id="20260101T000000Z-00000b")
    return a, b


@pytest.mark.parametrize("how", ["dotdot", "absolute"])
@pytest.mark.parametrize("scheme", ["file", "s3"])
def test_part_names_outside_parts_are_refused(valkey, tmp_path, request, scheme, how):
    root = str(tmp_path / "root") if scheme == "file" else f"{request.getfixturevalue('s3_bucket')}/confined-{how}"
    a, b = _two_snapshots(valkey, root)
    fs, a_path = storage.resolve(a.url)
    _, b_path = storage.resolve(b.url)
    b_part = json.loads(fs.cat_file(f"{b_path}/manifest.json"))["parts"][0]
    name = f"../../{b.snapshot_id}/parts/{b_part['name']}" if how == "dotdot" else f"/{b_path.lstrip('/')}/parts/{b_part['name']}"
    manifest = json.loads(fs.cat_file(f"{a_path}/manifest.json"))
    for part in manifest["parts"]:  # the attacker removes A's own parts, so nothing else is amiss
        fs.rm_file(f"{a_path}/parts/{part['name']}")
    manifest["parts"] = [{**b_part, "name": name}]
    manifest["totals"]["keys"] = b_part["rows"]
    fs.pipe_file(f"{a_path}/manifest.json", manifest_bytes(manifest))

    report = validate_snapshot(fs, a_path)
    assert codes(report) == ["manifest-schema"] and "parts[0].name" in report.problems[0].message
    with pytest.raises(SnapshotInvalid, match="part-NNNNN"):
        open_snapshot(a.url)
    with pytest.raises(SnapshotInvalid):
        restore(a.url, url(valkey, 1))
    assert valkey.client(1).dbsize() == 0


def test_a_part_name_never_leaks_the_size_of_another_file(valkey, tmp_path):
    seed(valkey.client(), 10)
    result = backup(valkey.url, str(tmp_path / "root"), patterns=["sess:*"])
    secret = tmp_path / "secret.key"
    secret.write_bytes(b"s" * 12_345)
    rewrite(tmp_path / "root" / result.snapshot_id,
            lambda m: m["parts"][0].update(name=str(secret)))
    fs, path = storage.resolve(result.url)
    report = validate_snapshot(fs, path)
    assert codes(report) == ["manifest-schema"]
    assert "12345" not in json.dumps(report.as_dict()) and "secret.key" not in json.dumps(report.as_dict())


# -- malformed manifests: a report, never a crash ---------------------------------------------


def _naive(m):
    m["finished_at"] = m["finished_at"].split("+")[0]


MALFORMED = {
    "rows-of-the-wrong-type": lambda m: m["parts"][0].update(rows=str(m["parts"][0]["rows"])),
    "source-missing": lambda m: m.pop("source"),
    "naive-finished-at": _naive,
    "scope-not-an-object": lambda m: m.update(scope="sess:*"),
    "parts-not-a-list": lambda m: m.update(parts=m["parts"][0]),
    "totals-missing": lambda m: m.pop("totals"),
    "negative-bytes": lambda m: m["parts"][0].update(bytes=-1),
    "too-many-patterns": lambda m: m["scope"].update(patterns=[f"p{i}:*" for i in range(300)]),
    "snapshot-id-with-a-slash": lambda m: m.update(snapshot_id="../other"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_manifests_give_a_report_not_a_crash(valkey, tmp_path, case):
    from session_migration.retention import RetentionOptions, prune_snapshots

    seed(valkey.client(), 10)
    result = backup(valkey.url, str(tmp_path / "root"), patterns=["sess:*"])
    rewrite(tmp_path / "root" / result.snapshot_id, MALFORMED[case])
    fs, path = storage.resolve(result.url)

    report = validate_snapshot(fs, path)
    assert codes(report) == ["manifest-schema"], report.problems
    with pytest.raises(SnapshotInvalid, match="shape"):
        open_snapshot(result.url)
    with pytest.raises(SnapshotInvalid):
        restore(result.url, url(valkey, 1))
    plan = prune_snapshots(fs, str(tmp_path / "root"), RetentionOptions(keep_last=1, dry_run=False))
    assert [s["name"] for s in plan.suspicious] == [repr(result.snapshot_id)] and not plan.delete
    assert (tmp_path / "root" / result.snapshot_id / "manifest.json").exists()


def test_a_manifest_nested_too_deeply_is_unparsable(valkey, tmp_path):
    seed(valkey.client(), 1)
    result = backup(valkey.url, str(tmp_path), patterns=["sess:*"])
    (tmp_path / result.snapshot_id / "manifest.json").write_text("[" * 200_000)
    fs, path = storage.resolve(result.url)
    assert codes(validate_snapshot(fs, path)) == ["manifest-unparsable"]


# -- checkpoints that are not the run's own ------------------------------------------------------


def test_a_restore_checkpoint_that_is_not_this_restores_is_refused(valkey, tmp_path):
    seed(valkey.client(), 10)
    result = backup(valkey.url, str(tmp_path), patterns=["sess:*"])
    restore(result.url, url(valkey, 1))
    [ckpt] = (tmp_path / result.snapshot_id / "restores").iterdir()
    data = json.loads(ckpt.read_text())
    data.update(finished_at=None, options={**data["options"], "patterns": ["*"]})
    ckpt.write_text(json.dumps(data))
    with pytest.raises(SnapshotInvalid, match="does not belong"):
        restore(result.url, url(valkey, 1))


def test_with_a_key_an_unsigned_restore_checkpoint_is_refused(valkey, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    seed(valkey.client(), 10)
    result = backup(valkey.url, str(tmp_path), patterns=["sess:*"])
    restore(result.url, url(valkey, 1))
    [ckpt] = (tmp_path / result.snapshot_id / "restores").iterdir()
    data = json.loads(ckpt.read_text())
    assert data.pop("signature")["key_id"]
    data["finished_at"] = None
    ckpt.write_text(json.dumps(data))
    with pytest.raises(SnapshotInvalid, match="not signed"):
        restore(result.url, url(valkey, 1))
