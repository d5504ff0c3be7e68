"""Markdown and HTML renderings of the audit report dict (see `audit.build_report`).

Both render the same sections from the same dict. The HTML is one self-contained file:
inline CSS, inline SVG, no scripts and no external assets, so it can be archived as
evidence and opened offline. Every value is escaped: redacted keys, manifest fields and
parser details may hold any text. The report dict's strings are already free of control
characters (`audit.inert`); Markdown cells and titles also go through `markdown_escape`, so
no key or reason can become Markdown or raw HTML in report.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from .redaction import markdown_escape
from .stats import STATUSES

HTML_FINDINGS = 50  # rows shown inline; findings.csv has them all (up to the stats cap)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _store_rows(report: Mapping[str, Any]) -> list[list[Any]]:
    rows = [[store, *(counts.get(s, 0) for s in STATUSES), sum(counts.values())] for store, counts in report["by_store"].items()]
    if rows:
        rows.append(["total", *(report["by_status"].get(s, 0) for s in STATUSES), report["keys"]])
    return rows


def _summary(report: Mapping[str, Any]) -> list[tuple[str, Any]]:
    snap = report["snapshot"]
    rows: list[tuple[str, Any]] = [
        ("snapshot", snap["url"]), ("snapshot id", snap.get("snapshot_id")),
        ("source", (snap.get("source") or {}).get("url")), ("backup finished", snap.get("finished_at")),
        ("validation", "valid" if report["valid"] else "INVALID"),
    ]
    if report["stats_available"]:
        f = report["findings"]
        rows += [
            ("judged as of", report["as_of"]), ("keys read", report["keys"]), ("value bytes", report["bytes"]),
            ("keys without TTL", report["without_ttl"]), ("expiring within 1 h", report["expiring_within_1h"]),
            ("expiring within 24 h", report["expiring_within_24h"]), ("vanished during backup", report["vanished"]),
            ("duplicates dropped during backup", report["duplicates"]), ("corrupt payloads", report["by_status"]["corrupt"]),
            ("non-valid keys (findings)",
             f["total"] if not f["truncated"] else f"{f['total']:,} ({f['in_csv']:,} in {f['file']})"),
        ]
        if snap.get("parts_skipped"):
            rows.append(("parts left out (failed validation)", ", ".join(snap["parts_skipped"])))
    else:
        rows.append(("statistics", "not computed: the snapshot's manifest is missing or unusable"))
    return rows


def _sections(report: Mapping[str, Any]) -> list[tuple[str, Sequence[str], list[list[Any]]]]:
    """(title, header, rows) of every table section after the summary, in order."""
    out: list[tuple[str, Sequence[str], list[list[Any]]]] = []
    problems = report["validation"]["problems"]
    out.append(("Validation problems", ("code", "part", "message"),
                [[p["code"], p.get("part") or "", p["message"]] for p in problems]))
    if report["stats_available"]:
        out += [
            ("Keys by store and status", ("store", *STATUSES, "total"), _store_rows(report)),
            ("Keys by type", ("type", "keys"), [[k, v] for k, v in report["by_type"].items()]),
            ("Remaining TTL", ("bucket", "keys"), [[k, v] for k, v in report["ttl_buckets"].items()]),
            ("Value size percentiles (bytes)", ("percentile", "bytes"), [[k, v] for k, v in report["size_percentiles"].items()]),
            ("Value size distribution", ("size", "keys"), [[k, v] for k, v in report["size_buckets"].items()]),
            ("Largest keys (redacted)", ("key", "bytes", "type", "store"),
             [[k["redacted_key"], k["size_bytes"], k["type"], k["store"]] for k in report["largest_keys"]]),
            ("Findings by reason", ("store", "status", "reason", "keys"),
             [[r["store"], r["status"], r["reason"], r["count"]] for r in report["findings"]["by_reason"]]),
        ]
    return out


# --- Markdown ---------------------------------------------------------------------------

def _md_cell(value: Any) -> str:
    return markdown_escape(_fmt(value))


def _md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def _md_controls(report: Mapping[str, Any]) -> list[str]:
    lines = ["## Control evidence (NIST SP 800-53)", ""]
    for c in report["controls"]:
        lines += [f"### {_md_cell(c['control'])} {_md_cell(c['title'])}: {_md_cell(c['check'])}", ""]
        lines += _md_table(("evidence", "value"), [[e["item"], e["value"]] for e in c["evidence"]]) + [""]
    return lines


def summary_markdown(report: Mapping[str, Any]) -> str:
    """Title, summary and control evidence: the Prefect markdown artifact."""
    snap = report["snapshot"]
    name = _md_cell(snap.get("snapshot_id") or snap["url"])
    lines = [f"# Session audit: {name} ({'valid' if report['valid'] else 'INVALID'})", ""]
    lines += _md_table(("item", "value"), _summary(report)) + [""]
    return "\n".join(lines + _md_controls(report))


def render_markdown(report: Mapping[str, Any]) -> str:
    lines = [summary_markdown(report), ""]
    for title, header, rows in _sections(report):
        lines += [f"## {title}", ""] + (_md_table(header, rows) if rows else ["None."]) + [""]
    if report["stats_available"]:
        lines.append(f"Every non-valid key is listed in {_md_cell(report['findings']['file'])} "
                     "(redacted key, store, status, reason, detail).")
    meta = report["report"]
    lines.append(f"\nGenerated {_md_cell(meta['generated_at'])} by redis-session-migration {_md_cell(meta['tool_version'])}.\n")
    return "\n".join(lines)


# --- HTML -------------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1000px;color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
h3{font-size:1rem}table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#f5f5f5}td.n{text-align:right;font-variant-numeric:tabular-nums}code{font-size:.9em}
.badge{display:inline-block;padding:.1rem .6rem;border-radius:1rem;color:#fff;font-weight:600}
.ok{background:#2e7d32}.bad{background:#c62828}.na{background:#757575}
.charts{display:flex;flex-wrap:wrap;gap:1rem}.charts svg{border:1px solid #eee;background:#fff}
footer{margin-top:2rem;color:#777;font-size:.85em}
""".strip()


def _td(value: Any) -> str:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return f'<td class="n">{escape(_fmt(value))}</td>' if numeric else f"<td>{escape(_fmt(value))}</td>"


def _html_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _badge(check: str) -> str:
    cls = {"passed": "ok", "valid": "ok", "failed": "bad", "INVALID": "bad"}.get(check, "na")
    return f'<span class="badge {cls}">{escape(check)}</span>'


def render_html(report: Mapping[str, Any], svgs: Mapping[str, str], findings: Sequence[Mapping[str, str]]) -> str:
    snap = report["snapshot"]
    title = f"Session audit: {snap.get('snapshot_id') or snap['url']}"
    parts = [f"<h1>{escape(title)} {_badge('valid' if report['valid'] else 'INVALID')}</h1>",
             "<h2>Summary</h2>", _html_table(("item", "value"), _summary(report))]
    if svgs:
        parts += ["<h2>Charts</h2>", '<div class="charts">', *svgs.values(), "</div>"]
    for section, header, rows in _sections(report):
        parts += [f"<h2>{escape(section)}</h2>", _html_table(header, rows) if rows else "<p>None.</p>"]
    if report["stats_available"]:
        f = report["findings"]
        shown = findings[:HTML_FINDINGS]
        parts += ["<h2>Findings</h2>",
                  f"<p>{f['total']:,} non-valid key(s); the first {len(shown):,} are shown here, "
                  f"{f['in_csv']:,} are listed in <code>{escape(f['file'])}</code>.</p>",
                  _html_table(("key (redacted)", "store", "status", "reason", "detail"),
                              [[r["redacted_key"], r["store"], r["status"], r["reason"], r.get("detail", "")] for r in shown])]
    parts.append("<h2>Control evidence (NIST SP 800-53)</h2>")
    for c in report["controls"]:
        parts += [f"<h3>{escape(c['control'])} {escape(c['title'])} {_badge(c['check'])}</h3>",
                  _html_table(("evidence", "value"), [[e["item"], e["value"]] for e in c["evidence"]])]
    meta = report["report"]
    parts.append(f"<footer>Generated {escape(meta['generated_at'])} by redis-session-migration "
                 f"{escape(str(meta['tool_version']))}. Session ids are redacted; no session content is included.</footer>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
