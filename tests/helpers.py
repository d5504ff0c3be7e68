"""Helpers the integration and flow tests share: seeding every Redis type, the state of a
server, snapshots edited into states a live server cannot hold, and one Prefect flow run
read back from the server."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

HOUR_MS = 3600 * 1000

# Binary-safe keys and values of every type: NUL, invalid UTF-8, CR/LF, a glob character.
BINARY_KEYS = {
    "string": b"sess:\x00\xff\xfe bin\r\n",
    "hash": b"sess:h\xc3\x28\x00",
    "list": b"sess:l\x80[\x00",
    "set": b"sess:s\xff*",
    "zset": b"sess:z\x00\x01",
}


def seed_all_types(r, prefix="sess:"):
    r.set(f"{prefix}str", b"\x00binary\xffvalue", px=2 * HOUR_MS)
    r.set(f"{prefix}forever", b"no ttl")
    r.hset(f"{prefix}hash", mapping={b"a": b"1", b"b\x00": b"\xff2"})
    r.pexpire(f"{prefix}hash", HOUR_MS)
    r.rpush(f"{prefix}list", b"x", b"y", b"x", b"")
    r.sadd(f"{prefix}set", b"m1", b"m2", b"m3")
    r.pexpire(f"{prefix}set", 3 * HOUR_MS)
    r.zadd(f"{prefix}zset", {b"a": 1.5, b"b": -2.0, b"c": 1e16, b"d": float("inf"), b"e": 0.1})
    r.xadd(f"{prefix}stream", {b"f": b"v"}, id=b"1-1")
    r.xadd(f"{prefix}stream", {b"g": b"w", b"h": b"z"}, id=b"2-5")
    r.pexpire(f"{prefix}stream", 5 * HOUR_MS)
    r.set("other:key", b"outside the scope")


def seed_binary(r) -> None:
    """One key of each type under BINARY_KEYS, with binary members and values, most with a TTL."""
    k = BINARY_KEYS
    r.set(k["string"], b"\x00\x01\x02\xff\xfe\r\n", px=2 * HOUR_MS)
    r.hset(k["hash"], mapping={b"f\x00\xff": b"v\xff\x00", b"\xc3\x28": b"", b"plain": b"\r\n"})
    r.pexpire(k["hash"], HOUR_MS)
    r.rpush(k["list"], b"\xff", b"\x00", b"\xff", b"")
    r.sadd(k["set"], b"\x00m", b"\xffm", b"\x80")
    r.pexpire(k["set"], 3 * HOUR_MS)
    r.zadd(k["zset"], {b"\x00a": 1.5, b"\xffb": -2.0})


def state(r, pattern="*"):
    """key -> (type, value, expiretime ms) for every key matching pattern (no DUMP involved)."""
    out = {}
    for key in r.scan_iter(match=pattern, count=1000):
        kind = r.type(key).decode()
        if kind == "string":
            value = r.get(key)
        elif kind == "hash":
            value = sorted(r.hgetall(key).items())
        elif kind == "list":
            value = r.lrange(key, 0, -1)
        elif kind == "set":
            value = sorted(r.smembers(key))
        elif kind == "zset":
            value = r.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = r.xrange(key)
        else:
            value = None
        out[key] = (kind, value, r.execute_command("PEXPIRETIME", key))
    return out


def demo_keys_in_scope(copies: int) -> int:
    """How many keys `demo.seed(copies=...)` writes inside the default patterns: each captured
    session `copies` times, a Spring Session hash and an ASP.NET Core hash per copy, and one
    Spring `expires:` companion key per copy."""
    from session_migration import demo

    return len(demo.real_sessions()) * copies + 3 * copies


# -- snapshots edited into states a live server cannot be put in -------------------------------


def rewrite_snapshot(url: str, rows: Callable[[Any], Any] | None = None, earlier_ms: int = 0) -> None:
    """Edit the committed snapshot at `url` as if it had been written that way: `rows(table)`
    returns each part's rows changed (the part is written again with the core's own part
    writer), `earlier_ms` moves its start and end times back. The manifest's part list and
    checksum are made to match, so every reader accepts the result. This is how a test gets a
    row whose expiry has already passed: Redis deletes such a key at once, so no backup has one.
    """
    from session_migration import open_snapshot, storage
    from session_migration.snapshot import MANIFEST, manifest_bytes

    snap = open_snapshot(url)
    parts = [_rewrite_part(snap, part, rows) if rows else part.as_dict() for part in snap.parts]
    manifest = {**snap.manifest, "parts": parts}
    for name in ("started_at", "finished_at"):
        moved = dt.datetime.fromisoformat(manifest[name]) - dt.timedelta(milliseconds=earlier_ms)
        manifest[name] = moved.isoformat(timespec="milliseconds")
    storage.write_atomic(snap.fs, storage.join(snap.path, MANIFEST), manifest_bytes(manifest))


def _rewrite_part(snap, part, rows) -> dict[str, Any]:
    """Write `rows(<the part's rows>)` in place of `part`; its new manifest entry."""
    import pyarrow.parquet as pq

    from session_migration.sinks.snapshot import PartWriter

    with snap.fs.open(snap.part_path(part), "rb") as fh:
        table = rows(pq.read_table(fh))
    writer = PartWriter(snap.fs, snap.path, int(part.name.removeprefix("part-").removesuffix(".parquet")))
    for batch in table.to_batches():
        writer.write(batch)
    return writer.finish().as_dict()


def _with_expiry(table, expiry):
    import pyarrow as pa

    index = table.schema.get_field_index("expire_at_ms")
    return table.set_column(index, "expire_at_ms", pa.array(expiry, pa.int64()))


def expire_in_snapshot(url: str, keys: Iterable[bytes], at_ms: int) -> None:
    """Set the expiry instant of `keys` in the snapshot at `url` to `at_ms`."""
    chosen = set(keys)

    def change(table):
        pairs = zip(table.column("key").to_pylist(), table.column("expire_at_ms").to_pylist())
        return _with_expiry(table, [at_ms if key in chosen else at for key, at in pairs])

    rewrite_snapshot(url, change)


def backdate_snapshot(url: str, ms: int) -> None:
    """Make the snapshot at `url` as if it had been taken `ms` earlier: its start and end
    times and every expiry instant in it move back by `ms`. A key that had less than `ms`
    left to live at the backup has then already expired, though it never left the server."""

    def change(table):
        return _with_expiry(table, [None if at is None else at - ms for at in table.column("expire_at_ms").to_pylist()])

    rewrite_snapshot(url, change, earlier_ms=ms)


def now_ms() -> int:
    return int(time.time() * 1000)


# -- one Prefect flow run, read back from the server --------------------------------------------


def run_flow(flow, /, **parameters) -> tuple[Any, UUID]:
    """Call `flow` as a user would and keep its flow run id: returns (state, flow run id).
    `state.result()` is what the call would have returned, or raises what it would have raised."""
    state = flow(**parameters, return_state=True)
    return state, state.state_details.flow_run_id


@dataclass
class FlowRunRecord:
    """A flow run as the Prefect server holds it, with its own task runs and artifacts only."""

    run: Any
    task_runs: list[Any]
    artifacts: list[Any]

    def task_names(self) -> list[str]:
        """The task runs' names without their run suffix ("check-backup-3f2" -> "check-backup"), sorted."""
        return sorted(t.name.rsplit("-", 1)[0] for t in self.task_runs)

    def artifact_keys(self) -> list[str]:
        return sorted(a.key for a in self.artifacts if a.key)

    def artifact(self, key: str) -> Any:
        [found] = [a for a in self.artifacts if a.key == key]
        return found

    def table(self, key: str) -> list[dict[str, Any]]:
        """The rows of the table artifact `key`, its numbers read back ("3,314,000" -> 3314000:
        tables show them with separators)."""
        data = self.artifact(key).data
        rows = json.loads(data) if isinstance(data, str) else data
        return [{k: _number(v) for k, v in row.items()} for row in rows]

    def text(self) -> str:
        """Every artifact's data and description, as one string (for what must never be shown)."""
        return "\n".join(f"{a.key}: {a.description}\n{a.data}" for a in self.artifacts)


def _number(value: Any) -> Any:
    return int(value.replace(",", "")) if isinstance(value, str) and _GROUPED.match(value) else value


_GROUPED = re.compile(r"^-?\d{1,3}(,\d{3})*$")


def read_flow_run(flow_run_id: UUID, task_runs: int = 0, timeout: float = 30.0) -> FlowRunRecord:
    """The flow run `flow_run_id`, its task runs and its artifacts, from the Prefect server.

    Artifacts are written while the flow runs; task runs reach the server as events after it
    has returned: read until `task_runs` of them are there, each in a final state (or until
    `timeout`, after which the caller's assertions say what is missing). Nothing of another
    run is read, whatever else the shared server holds.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId

    async def read() -> FlowRunRecord:
        async with get_client() as client:
            of_run = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            deadline = time.monotonic() + timeout
            while True:
                tasks = await client.read_task_runs(flow_run_filter=of_run)
                settled = len(tasks) >= task_runs and all(t.state and t.state.is_final() for t in tasks)
                if settled or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            run = await client.read_flow_run(flow_run_id)
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
            return FlowRunRecord(run, tasks, artifacts)

    return asyncio.run(read())
