"""Storage options given once reach everything a run touches: the snapshot, the target's
pre-image, the state file, the audit; with the environment pointing elsewhere, only the given
options can reach the S3 server (moto on loopback)."""

from __future__ import annotations

import json

import pytest

from helpers import state
from session_migration import storage
from session_migration.migration import MigrationFailed, migrate

pytestmark = pytest.mark.integration


@pytest.fixture
def only_given_options(s3_bucket, monkeypatch):
    """The environment's S3 settings point at a closed port: a filesystem opened without the
    run's own storage options cannot reach the bucket."""
    import os

    import s3fs

    endpoint = os.environ["AWS_ENDPOINT_URL"]
    options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": endpoint,
                                                                         "region_name": "us-east-1"}}
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "FSSPEC_S3_ENDPOINT_URL"):
        monkeypatch.setenv(name, "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "wrong")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    s3fs.S3FileSystem.clear_instance_cache()
    yield s3_bucket, options
    s3fs.S3FileSystem.clear_instance_cache()


def test_a_rolled_back_migration_reads_its_pre_image_with_the_given_options(valkey_server, redis_server,
                                                                              only_given_options):
    bucket, options = only_given_options
    src, dst = valkey_server.client(), redis_server.client()
    src.flushall()
    dst.flushall()
    for i in range(20):
        src.set(f"sess:{i}", f"new-{i}", ex=3600)
    dst.set("sess:3", b"the target's own", ex=7200)
    before = state(dst)

    def tamper(step, _info):
        if step == "restore":
            dst.set("sess:5", b"changed behind the migration's back")

    root = f"{bucket}/with-options"
    with pytest.raises(MigrationFailed) as failed:
        migrate(valkey_server.url, redis_server.url, root, storage_options=options, patterns=["sess:*"],
                progress=tamper)
    summary = failed.value.summary
    assert summary["rolled_back"] is True and summary["rollback"]["stage"] == "done"
    assert state(dst) == before  # the pre-image, read back from S3, put the target back exactly
    fs, path = storage.resolve(root, options)
    recorded = json.loads(fs.cat_file(f"{path}/migrations/{summary['migration_id']}.json"))
    assert recorded["step"] == "rolled_back" and fs.exists(f"{path}/{summary['pre_image_id']}/manifest.json")


def test_a_flow_opens_the_snapshot_filesystem_with_a_storage_block(prefect_harness, valkey, only_given_options):
    from flows import backup_sessions, validate_snapshot
    from tasks.blocks import SnapshotStorage

    bucket, options = only_given_options
    secret = {k: options.pop(k) for k in ("key", "secret")}
    SnapshotStorage(options=options, secret_options=secret).save("test-snapshot-storage", overwrite=True)
    for i in range(30):
        valkey.client().set(f"sess:{i}", "v", ex=3600)
    summary = backup_sessions(source=valkey.url, backup_path=f"{bucket}/by-block", patterns=["sess:*"],
                              storage_block="test-snapshot-storage")
    assert summary["keys"] == 30 and summary["snapshot"].startswith("s3://")
    report = validate_snapshot(snapshot=summary["snapshot"], storage_block="test-snapshot-storage")
    assert report["valid"] and report["rows_checked"] == 30


def test_backup_and_restore_from_python_with_the_given_options(valkey_server, redis_server, only_given_options):
    """The Python API (notebooks): backup and restore each take `storage_options`, and use them
    for every file they open (manifest, parts, the restore's checkpoint)."""
    from session_migration import backup
    from session_migration.restore import restore

    bucket, options = only_given_options
    src, dst = valkey_server.client(), redis_server.client()
    src.flushall()
    dst.flushall()
    for i in range(25):
        src.set(f"sess:{i}", f'{{"cookie": {{}}, "n": {i}}}', ex=3600)
    made = backup(valkey_server.url, f"{bucket}/python-api", storage_options=options, patterns=["sess:*"])
    assert made.counters.keys == 25 and made.url.startswith("s3://")
    restored = restore(made.url, redis_server.url, storage_options=options, patterns=["sess:*"])
    assert restored.counters.written == 25 and restored.checkpoint.startswith("s3://")
    assert state(dst) == state(src)
