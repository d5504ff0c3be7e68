"""Helpers the integration and flow tests share: seeding every Redis type, the state of a
server, and the latest Prefect flow run."""

from __future__ import annotations

import asyncio
import time

HOUR_MS = 3600 * 1000


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


def latest_flow_run():
    """The newest flow run, its task runs and every artifact, from the Prefect server.

    Task runs reach the server as events, after the flow has returned: read until their number
    stops changing (or 15 s pass)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    async def read():
        async with get_client() as client:
            runs = await client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)
            of_run = FlowRunFilter(id=FlowRunFilterId(any_=[runs[0].id]))
            tasks, deadline = None, time.monotonic() + 15
            while True:
                newer = await client.read_task_runs(flow_run_filter=of_run)
                if tasks is not None and len(newer) == len(tasks) or time.monotonic() > deadline:
                    break
                tasks = newer
                await asyncio.sleep(0.5)
            artifacts = await client.read_artifacts()
            return runs[0], newer, artifacts

    return asyncio.run(read())
