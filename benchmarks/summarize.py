"""Compare the target ratios across saved benchmark runs (benchmarks/results/bench-*.json).

    python benchmarks/summarize.py [--keys 1000000] [FILE ...]

One row per run: when it ran, the source fingerprint it measured, the ratios the project targets,
and how much CPU the rest of the machine used during our core backup and `redis-cli --rdb` (the
noise on a shared machine). Reads the JSON that run.py writes; measures nothing itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _by(summary: list[dict], name: str, count: int) -> dict | None:
    return next((r for r in summary if r["contestant"] == name and r["count"] == count), None)


def _other(data: dict, name: str, count: int) -> str:
    vals = [r.get("other_cpu_s") for r in data["runs"] if r["contestant"] == name and r["count"] == count]
    vals = [v for v in vals if v is not None]
    return "/".join(f"{v:.1f}" for v in vals) if vals else "-"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="*")
    parser.add_argument("--keys", type=int, default=1_000_000)
    args = parser.parse_args()
    files = [Path(f) for f in args.files] or sorted((HERE / "results").glob(f"bench-*-{args.keys}.json"))
    if not files:
        print("no results", file=sys.stderr)
        return 1
    print("| run (UTC) | source | core keys/s | rdb keys/s | core/rdb | dump-load keys/s | core/dump-load | "
          "core peak MB | peak ratio | flow vs core | flow (Prefect server) vs core | other CPU s: core runs | "
          "other CPU s: rdb runs |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for f in files:
        d = json.loads(f.read_text())
        n, small = d["args"]["keys"], d["args"]["small"]
        s = d["summary"]
        core, rdb, rdl = _by(s, "core", n), _by(s, "rdb", n), _by(s, "dump-load", n)
        core_small, flow, fsrv = _by(s, "core", small), _by(s, "flow", n), _by(s, "flow-server", n)
        cells = [
            d["started_at"][:16].replace("T", " "),
            d.get("source_fingerprint", "-")[:8],
            f"{core['keys_per_s']:,.0f}" if core else "-",
            f"{rdb['keys_per_s']:,.0f}" if rdb else "-",
            f"{core['keys_per_s'] / rdb['keys_per_s']:.2f}" if core and rdb else "-",
            f"{rdl['keys_per_s']:,.0f}" if rdl else "-",
            f"{core['keys_per_s'] / rdl['keys_per_s']:.1f}" if core and rdl else "-",
            f"{core['peak_rss_mb']:.0f}" if core else "-",
            f"{core['peak_rss_mb'] / core_small['peak_rss_mb']:.2f}" if core and core_small else "-",
            f"{flow['wall_s'] / core['wall_s'] - 1:+.0%}" if core and flow else "-",
            f"{fsrv['wall_s'] / core['wall_s'] - 1:+.0%}" if core and fsrv else "-",
            _other(d, "core", n),
            _other(d, "rdb", n),
        ]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
