"""Small self-contained SVG charts for the audit report: no JS, no matplotlib, no assets.

Each function returns one `<svg>` element as a string (valid XML, so IPython's `SVG` can
display it and the HTML report can inline it). Every label is XML-escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from xml.sax.saxutils import escape

# Status colours: green good, amber attention, red broken, grey not judged.
STATUS_COLORS: dict[str, str] = {
    "valid": "#2e7d32", "expired": "#9e9e9e", "stale": "#f9a825", "corrupt": "#c62828", "unknown": "#5c6bc0",
}
BAR_COLOR = "#1565c0"
FONT = "font-family:system-ui,sans-serif;font-size:11px"


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title, {chr(34): "&quot;"})}" style="{FONT}">'
        f"<title>{escape(title)}</title>" + "".join(body) + "</svg>"
    )


def bar_chart(counts: Mapping[str, int], title: str, color: str = BAR_COLOR, width: int = 640, height: int = 250) -> str:
    """Vertical bars, one per label in mapping order, with the count above each bar."""
    labels = list(counts)
    top, bottom, left = 40, 36, 10
    plot_h = height - top - bottom
    slot = (width - 2 * left) / max(len(labels), 1)
    peak = max(counts.values(), default=0) or 1
    body = [f'<text x="{left}" y="16" style="font-weight:600;font-size:13px">{escape(title)}</text>',
            f'<line x1="{left}" y1="{top + plot_h}" x2="{width - left}" y2="{top + plot_h}" stroke="#999"/>']
    for i, label in enumerate(labels):
        value = int(counts[label])
        h = plot_h * value / peak
        x = left + i * slot + slot * 0.15
        body.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" fill="{color}">'
                    f"<title>{escape(label)}: {value:,}</title></rect>")
        cx = left + (i + 0.5) * slot
        body.append(f'<text x="{cx:.1f}" y="{top + plot_h - h - 4:.1f}" text-anchor="middle">{value:,}</text>')
        body.append(f'<text x="{cx:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{escape(label)}</text>')
    return _svg(width, height, title, body)


def stacked_bars(rows: Mapping[str, Mapping[str, int]], order: Sequence[str], title: str,
                 colors: Mapping[str, str] = STATUS_COLORS, width: int = 560) -> str:
    """Horizontal bars, one per row (e.g. store), split into `order` segments (e.g. statuses)."""
    label_w, bar_h, gap, top = 130, 16, 6, 44
    plot_w = width - label_w - 70
    height = top + len(rows) * (bar_h + gap) + 10
    peak = max((sum(r.values()) for r in rows.values()), default=0) or 1
    body = [f'<text x="10" y="16" style="font-weight:600;font-size:13px">{escape(title)}</text>']
    x = 10
    for name in order:  # legend
        body.append(f'<rect x="{x}" y="24" width="10" height="10" fill="{colors.get(name, BAR_COLOR)}"/>'
                    f'<text x="{x + 14}" y="33">{escape(name)}</text>')
        x += 14 + 7 * len(name) + 14
    for i, (label, parts) in enumerate(rows.items()):
        y = top + i * (bar_h + gap)
        body.append(f'<text x="{label_w - 6}" y="{y + bar_h - 4}" text-anchor="end">{escape(label)}</text>')
        x0 = float(label_w)
        for name in order:
            value = int(parts.get(name, 0))
            if value:
                w = plot_w * value / peak
                body.append(f'<rect x="{x0:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colors.get(name, BAR_COLOR)}">'
                            f"<title>{escape(label)} {escape(name)}: {value:,}</title></rect>")
                x0 += w
        body.append(f'<text x="{x0 + 4:.1f}" y="{y + bar_h - 4}">{sum(int(v) for v in parts.values()):,}</text>')
    return _svg(width, height, title, body)
