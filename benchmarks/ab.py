"""A/B of two versions of the backup (or restore, transfer, audit) on one seeded server, run alternately.

    python benchmarks/ab.py REV_A REV_B [--keys 1000000] [--pairs 7] [--op backup|restore|transfer|audit]

REV_A and REV_B are git revisions (or `.` for the working tree). Each is checked out in a
detached worktree under benchmarks/.cache/ and imported from there (PYTHONPATH) by this
checkout's `worker.py core`. One throwaway redis-server is seeded as in `run.py`; the two
versions then back it up alternately, `--pairs` times each, so drift of the machine's speed
hits both alike. Prints the median wall time (the process, from spawn to exit), time in the
call, client CPU and server CPU of each side.
Single benchmark runs of the same code vary by ~5% on a shared VM; this is how the changes
in docs/benchmarks.md were judged. Measurement only; nothing is asserted.

`--op restore|transfer|audit` runs each side's own `benchmarks/write_worker.py` (as
`run_writes.py` does) from its checkout: each side first backs the server up with its own
version (the snapshot format may differ between them), then restores that snapshot into a new
empty server, transfers the seeded server into a new empty server, or audits (validate +
stats) its snapshot, alternately.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = HERE / ".cache"
sys.path.insert(0, str(HERE))

from common import measure, seed, start_server  # noqa: E402


def checkout(rev: str) -> tuple[Path, bool]:
    """The source root of `rev`, and whether it is a worktree made here (to remove after)."""
    if rev == ".":
        return ROOT, False
    path = CACHE / f"ab-{rev.replace('/', '_')}"
    if path.exists():
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False)
    subprocess.run(["git", "worktree", "add", "--detach", str(path), rev], cwd=ROOT, check=True,
                   capture_output=True)
    return path, True


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}


def _row(m, what: str) -> tuple[dict, dict]:
    """The measured row of one run, and what its worker reported (`BENCH-RESULT {json}`)."""
    line = next((x for x in m.stdout.splitlines() if x.startswith("BENCH-RESULT ")), None)
    if m.returncode != 0 or line is None:
        raise RuntimeError(f"{what} failed: {m.stderr[-2000:]}")
    result = json.loads(line.split(" ", 1)[1])
    return {"wall_s": m.wall_s, "call_s": result["call_s"], "client_cpu_s": m.user_s + m.sys_s,
            "server_cpu_s": m.server_cpu_s}, result


def run_once(source_root: Path, url: str, server) -> dict:
    dest = tempfile.mkdtemp(prefix="ab-", dir=CACHE)
    env = _env()
    env["PYTHONPATH"] = str(source_root)  # before site-packages: this version's session_migration
    try:
        m = measure([sys.executable, str(HERE / "worker.py"), "core", url, dest, "--pattern", "sess:*"],
                    server=server, env=env, cwd=str(source_root))
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    row, result = _row(m, f"backup from {source_root}")
    if not result.get("module_file", "").startswith(str(source_root)):
        raise RuntimeError(f"imported {result.get('module_file')}, not the version in {source_root}")
    return row


def run_write(op: str, source_root: Path, server, snapshot: str) -> dict:
    """One run of `op` by the version in `source_root` (its own write_worker.py)."""
    from run_writes import fresh_target

    worker = [sys.executable, str(source_root / "benchmarks" / "write_worker.py"), op]
    work = tempfile.mkdtemp(prefix="ab-", dir=CACHE)
    try:
        if op == "audit":
            m = measure([*worker, snapshot], server=server, env=_env(), cwd=str(source_root))
        else:
            with fresh_target() as target:
                extra = [snapshot, target.url] if op == "restore" else [server.url, target.url, work]
                m = measure([*worker, *extra], server=target, env=_env(), cwd=str(source_root))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _row(m, f"{op} from {source_root}")[0]


def own_snapshot(source_root: Path, server, into: Path) -> str:
    """A backup of the server by the version in `source_root`, for its restore or audit."""
    subprocess.run([sys.executable, str(source_root / "benchmarks" / "write_worker.py"), "backup", server.url,
                    str(into)], env=_env(), cwd=str(source_root), capture_output=True, text=True, check=True)
    (snapshot,) = [p for p in into.iterdir() if (p / "manifest.json").exists()]
    return str(snapshot)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rev_a")
    parser.add_argument("rev_b")
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--server", choices=["redis", "valkey"], default="redis")
    parser.add_argument("--op", choices=["backup", "restore", "transfer", "audit"], default="backup")
    args = parser.parse_args()

    CACHE.mkdir(exist_ok=True)
    sides = {"A": (args.rev_a, *checkout(args.rev_a)), "B": (args.rev_b, *checkout(args.rev_b))}
    server = start_server(args.server)
    results: dict[str, list[dict]] = {"A": [], "B": []}
    snapshots: dict[str, str] = {}
    try:
        seed(server, args.keys, 1)
        if args.op in ("restore", "audit"):
            for side, (_rev, root, _made) in sides.items():
                snapshots[side] = own_snapshot(root, server, Path(tempfile.mkdtemp(prefix="ab-snap-", dir=CACHE)))
        for pair in range(args.pairs):
            for side, (rev, root, _made) in sides.items():
                row = (run_once(root, server.url, server) if args.op == "backup"
                       else run_write(args.op, root, server, snapshots.get(side, "")))
                results[side].append(row)
                print(f"pair {pair + 1}/{args.pairs} {side} ({rev}): " +
                      ", ".join(f"{k} {v:.2f}" for k, v in row.items()), file=sys.stderr, flush=True)
    finally:
        server.stop()
        for snapshot in snapshots.values():  # ~300 MB each at 1M keys
            shutil.rmtree(Path(snapshot).parent, ignore_errors=True)
        for _rev, root, made in sides.values():
            if made:
                subprocess.run(["git", "worktree", "remove", "--force", str(root)], cwd=ROOT, check=False)

    print(f"\n{args.op}, {args.keys:,} keys, {args.pairs} alternating pairs, medians\n")
    print("| side | revision | wall s | in-call s | client CPU s | server CPU s |")
    print("|---|---|---:|---:|---:|---:|")
    for side, (rev, _root, _made) in sides.items():
        med = {k: statistics.median(r[k] for r in results[side]) for k in results[side][0]}
        print(f"| {side} | `{rev}` | {med['wall_s']:.2f} | {med['call_s']:.2f} | {med['client_cpu_s']:.2f} | {med['server_cpu_s']:.2f} |")


if __name__ == "__main__":
    main()
