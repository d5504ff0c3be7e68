"""What signing and the manifest checks cost: per call, and against a backup and a restore.

    python benchmarks/signing_cost.py [--keys 100000] [--pairs 5]

Seeds one throwaway valkey-server with `--keys` sessions (as `run.py` does), then:

1. per call, on that backup's manifest: `Keyring.sign`, the schema check, and `read_checked`
   (read + parse + schema + checksum + HMAC) with and without a key, as the readers run it;
2. backups of the whole server and restores of the snapshot into an empty database, without
   and with a key, alternately `--pairs` times each (so drift of the machine hits both alike);
   medians of the time inside the call.

Measurement only; nothing is asserted. Run from a checkout without this module's signing (an
older revision on PYTHONPATH) it measures backups and restores only, without a key.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import seed, start_server  # noqa: E402

KEY = "benchmark-signing-key-0123456789abcdefghijklmnop"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()

    from session_migration import storage
    from session_migration.endpoints import RedisEndpoint
    from session_migration.options import BackupOptions, RestoreOptions
    from session_migration.pipeline import run_backup
    from session_migration.restore import run_restore

    try:
        from session_migration.signing import Keyring
    except ImportError:  # an older revision: no signing to measure
        Keyring = None
    keyrings = {"no key": Keyring() if Keyring else None}
    if Keyring:
        keyrings["key"] = Keyring.from_secrets(KEY)

    server = start_server("valkey")
    try:
        seed(server, args.keys, 7)
        source = RedisEndpoint.from_url(f"redis://127.0.0.1:{server.port}/0")
        with tempfile.TemporaryDirectory(prefix="signing-cost-") as tmp:
            fs, root = storage.resolve(tmp)
            times: dict[str, dict[str, list[float]]] = {name: {"backup": [], "restore": []} for name in keyrings}
            for pair in range(args.pairs):
                for name, keyring in keyrings.items():
                    extra = {"keyring": keyring} if keyring is not None else {}
                    options = BackupOptions(patterns=("sess:*",), snapshot_id=f"bench-{pair}-{name.replace(' ', '-')}")
                    started = time.perf_counter()
                    result = run_backup(source, fs, root, options, **extra)
                    times[name]["backup"].append(time.perf_counter() - started)
                    target = RedisEndpoint.from_url(f"redis://127.0.0.1:{server.port}/1")
                    target.connect().flushdb()
                    started = time.perf_counter()
                    run_restore(result.url, target, RestoreOptions(), **extra)
                    times[name]["restore"].append(time.perf_counter() - started)
            report = {name: {op: round(statistics.median(ts), 3) for op, ts in ops.items()} for name, ops in times.items()}
            if Keyring:
                report["per call"] = _per_call(fs, storage.join(root, "bench-0-key"), Keyring)
            report["keys"] = args.keys
            print(json.dumps(report, indent=1))
    finally:
        server.stop()


def _per_call(fs, path: str, Keyring) -> dict[str, float]:
    """Microseconds per call, best of 5 repeats."""
    from session_migration.manifest import read_checked, schema_problems

    manifest = json.loads(fs.cat_file(f"{path}/manifest.json"))
    keyed, plain = Keyring.from_secrets(KEY), Keyring()

    def us(fn) -> float:
        n = 200
        return round(min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6, 1)

    return {
        "manifest bytes": len(fs.cat_file(f"{path}/manifest.json")),
        "sign (us)": us(lambda: keyed.sign(manifest, "manifest")),
        "schema check (us)": us(lambda: schema_problems(manifest)),
        "read_checked, no key (us)": us(lambda: read_checked(fs, path, plain)),
        "read_checked, key (us)": us(lambda: read_checked(fs, path, keyed)),
    }


if __name__ == "__main__":
    main()
