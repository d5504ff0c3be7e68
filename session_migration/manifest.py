"""The manifest as a document: its checksum, its schema, and the one function that reads it.

A manifest comes from the storage, so it is checked before anything else reads a field of it,
in this order, and the first failure is the answer (a `code` and one sentence):

    manifest-too-large   larger than MAX_MANIFEST_BYTES (never read whole)
    manifest-unparsable  not JSON
    manifest-format      not a JSON object of this format
    format-version       a version this tool does not read (1 and 2 are read)
    manifest-schema      a field missing, of the wrong type or out of its limits
    manifest-edited      `manifest_sha256` does not match the content
    unsigned             a signing key is configured and the manifest carries no signature
    signature-invalid    a signing key is configured and the signature is wrong

`read_checked` returns the manifest with the signature's verdict, or the problem; the
snapshot reader raises it and validation reports it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import fsspec

from . import storage
from .errors import InvalidParameter
from .patterns import check_patterns
from .schema import FORMAT_NAME, PART_NAME_RE, READABLE_VERSIONS, SNAPSHOT_ID_RE
from .signing import SIGNATURE, Keyring, Verdict

MANIFEST = "manifest.json"
CHECKPOINT = "checkpoint.json"
PURPOSE = "manifest"  # what a manifest's signature says it signs

MAX_MANIFEST_BYTES = 32 << 20  # ~100k parts; today's 1M-key snapshot's manifest is ~5 KB
MAX_PARTS = 100_000
MAX_DBS = 1024
MAX_COUNTS = 10_000  # entries of totals.by_type / by_store / by_pattern
MAX_TEXT = 4096  # characters of a free-text field (tool version, server name, URL)
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_TOTALS = ("keys", "bytes", "scanned", "duplicates", "vanished", "with_ttl", "without_ttl")
_PART_FIELDS = {"name", "rows", "bytes", "sha256"}


def manifest_checksum(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON without its own checksum: edits are detected."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    manifest = dict(manifest)
    manifest["manifest_sha256"] = manifest_checksum(manifest)
    return json.dumps(manifest, indent=2, sort_keys=False).encode() + b"\n"


def parse_time(value: object) -> dt.datetime | None:
    """An ISO-8601 time with its UTC offset, or None (naive times are refused: which zone?)."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


# -- the schema -------------------------------------------------------------------------------


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _text(value: object, limit: int = MAX_TEXT) -> bool:
    return isinstance(value, str) and len(value) <= limit


def _counts(value: object, of_pairs: bool = False) -> bool:
    if not isinstance(value, dict) or len(value) > MAX_COUNTS:
        return False
    for name, n in value.items():
        if not _text(name, 1024):
            return False
        if of_pairs:
            if not isinstance(n, dict) or set(n) != {"keys", "bytes"} or not all(_count(v) for v in n.values()):
                return False
        elif not _count(n):
            return False
    return True


def schema_problems(manifest: dict[str, Any]) -> list[str]:
    """Every field that is missing, of the wrong type or out of its limits, named by its path
    (never by its content, which could be anything). Empty when the manifest has the shape."""
    found: list[str] = []

    def need(ok: bool, where: str, what: str) -> bool:
        if not ok:
            found.append(f"`{where}` {what}")
        return ok

    m = manifest
    need(_text(m.get("snapshot_id")) and bool(SNAPSHOT_ID_RE.match(m["snapshot_id"])), "snapshot_id",
         "is not a snapshot id (1-128 letters, digits, '.', '_', '-')")
    started, finished = parse_time(m.get("started_at")), parse_time(m.get("finished_at"))
    need(started is not None, "started_at", "is not an ISO time with a UTC offset")
    if need(finished is not None, "finished_at", "is not an ISO time with a UTC offset") and started is not None:
        need(started <= finished, "finished_at", "is before started_at")
    for name in ("tool", "tool_version"):
        need(_text(m.get(name)), name, "is not a string")
    source = m.get("source")
    if need(isinstance(source, dict), "source", "is not an object"):
        need(_text(source.get("url")), "source.url", "is not a string")
        for name in ("server", "version"):
            need(name not in source or _text(source[name]), f"source.{name}", "is not a string")
    scope = m.get("scope")
    if need(isinstance(scope, dict), "scope", "is not an object"):
        patterns = scope.get("patterns")
        try:
            ok = isinstance(patterns, list) and bool(check_patterns(patterns))
        except InvalidParameter:
            ok = False
        need(ok, "scope.patterns", "is not a list of 1-256 distinct, non-empty key patterns of at most 512 bytes")
        dbs = scope.get("dbs")
        need(isinstance(dbs, list) and len(dbs) <= MAX_DBS and all(_count(d) for d in dbs), "scope.dbs",
             "is not a list of database numbers")
    need(isinstance(m.get("options"), dict), "options", "is not an object")
    need(isinstance(m.get("schema"), list), "schema", "is not a list")
    _check_parts(m.get("parts"), need)
    totals = m.get("totals")
    if need(isinstance(totals, dict), "totals", "is not an object"):
        for name in _TOTALS:
            need(_count(totals.get(name)), f"totals.{name}", "is not a whole number >= 0")
        for name in ("by_type", "by_store"):
            need(_counts(totals.get(name)), f"totals.{name}", "is not an object of counts")
        need(_counts(totals.get("by_pattern"), of_pairs=True), "totals.by_pattern",
             "is not an object of {keys, bytes} counts")
    need(_text(m.get("manifest_sha256")) and bool(_SHA256_RE.match(m["manifest_sha256"])), "manifest_sha256",
         "is not a sha256 in hex")
    if SIGNATURE in m:
        need(m.get("format_version") != 1, SIGNATURE, "is not part of format version 1")
        need(isinstance(m[SIGNATURE], dict), SIGNATURE, "is not an object")
    return found


def _check_parts(parts: object, need) -> None:
    if not need(isinstance(parts, list) and 1 <= len(parts) <= MAX_PARTS, "parts",
                f"is not a list of 1 to {MAX_PARTS:,} parts"):
        return
    names: set[str] = set()
    for i, part in enumerate(parts):
        where = f"parts[{i}]"
        if not need(isinstance(part, dict) and set(part) == _PART_FIELDS, where,
                    "is not an object of exactly name, rows, bytes and sha256"):
            continue
        name = part["name"]
        if need(isinstance(name, str) and bool(PART_NAME_RE.match(name)), f"{where}.name",
                "is not a part name of the form part-NNNNN.parquet"):
            need(name not in names, f"{where}.name", "repeats the name of an earlier part")
            names.add(name)
        need(_count(part["rows"]), f"{where}.rows", "is not a whole number >= 0")
        need(_count(part["bytes"]), f"{where}.bytes", "is not a whole number >= 0")
        need(isinstance(part["sha256"], str) and bool(_SHA256_RE.match(part["sha256"])), f"{where}.sha256",
             "is not a sha256 in hex")


# -- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checked:
    """The outcome of `read_checked`: a manifest (and its signature's verdict), or a problem."""

    manifest: dict[str, Any] | None = None
    verdict: Verdict | None = None
    code: str | None = None  # set when the manifest cannot be used
    message: str | None = None
    # what little could be read of a manifest that failed, for reports
    snapshot_id: str | None = None
    format_version: int | None = None


def _problem(code: str, message: str, manifest: dict[str, Any] | None = None) -> Checked:
    sid = manifest.get("snapshot_id") if manifest else None
    version = manifest.get("format_version") if manifest else None
    return Checked(code=code, message=message,
                   snapshot_id=sid if isinstance(sid, str) and SNAPSHOT_ID_RE.match(sid) else None,
                   format_version=version if isinstance(version, int) and not isinstance(version, bool) else None)


def read_checked(fs: fsspec.AbstractFileSystem, path: str, keyring: Keyring) -> Checked | None:
    """The checked manifest of the snapshot folder `path`; None when there is no manifest.json."""
    raw = storage.read_bytes(fs, storage.join(path, MANIFEST), limit=MAX_MANIFEST_BYTES + 1)
    if raw is None:
        return None
    if len(raw) > MAX_MANIFEST_BYTES:
        return _problem("manifest-too-large", f"manifest.json is larger than {MAX_MANIFEST_BYTES >> 20} MiB; "
                                              "no manifest this tool writes is that large.")
    try:
        manifest = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        detail = exc if not isinstance(exc, RecursionError) else "nested too deeply"
        return _problem("manifest-unparsable", f"manifest.json is not valid JSON ({detail}).")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        return _problem("manifest-format", f"manifest.json is not a {FORMAT_NAME} manifest.")
    version = manifest.get("format_version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        shown = version if isinstance(version, int) and not isinstance(version, bool) else "unknown"
        return _problem("format-version", f"Snapshot format version {shown} is not known to this tool "
                                          f"(it reads {', '.join(map(str, READABLE_VERSIONS))}; upgrade the tool to read newer snapshots).",
                        manifest)
    wrong = schema_problems(manifest)
    if wrong:
        more = f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else ""
        return _problem("manifest-schema", f"manifest.json does not have the format's shape: {'; '.join(wrong[:3])}{more}.",
                        manifest)
    if manifest["manifest_sha256"] != manifest_checksum(manifest):
        return _problem("manifest-edited", "manifest.json was edited after it was written (its checksum does not match its content).",
                        manifest)
    verdict = keyring.check(manifest, PURPOSE)
    if not keyring.accepts(verdict):
        code = "unsigned" if not verdict.signed else "signature-invalid"
        hint = " (--allow-unsigned accepts it knowingly)" if not verdict.signed else ""
        return Checked(manifest=None, verdict=verdict, code=code, snapshot_id=manifest["snapshot_id"],
                       format_version=version,
                       message=f"A signing key is configured and {verdict.reason}{hint}.")
    return Checked(manifest=manifest, verdict=verdict, snapshot_id=manifest["snapshot_id"], format_version=version)
