"""An audit of keys and values written by an attacker (issue 14): no whole session id, no raw
HTML or terminal escape, no spreadsheet formula and no unbounded "by reason" table in any of
the four report files. Real Valkey, real backup, real report files."""

from __future__ import annotations

import csv
import io
import json
import secrets

import pytest

from session_migration import backup, storage
from session_migration.audit import open_for_audit, write_audit_report
from session_migration.stats import compute_stats
from session_migration.validation import validate_snapshot

pytestmark = pytest.mark.integration

IMG = "<img src=x onerror=alert(1)>"
ESCAPES = ("\x1b[2J", "\x1b]0;owned\x07", "\x9b31m", "\r\n# fake heading")
PATTERNS = ["sess:*", "PHPREDIS_SESSION:*", "*django.contrib.sessions.cache*", "=*", "@*", "-*", "evil*", IMG + "*", "\x1b[2J*"]


def _pickle_calling(module: str) -> bytes:
    """A protocol-4 pickle that would call `<module>.system` (never run: the walker only names it)."""
    return b"\x80\x04c" + module.encode() + b"\nsystem\n)R."


@pytest.fixture(scope="module")
def hostile(valkey_server, tmp_path_factory):
    """Seeded, backed up and audited once for the module."""
    valkey, tmp_path = valkey_server, tmp_path_factory.mktemp("hostile")
    client = valkey.client()
    client.flushall()
    ids = [secrets.token_hex(16) for _ in range(5)]
    pipe = client.pipeline(transaction=False)
    for ident in ids:  # express's layout is sess:<id>; whatever follows the id must not show it
        pipe.set(f"sess:{ident}:csrf", b"{not json", px=3_600_000)
        pipe.set(f"sess:{ident}:csrf:{'x' * 200}", b"x" * 5000, px=3_600_000)  # among the largest keys
    for i, escape in enumerate(ESCAPES):
        pipe.set(f"sess:{escape}{i}", b"{broken", px=3_600_000)
    pipe.set(f"{IMG}:1:django.contrib.sessions.cache{ids[0]}", _pickle_calling(IMG), px=3_600_000)
    pipe.set(f"evil:{IMG}", _pickle_calling("\x1b[2J"), px=3_600_000)
    for key in ("=1+2|cmd-and-more-text", "@SUM(A1)|plus-more-text", "-2+3|cmd"):  # unknown layout: the text up to the first separator shows
        pipe.set(key, b"plain", px=3_600_000)
    for i in range(1000):  # PHP sessions corrupt at 1,000 different offsets
        pipe.set(f"PHPREDIS_SESSION:{secrets.token_hex(13)}", b'user|s:5:"abcde";' * i + b"x|Q:1;", px=3_600_000)
    pipe.execute()
    result = backup(valkey.url, str(tmp_path / "snapshots"), patterns=PATTERNS)
    fs, path = storage.resolve(result.url)
    validation = validate_snapshot(fs, path)
    snapshot = open_for_audit(fs, path, validation)
    stats = compute_stats(snapshot)
    out_fs, out_dir = storage.resolve(str(tmp_path / "report"))
    files = write_audit_report(snapshot, validation, stats, out_fs, out_dir)
    texts = {kind: (tmp_path / "report" / url.rsplit("/", 1)[-1]).read_text() for kind, url in files.items()}
    client.flushall()
    return {"ids": ids, "texts": texts, "stats": stats}


def test_no_session_id_appears_whole_in_any_report_file(hostile):
    for kind, text in hostile["texts"].items():
        for ident in hostile["ids"]:
            assert ident[:8] not in text, (kind, ident)  # 4 characters of an id at most, never 8
            assert f"sess:{ident}:csrf" not in text
    keys = {f["redacted_key"] for f in hostile["stats"].findings} | {k["redacted_key"] for k in hostile["stats"].largest_keys}
    shown = [k for k in keys if k.startswith("sess:") and ":csrf" in k]
    assert not shown, shown  # what follows the id is not shown either


def test_no_raw_html_or_terminal_escape_in_any_report_file(hostile):
    texts = hostile["texts"]
    for kind, text in texts.items():
        for char in ("\x1b", "\x07", "\x9b", "\r"):
            assert char not in text, (kind, repr(char))
    assert "<img" not in texts["md"] and "<img" not in texts["html"]
    assert "&lt;img src=x onerror=alert\\(1\\)&gt;" in texts["md"]  # the Django KEY_PREFIX, shown inert
    assert "&lt;img src=x onerror=alert(1)&gt;" in texts["html"]
    assert "\\x1b[2J" in texts["json"]  # escapes are shown, as text
    assert "\n# fake heading" not in texts["md"]


def test_findings_csv_cells_never_start_a_formula(hostile):
    rows = list(csv.reader(io.StringIO(hostile["texts"]["csv"])))
    assert rows[0] == ["redacted_key", "store", "status", "reason", "detail"]
    cells = [cell for row in rows[1:] for cell in row]
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@"))]
    assert {"'=1+2|", "'@SUM(A1)|", "'-"} <= {c.split("…")[0] for c in cells}


def test_by_reason_stays_a_short_table(hostile):
    report = json.loads(hostile["texts"]["json"])
    by_reason = report["findings"]["by_reason"]
    assert sum(r["count"] for r in by_reason) == report["findings"]["total"] >= 1000
    assert len(by_reason) <= 8, by_reason
    details = {f["detail"] for f in hostile["stats"].findings}
    assert len(details) > 100 and max(map(len, details)) <= 120  # the differences are kept, apart and capped
