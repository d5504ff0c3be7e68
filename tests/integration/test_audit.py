"""Audit statistics and report files on a snapshot of known, seeded sessions (real Valkey)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import re
import secrets
import shutil
import time
import xml.dom.minidom
from collections import Counter

import pytest

from session_migration import backup, open_snapshot, storage
from session_migration.audit import open_for_audit, write_audit_report
from session_migration.snapshot import manifest_bytes
from session_migration.stats import compute_stats
from session_migration.validation import validate_snapshot

pytestmark = pytest.mark.integration

PASSWORD = "audit-pw-7f41c9"
MARKER = "alice-secret-marker"  # inside every valid session payload: must never reach a report
HOUR, DAY = 3_600_000, 86_400_000
LATER = 20 * 60_000  # stats are judged 20 minutes after seeding: 10-minute sessions have expired by then
PATTERNS = ["sess:*", "session:*", "spring:session:*", "cache:*"]

# (label, count): store -> status -> count expected from the seed below.
EXPECTED_BY_STORE = {
    "express": {"valid": 40, "expired": 7, "stale": 0, "corrupt": 5, "unknown": 0},
    "flask": {"valid": 10, "expired": 0, "stale": 4, "corrupt": 0, "unknown": 0},
    "spring": {"valid": 0, "expired": 3, "stale": 0, "corrupt": 0, "unknown": 0},
    "unknown": {"valid": 0, "expired": 0, "stale": 0, "corrupt": 0, "unknown": 2},
}


def _ident() -> str:
    # Hex only: redact_key shows the id up to its last '-' or '_' (see the report), which
    # would make "the full key never appears" depend on luck rather than on this code.
    return secrets.token_hex(16)


def _express(user: str, expires_ms: int) -> bytes:
    expires = dt.datetime.fromtimestamp(expires_ms / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return json.dumps({"cookie": {"originalMaxAge": 10_800_000, "expires": expires, "httpOnly": True, "path": "/"},
                       "user": user}).encode()


def seed(client, t0: int) -> dict:
    """Write the known data set; returns the seeded keys and sizes for the assertions."""
    keys, sizes = [], []
    pipe = client.pipeline(transaction=False)

    def put(key: str, value: bytes, px: int | None):
        pipe.set(key, value, px=px)
        keys.append(key)
        sizes.append(len(value))

    for i in range(40):  # valid express, 3 h left -> 1-6h bucket
        put(f"sess:{_ident()}", _express(f"{MARKER}-{i}", t0 + 3 * HOUR), 3 * HOUR)
    for i in range(7):  # express whose Redis TTL (10 min) has passed at t0 + 20 min -> expired
        put(f"sess:{_ident()}", _express(f"{MARKER}-x{i}", t0 + 600_000), 600_000)
    for _ in range(5):  # not JSON -> corrupt, 2 days left -> 1-7d
        put(f"sess:{_ident()}", b"{not json at all", 2 * DAY)
    for i in range(10):  # Flask JSON sessions, 12 h left -> 6-24h
        put(f"session:{_ident()}", json.dumps({"user": f"{MARKER}-f{i}"}).encode(), 12 * HOUR)
    for i in range(4):  # Flask always sets a TTL: none -> stale, no TTL bucket
        put(f"session:{_ident()}", json.dumps({"user": f"{MARKER}-s{i}"}).encode(), None)
    for _ in range(2):  # not a session store -> unknown, 50 min -> <1h at t0 + 20 min
        put(f"cache:{_ident()}", b"plain cache entry", 50 * 60_000)
    for _ in range(3):  # Spring hash idle for 2 h with a 30 min limit -> expired by payload, 8 days TTL -> >7d
        key = f"spring:session:sessions:{_ident()}"
        fields = {"creationTime": str(t0 - 3 * HOUR), "lastAccessedTime": str(t0 - 2 * HOUR),
                  "maxInactiveInterval": "1800", "sessionAttr:user": MARKER}
        pipe.hset(key, mapping=fields)
        pipe.pexpire(key, 8 * DAY)
        keys.append(key)
        sizes.append(sum(len(k) + len(v) for k, v in fields.items()))
    pipe.execute()
    return {"keys": keys, "sizes": sizes}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """One password-protected Valkey, seeded once, backed up into several parts."""
    from servers import start_server

    server = start_server("valkey", password=PASSWORD)
    try:
        t0 = int(time.time() * 1000)
        data = seed(server.client(), t0)
        root = tmp_path_factory.mktemp("audit")
        result = backup(server.url, str(root / "snapshots"), patterns=PATTERNS, part_rows=25)
    finally:
        server.stop()
    folder = root / "snapshots" / result.snapshot_id
    parts = json.loads((folder / "manifest.json").read_text())["parts"]
    assert len(parts) > 1  # so a damaged part can be left out of the statistics
    return {**data, "t0": t0, "folder": folder, "url": result.url, "root": root, "parts": parts}


def _stats(folder, **kwargs):
    snap = open_snapshot(str(folder))
    return compute_stats(snap, **kwargs)


def _audit(folder, out, now_ms):
    fs, path = storage.resolve(str(folder))
    validation = validate_snapshot(fs, path)
    snap = open_for_audit(fs, path, validation)
    stats = compute_stats(snap, now_ms=now_ms) if snap else None
    out_fs, out_dir = storage.resolve(str(out))
    return validation, stats, write_audit_report(snap, validation, stats, out_fs, out_dir)


def test_counts_by_store_type_and_status(seeded):
    stats = _stats(seeded["folder"], now_ms=seeded["t0"] + LATER)
    assert stats.keys == 71 and stats.parts_read == [p["name"] for p in seeded["parts"]]
    assert stats.by_store == EXPECTED_BY_STORE
    assert stats.by_status == {"valid": 50, "expired": 10, "stale": 4, "corrupt": 5, "unknown": 2}
    assert stats.by_type == {"hash": 3, "string": 68}
    assert stats.findings_total == 21 and not stats.findings_truncated
    reasons = {(r["store"], r["status"], r["reason"]): r["count"] for r in stats.reasons}
    assert reasons[("express", "expired", "Redis TTL has passed")] == 7
    assert reasons[("flask", "stale", "no TTL although flask always sets one")] == 4
    assert sum(reasons.values()) == 21
    json.dumps(stats.as_dict())  # JSON-safe as it is


def test_ttl_buckets_and_expiry_windows(seeded):
    stats = _stats(seeded["folder"], now_ms=seeded["t0"] + LATER)
    assert stats.ttl_buckets == {"TTL passed": 7, "<1h": 2, "1-6h": 40, "6-24h": 10, "1-7d": 5, ">7d": 3, "no TTL": 4}
    assert stats.without_ttl == 4
    assert stats.expiring_within_1h == 2  # the cache keys
    assert stats.expiring_within_24h == 2 + 40 + 10
    # Judged at seeding time instead, nothing has expired yet.
    early = _stats(seeded["folder"], now_ms=seeded["t0"])
    assert early.ttl_buckets["TTL passed"] == 0 and early.by_status["expired"] == 3  # only the idle Spring hashes


def test_sizes_percentiles_and_largest_keys(seeded):
    stats = _stats(seeded["folder"], now_ms=seeded["t0"] + LATER)
    sizes = sorted(seeded["sizes"])
    nearest_rank = {f"p{p}": sizes[math.ceil(p / 100 * len(sizes)) - 1] for p in (50, 90, 99)}
    assert stats.size_percentiles == {**nearest_rank, "max": sizes[-1]}
    assert stats.bytes == sum(sizes) and sum(stats.size_buckets.values()) == 71
    assert [k["size_bytes"] for k in stats.largest_keys] == sorted(sizes, reverse=True)[:10]
    assert all("…#" in k["redacted_key"] for k in stats.largest_keys)
    assert {k["store"] for k in stats.largest_keys} <= {"express", "flask", "spring", "unknown"}


def test_findings_are_capped_but_counted(seeded):
    stats = _stats(seeded["folder"], now_ms=seeded["t0"] + LATER, max_findings=5)
    assert len(stats.findings) == 5 and stats.findings_total == 21 and stats.findings_truncated
    assert sum(r["count"] for r in stats.reasons) == 21  # the summary still covers all of them


def test_report_files_hold_no_key_value_or_password(seeded, tmp_path):
    validation, stats, files = _audit(seeded["folder"], tmp_path / "report", seeded["t0"] + LATER)
    assert validation.valid
    assert set(files) == {"json", "md", "html", "csv"}
    texts = {kind: (tmp_path / "report" / url.rsplit("/", 1)[-1]).read_text() for kind, url in files.items()}
    for kind, text in texts.items():
        assert PASSWORD not in text, kind
        assert MARKER not in text, kind
        assert "not json at all" not in text, kind
        for key in seeded["keys"]:
            ident = key.rsplit(":", 1)[-1]
            assert key not in text and ident not in text, (kind, key)

    report = json.loads(texts["json"])
    assert report["valid"] is True and report["by_store"] == EXPECTED_BY_STORE
    assert report["keys"] == 71 and report["ttl_buckets"]["TTL passed"] == 7
    assert report["snapshot"]["source"]["url"].startswith("redis://127.0.0.1:")
    assert [c["control"] for c in report["controls"]] == ["CP-9", "CP-10", "AC-3", "SI-10"]
    assert all(c["check"] == "passed" for c in report["controls"])
    evidence = {c["control"]: {e["item"]: e["value"] for e in c["evidence"]} for c in report["controls"]}
    n = len(seeded["parts"])
    assert evidence["CP-10"]["part sha256 verified"] == f"{n} of {n}"
    assert evidence["AC-3"]["rows outside scope"] == 0
    assert evidence["SI-10"]["corrupt payloads found"] == 5

    rows = list(csv.DictReader(io.StringIO(texts["csv"])))
    assert len(rows) == 21 and set(rows[0]) == {"redacted_key", "store", "status", "reason", "detail"}
    assert Counter((r["store"], r["status"]) for r in rows) == {
        ("express", "expired"): 7, ("express", "corrupt"): 5, ("flask", "stale"): 4,
        ("spring", "expired"): 3, ("unknown", "unknown"): 2}
    assert all(re.fullmatch(r".+…#[0-9a-f]{8}", r["redacted_key"]) for r in rows)

    assert "| express | 40 | 7 | 0 | 5 | 0 | 52 |" in texts["md"]
    assert "Control evidence" in texts["md"] and "SI-10" in texts["md"]


def test_html_is_self_contained(seeded, tmp_path):
    _, _, files = _audit(seeded["folder"], tmp_path, seeded["t0"] + LATER)
    html = (tmp_path / "report.html").read_text()
    assert "<style>" in html and "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=|<link|@import|url\(""", html, re.I)
    svgs = re.findall(r"<svg.*?</svg>", html, re.S)
    assert len(svgs) == 3  # TTL histogram, size distribution, status by store
    for svg in svgs:
        xml.dom.minidom.parseString(svg)  # well-formed, as IPython's SVG display needs
    assert "Control evidence" in html and "CP-9" in html and "AC-3" in html


def test_report_to_memory_filesystem(seeded):
    _, _, files = _audit(seeded["folder"], "memory://audit-test/out", seeded["t0"] + LATER)
    assert files["json"].startswith("memory://") and files["json"].endswith("/audit-test/out/report.json")
    fs, _ = storage.resolve("memory://audit-test")
    assert json.loads(fs.cat_file("/audit-test/out/report.json"))["by_store"] == EXPECTED_BY_STORE
    fs.rm("/audit-test", recursive=True)


def test_damaged_part_is_reported_and_left_out(seeded, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(seeded["folder"], folder)
    part = sorted((folder / "parts").iterdir())[1]
    data = bytearray(part.read_bytes())
    data[100] ^= 0xFF
    part.write_bytes(bytes(data))
    validation, stats, _ = _audit(folder, tmp_path / "out", seeded["t0"] + LATER)
    assert not validation.valid and [p.code for p in validation.problems] == ["part-checksum"]
    rows = next(p["rows"] for p in seeded["parts"] if p["name"] == part.name)
    assert stats.keys == 71 - rows and part.name not in stats.parts_read
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["valid"] is False and report["snapshot"]["parts_skipped"] == [part.name]
    checks = {c["control"]: c["check"] for c in report["controls"]}
    assert checks["CP-10"] == "failed" and checks["CP-9"] == "passed"


def test_unusable_manifest_still_gets_a_report(seeded, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(seeded["folder"], folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["totals"]["keys"] = 1
    (folder / "manifest.json").write_text(json.dumps(manifest))  # checksum no longer matches
    validation, stats, _ = _audit(folder, tmp_path / "out", seeded["t0"])
    assert stats is None and [p.code for p in validation.problems] == ["manifest-edited"]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["valid"] is False and report["stats_available"] is False and report["by_store"] == {}
    assert (tmp_path / "out" / "findings.csv").read_text() == "redacted_key,store,status,reason,detail\n"
    assert "not computed" in (tmp_path / "out" / "report.md").read_text()


def test_rewritten_manifest_with_matching_checksum_is_audited(seeded, tmp_path):
    """A consistent (re-checksummed) manifest passes; its totals are what the report shows."""
    folder = tmp_path / "copy"
    shutil.copytree(seeded["folder"], folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["totals"]["vanished"] = 3
    (folder / "manifest.json").write_bytes(manifest_bytes(manifest))
    _, stats, _ = _audit(folder, tmp_path / "out", seeded["t0"])
    assert stats.vanished == 3


def test_a_password_in_a_manifest_url_is_not_copied():
    from session_migration.audit import password_free

    assert password_free("redis://app:s3cret@cache:6379/0") == "redis://app@cache:6379/0"
    assert password_free("rediss://:s3cret@cache/1?password_env=X") == "rediss://cache/1?password_env=X"
    assert password_free("redis://cache:6379/0") == "redis://cache:6379/0"


def test_malicious_pickles_are_corrupt_in_the_audit_and_never_run(valkey, tmp_path):
    """Django and Flask sessions whose pickles would run code on load go through a backup (which
    detects their store) and an audit (which judges them): nothing of them runs, each is corrupt,
    and the report names the refused callable without the payload."""
    from unit.session_cases import evil_pickles

    marker = tmp_path / "pwned"
    pickles = evil_pickles(marker)
    r = valkey.client()
    for payload, _ in pickles.values():
        r.set(f":1:django.contrib.sessions.cache{_ident()}", payload, px=HOUR)
        r.set(f"session:{_ident()}", payload, px=HOUR)
    result = backup(valkey.url, str(tmp_path / "snapshots"))
    assert result.counters.keys == 8 and result.counters.by_store == {"django": 4, "flask": 4}
    validation, stats, files = _audit(tmp_path / "snapshots" / result.snapshot_id, tmp_path / "report",
                                      int(time.time() * 1000))
    assert not marker.exists()
    assert validation.valid
    assert stats.by_store == {store: {"valid": 0, "expired": 0, "stale": 0, "corrupt": 4, "unknown": 0}
                              for store in ("django", "flask")}
    rows = list(csv.DictReader(io.StringIO((tmp_path / "report" / "findings.csv").read_text())))
    assert len(rows) == 8 and {row["status"] for row in rows} == {"corrupt"}
    assert all("not executed" in row["reason"] for row in rows)
    assert Counter(name for row in rows for name in ("system", "builtins.open", "builtins.exec")
                   if name in row["detail"]) == {"system": 4, "builtins.open": 2, "builtins.exec": 2}
    assert str(marker) not in "".join((tmp_path / "report" / f).read_text() for f in ("report.md", "findings.csv"))
