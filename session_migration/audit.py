"""The audit report: validation + statistics + control evidence, written as four files.

    validation = validate_snapshot(fs, path)
    snapshot = open_for_audit(fs, path, validation)          # None when the manifest is unusable
    stats = compute_stats(snapshot) if snapshot else None
    files = write_audit_report(snapshot, validation, stats, out_fs, out_dir)

Files: `report.json` (every number), `report.md`, `report.html` (self-contained: inline CSS
and SVG) and `findings.csv` (one row per non-valid key). All four come from one report dict
(`build_report`), so they always agree. Keys appear only through `redact_key`; no value,
no session content and no password is ever copied into a report.

Everything in a report that came from outside (manifest fields, redacted keys, parser
details, validation messages) is inert: control characters are escaped in every file
(`safe_text`) and strings are capped at `MAX_TEXT` characters; report.md escapes Markdown and
HTML (`markdown_escape`), report.html escapes HTML, and a findings.csv cell that a spreadsheet
would read as a formula (starting with `= + - @`) is prefixed with `'`.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import fsspec

from . import __version__, storage
from .audit_render import HTML_FINDINGS, render_html, render_markdown, summary_markdown
from .charts import STATUS_COLORS, bar_chart, stacked_bars
from .endpoints import SECRET_OPTIONS
from .errors import SessionMigrationError
from .redaction import safe_text
from .snapshot import Snapshot, open_snapshot
from .stats import STATUSES, SnapshotStats
from .validation import ValidationReport, validate_snapshot

__all__ = ["FILES", "build_report", "charts", "control_evidence", "open_for_audit", "password_free", "read_report",
           "render_html", "render_markdown", "summary_markdown", "validate_snapshot", "write_audit_report"]

REPORT_KIND = "session-audit"
REPORT_VERSION = 1
FILES = {"json": "report.json", "md": "report.md", "html": "report.html", "csv": "findings.csv"}
FINDING_COLUMNS = ("redacted_key", "store", "status", "reason", "detail")
MAX_TEXT = 4096  # characters of any one string in a report
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

# Validation problems that leave no trustworthy manifest: nothing can be counted then.
_MANIFEST_PROBLEMS = frozenset({"not-found", "unfinished", "empty", "not-a-snapshot", "manifest-too-large",
                                "manifest-unparsable", "manifest-format", "format-version", "manifest-schema",
                                "manifest-edited", "unsigned", "signature-invalid"})
# validation.Problem carries no count, so the out-of-scope count is read from its message.
_OUT_OF_SCOPE_COUNT = re.compile(r"^(\d+) row")

NON_EXECUTING_PARSERS = (
    "Session payloads are parsed, never executed: JSON and msgpack decoders, and parse-only readers for "
    "pickle (opcodes walked symbolically), Ruby Marshal, PHP serialize, Java serialization and Go gob. "
    "Nothing is unpickled, unmarshalled, deserialized into objects or evaluated."
)


def _validation_dict(validation: ValidationReport | Mapping[str, Any]) -> dict[str, Any]:
    return validation.as_dict() if isinstance(validation, ValidationReport) else dict(validation)


def open_for_audit(fs: fsspec.AbstractFileSystem, path: str,
                   validation: ValidationReport | Mapping[str, Any]) -> Snapshot | None:
    """The snapshot restricted to the parts that passed validation, or None without a usable manifest.

    Checksums are not computed again: validation has just verified them, and an audit of a
    damaged snapshot should still count what is intact.
    """
    report = _validation_dict(validation)
    if any(p["code"] in _MANIFEST_PROBLEMS for p in report["problems"]):
        return None
    try:
        snapshot = open_snapshot(fs, path, verify=False)
    except SessionMigrationError:
        return None
    damaged = {p["part"] for p in report["problems"] if p.get("part")}
    return dataclasses.replace(snapshot, parts=[p for p in snapshot.parts if p.name not in damaged])


def password_free(url: str) -> str:
    """Defence in depth: the manifest should never hold a password (or a secret URL option
    such as ssl_password), but a report must not copy one."""
    try:
        parts = urlsplit(url)
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in SECRET_OPTIONS])
        netloc = parts.netloc
        if parts.password is not None:  # the host part as given: a Sentinel URL's is a host list
            netloc = (f"{parts.username}@" if parts.username else "") + netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "(unreadable URL withheld)"


def inert(value: Any) -> Any:
    """`value` with every string made safe to show (`safe_text`, at most `MAX_TEXT` characters)."""
    if isinstance(value, str):
        return safe_text(value, MAX_TEXT)
    if isinstance(value, dict):
        return {inert(k): inert(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [inert(v) for v in value]
    return value


def csv_cell(value: Any) -> str:
    """A findings.csv cell: inert text that no spreadsheet evaluates as a formula."""
    text = safe_text("" if value is None else value, MAX_TEXT)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _snapshot_section(snapshot: Snapshot | None, validation: dict[str, Any]) -> dict[str, Any]:
    if snapshot is None:
        return {"url": validation["snapshot"], "snapshot_id": validation.get("snapshot_id"), "manifest_readable": False}
    m, totals = snapshot.manifest, snapshot.manifest.get("totals", {})
    source = m.get("source", {})
    listed = [p["name"] for p in m.get("parts", [])]
    return {
        "url": snapshot.url, "snapshot_id": snapshot.snapshot_id, "manifest_readable": True,
        "format": m.get("format"), "format_version": m.get("format_version"),
        "started_at": m.get("started_at"), "finished_at": m.get("finished_at"), "tool_version": m.get("tool_version"),
        "source": {"url": password_free(str(source.get("url", ""))), "server": source.get("server"),
                   "version": source.get("version")},
        "scope": {"patterns": list(m.get("scope", {}).get("patterns", [])), "dbs": list(m.get("scope", {}).get("dbs", []))},
        "compression": m.get("options", {}).get("compression"),
        "parts": len(listed),
        "parts_skipped": [name for name in listed if name not in {p.name for p in snapshot.parts}],
        "totals": {k: totals.get(k) for k in ("keys", "bytes", "with_ttl", "without_ttl", "vanished", "duplicates", "scanned")},
    }


def _out_of_scope(validation: dict[str, Any]) -> int | None:
    if not validation["rows_checked"] or any(p["code"] == "manifest-scope" for p in validation["problems"]):
        return None  # rows not read, or the declared scope was unusable
    for p in validation["problems"]:
        if p["code"] == "out-of-scope":
            match = _OUT_OF_SCOPE_COUNT.match(p["message"])
            return int(match.group(1)) if match else None
    return 0


def _signature(validation: dict[str, Any]) -> str:
    status = validation.get("signature", "unchecked")
    if status != "unchecked":
        return "verified" if status == "valid" else "failed"
    return "signed, not checked (no signing key configured)" if validation.get("signed") else "not signed"


def _check(ok: bool | None) -> str:
    return "not checked" if ok is None else ("passed" if ok else "failed")


def control_evidence(snap: dict[str, Any], validation: dict[str, Any], stats: SnapshotStats | None) -> list[dict[str, Any]]:
    """NIST SP 800-53 evidence, one entry per control, each a list of (item, value) pairs."""
    problems = [p["code"] for p in validation["problems"]]
    totals = snap.get("totals", {})
    out_of_scope = _out_of_scope(validation)
    by_status = stats.by_status if stats else {}
    judged = None if stats is None or (not stats.keys and totals.get("keys")) else True
    return [
        {"control": "CP-9", "title": "System Backup", "check": _check(snap["manifest_readable"]), "evidence": [
            ("snapshot id", snap.get("snapshot_id")), ("backup started", snap.get("started_at")),
            ("backup finished (manifest committed)", snap.get("finished_at")),
            ("source (password removed)", snap.get("source", {}).get("url")),
            ("source server", f"{snap.get('source', {}).get('server')} {snap.get('source', {}).get('version')}"
             if snap["manifest_readable"] else None),
            ("scope: patterns", ", ".join(snap.get("scope", {}).get("patterns", [])) or None),
            ("scope: databases", ", ".join(str(d) for d in snap.get("scope", {}).get("dbs", [])) or None),
            ("keys / bytes backed up", f"{totals.get('keys')} / {totals.get('bytes')}" if totals else None),
            ("keys with / without TTL", f"{totals.get('with_ttl')} / {totals.get('without_ttl')}" if totals else None),
            ("vanished during scan / duplicates dropped",
             f"{totals.get('vanished')} / {totals.get('duplicates')}" if totals else None),
        ]},
        {"control": "CP-10", "title": "System Recovery and Reconstitution", "check": _check(validation["valid"]), "evidence": [
            ("format", f"{snap.get('format')} v{snap.get('format_version')}" if snap["manifest_readable"] else None),
            ("manifest checksum",
             "failed" if "manifest-edited" in problems else ("verified" if snap["manifest_readable"] else None)),
            ("manifest signature (HMAC-SHA256)", _signature(validation)),
            ("part sha256 verified", f"{validation['checksums_verified']} of {snap.get('parts', validation['parts_checked'])}"),
            ("rows read back / in manifest", f"{validation['rows_checked']} / {totals.get('keys')}"),
            ("validation result", "valid" if validation["valid"] else "INVALID: " + ", ".join(problems)),
            ("validated at", validation["checked_at"]),
        ]},
        {"control": "AC-3", "title": "Access Enforcement", "check": _check(None if out_of_scope is None else out_of_scope == 0),
         "evidence": [
            ("declared scope", ", ".join(snap.get("scope", {}).get("patterns", [])) or None),
            ("rows checked against scope", validation["rows_checked"]),
            ("rows outside scope", out_of_scope),
            ("session ids in this report",
             "redacted: store prefix, at most 4 id characters and 8 hex digits of a keyed BLAKE2b MAC"),
         ]},
        {"control": "SI-10", "title": "Information Input Validation", "check": _check(judged), "evidence": [
            ("keys judged / in manifest", f"{stats.keys if stats else 0} / {totals.get('keys')}"),
            ("sessions by status", ", ".join(f"{k} {v}" for k, v in by_status.items()) or None),
            ("corrupt payloads found", by_status.get("corrupt")),
            ("payload handling", NON_EXECUTING_PARSERS),
            ("snapshot validated before it was read", "yes: manifest, checksums, schema, row counts, duplicates, scope"),
         ]},
    ]


def build_report(snapshot: Snapshot | None, validation_report: ValidationReport | Mapping[str, Any],
                 stats: SnapshotStats | None) -> dict[str, Any]:
    """The JSON-safe report every output file is rendered from."""
    validation = _validation_dict(validation_report)
    snap = _snapshot_section(snapshot, validation)
    report: dict[str, Any] = {
        "report": {"kind": REPORT_KIND, "version": REPORT_VERSION, "tool_version": __version__,
                   "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")},
        "snapshot": snap,
        "valid": validation["valid"],
        "validation": validation,
        "stats_available": stats is not None,
        "by_store": {},
    }
    if stats is not None:
        numbers = stats.as_dict(include_findings=False)
        moved = ("findings_total", "max_findings", "findings_truncated", "reasons")  # regrouped under "findings"
        report.update({k: v for k, v in numbers.items() if k not in moved})
        report["findings"] = {"total": stats.findings_total, "in_csv": len(stats.findings),
                              "truncated": stats.findings_truncated, "file": FILES["csv"], "by_reason": stats.reasons}
    report["controls"] = [{**c, "evidence": [{"item": k, "value": v} for k, v in c["evidence"]]}
                          for c in control_evidence(snap, validation, stats)]
    return inert(report)


def charts(report_or_stats: Mapping[str, Any] | SnapshotStats) -> dict[str, str]:
    """The report's SVG charts by name (empty when there are no statistics)."""
    data = report_or_stats.as_dict(include_findings=False) if isinstance(report_or_stats, SnapshotStats) else report_or_stats
    if "ttl_buckets" not in data:
        return {}
    return {
        "ttl": bar_chart(data["ttl_buckets"], "Remaining TTL (keys)"),
        "size": bar_chart(data["size_buckets"], "Value size (keys)", color="#6a1b9a"),
        "status_by_store": stacked_bars(data["by_store"], STATUSES, "Session status by store", STATUS_COLORS),
    }


def findings_csv(stats: SnapshotStats | None) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FINDING_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in stats.findings if stats else ():
        writer.writerow({k: csv_cell(row.get(k)) for k in FINDING_COLUMNS})
    return buf.getvalue().encode()


def write_audit_report(snapshot: Snapshot | None, validation_report: ValidationReport | Mapping[str, Any],
                       stats: SnapshotStats | None, fs: fsspec.AbstractFileSystem, output_dir: str) -> dict[str, str]:
    """Write report.json, report.md, report.html and findings.csv; returns kind -> URL."""
    report = build_report(snapshot, validation_report, stats)
    content = {
        "json": json.dumps(report, indent=2, ensure_ascii=False).encode() + b"\n",
        "md": render_markdown(report).encode(),
        "html": render_html(report, charts(report), inert(stats.findings[:HTML_FINDINGS]) if stats else []).encode(),
        "csv": findings_csv(stats),
    }
    files = {}
    for kind, data in content.items():
        path = storage.join(output_dir, FILES[kind])
        storage.write_atomic(fs, path, data)
        files[kind] = storage.unstrip(fs, path)
    return files


def read_report(fs: fsspec.AbstractFileSystem, output_dir: str) -> dict[str, Any]:
    """Load a written report.json (what the flow and CLI return)."""
    raw = storage.read_bytes(fs, storage.join(output_dir, FILES["json"]))
    if raw is None:
        raise FileNotFoundError(storage.unstrip(fs, storage.join(output_dir, FILES["json"])))
    return json.loads(raw)
