"""Expired-session cleanup: classify, snapshot what will go, then compare-and-delete.

Categories (expired is always in; the others are opt-in):

    expired   the store itself would refuse the session (TTL or payload expiry passed), or it
              has no TTL and has been idle longer than the operator's max age for its store
    stale     payload expiry passed but not enforced, or no TTL where the store always sets one
    corrupt   the store could not decode it
    locks     phpredis `<key>_LOCK` keys without a TTL (never released)
    orphans   Spring Session companion keys whose session is gone

Safety: a dry run by default; nothing outside the configured patterns is touched; a run that
would delete more than `max_delete` keys is refused before deleting anything; before the
first delete the doomed keys are written to a snapshot (restore it to undo the run); each
key is deleted only if everything its choice rested on still holds, checked and deleted in
one atomic script at the server (`_COMPARE_AND_DELETE`): the same type and expiry, the same
content (SHA-1 of a string's value; of every field and value of a hash, of every member of a
set, of a list's items in order; sorted sets and streams are judged by type alone, so their
type is what is compared), still idle longer than the max age for a key chosen by idle time,
and for an orphan, its session still absent. A session the application refreshed, read or
recreated meanwhile survives (counted as changed).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec
import pyarrow as pa
from redis.crc import key_slot

from .endpoints import RedisEndpoint
from .errors import CleanupCapExceeded, InvalidParameter, ScopeViolation
from .options import CLEANUP_CATEGORIES, CLEANUP_OPTIONAL, BackupOptions, CleanupOptions
from .pipeline import write_snapshot
from .record import KeyRecord, records_from_batch
from .redaction import redact_key
from .redis_glob import ScopeMatcher
from .sessions import SessionStatus, classify
from .signing import Keyring
from .snapshot import PRE_IMAGE_SUFFIX, new_snapshot_id
from .sources import Read
from .sinks.cluster import open_sink
from .sinks.redis import RedisSink
from .sources.cluster import open_source
from .sources.redis import RedisSource
from .sources.segments import scan_fraction

CATEGORIES = CLEANUP_CATEGORIES
OPTIONAL = CLEANUP_OPTIONAL
MAX_EXAMPLES = 5

# ARGV[1] = n candidates, KEYS[1..n]; then per candidate i five arguments from ARGV[2 + 5(i-1)]:
# absolute expiry (-1: none), type, content digest ('' = type only), idle limit in ms ('' = not
# chosen by idle time) and the index in KEYS of a key that must still be absent ('' = none).
# KEYS[i] is unlinked only if all of them hold. Replies per key: 1 deleted, 0 changed, -1 gone.
# Digests: see `_expectation`, which computes the same in Python. OBJECT IDLETIME is read
# first, before any read that could count as a use of the key.
_COMPARE_AND_DELETE = """
local function combined(hexes)
  local sums = {0, 0, 0, 0, 0}
  for _, hex in ipairs(hexes) do
    for j = 1, 5 do sums[j] = (sums[j] + tonumber(string.sub(hex, 8 * j - 7, 8 * j), 16)) % 4294967296 end
  end
  return string.format('%08x%08x%08x%08x%08x', sums[1], sums[2], sums[3], sums[4], sums[5])
end
local function digest(key, kind)
  if kind == 'string' then return redis.sha1hex(redis.call('GET', key)) end
  local hexes, parts = {}, {}
  if kind == 'hash' then
    local flat = redis.call('HGETALL', key)
    for j = 1, #flat, 2 do hexes[#hexes + 1] = redis.sha1hex(#flat[j] .. ':' .. flat[j] .. flat[j + 1]) end
    return combined(hexes)
  elseif kind == 'set' then
    for _, member in ipairs(redis.call('SMEMBERS', key)) do hexes[#hexes + 1] = redis.sha1hex(member) end
    return combined(hexes)
  end
  for _, item in ipairs(redis.call('LRANGE', key, 0, -1)) do parts[#parts + 1] = #item .. ':' .. item end
  return redis.sha1hex(table.concat(parts))
end
local out = {}
for i = 1, tonumber(ARGV[1]) do
  local key, at = KEYS[i], 2 + 5 * (i - 1)
  local kind, want, idle, absent = ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4]
  local idle_ok = true
  if idle ~= '' then
    local seconds = redis.pcall('OBJECT', 'IDLETIME', key)
    idle_ok = type(seconds) == 'number' and seconds * 1000 > tonumber(idle)
  end
  local expire = redis.call('PEXPIRETIME', key)
  if expire == -2 then
    out[i] = -1
  elseif not idle_ok or expire ~= tonumber(ARGV[at]) or redis.call('TYPE', key)['ok'] ~= kind then
    out[i] = 0
  elseif want ~= '' and digest(key, kind) ~= want then
    out[i] = 0
  elseif absent ~= '' and redis.call('EXISTS', KEYS[tonumber(absent)]) == 1 then
    out[i] = 0
  else
    redis.call('UNLINK', key)
    out[i] = 1
  end
end
return out
"""


@dataclass
class CleanupReport:
    source: str
    dry_run: bool
    scanned: int = 0
    candidates: Counter = field(default_factory=Counter)  # category -> keys
    by_store: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    deleted: int = 0
    changed: int = 0  # refreshed by the application after we read them: kept
    gone: int = 0  # already deleted or expired by the time we got there
    pre_image: str | None = None  # snapshot of the deleted keys: restore it to undo

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "dry_run": self.dry_run, "scanned": self.scanned,
            "candidates": {c: self.candidates[c] for c in CATEGORIES}, "total": sum(self.candidates.values()),
            "by_store": dict(self.by_store), "examples": self.examples, "deleted": self.deleted,
            "changed": self.changed, "gone": self.gone, "pre_image": self.pre_image,
        }


@dataclass
class _Candidates:
    """The rows chosen for deletion, as Arrow batches (pattern, batch) ready for the pre-image,
    and per row (in batch order) what else the choice rested on: the idle limit it exceeded
    (chosen by idle time) and a key whose absence made it an orphan."""

    batches: list[tuple[str, pa.RecordBatch]] = field(default_factory=list)
    count: int = 0
    idle_limits: list[int | None] = field(default_factory=list)
    absent: list[bytes | None] = field(default_factory=list)

    def add(self, pattern: str, batch: pa.RecordBatch, idle_limits: list[int | None] | None = None,
            absent: bytes | None = None) -> None:
        self.batches.append((pattern, batch))
        self.count += batch.num_rows
        self.idle_limits += idle_limits or [None] * batch.num_rows
        self.absent += [absent] * batch.num_rows


@dataclass(frozen=True)
class CleanupProgress:
    keys: int  # keys scanned so far
    fraction: float  # rough 0..1 estimate: patterns done, and the SCAN cursor within the current one


def run_cleanup(endpoint: RedisEndpoint, options: CleanupOptions, *, fs: fsspec.AbstractFileSystem | None = None,
                root: str | None = None, now_ms: int | None = None, keyring: Keyring | None = None,
                progress: Callable[[CleanupProgress], None] | None = None) -> CleanupReport:
    """Find what to delete; with `options.apply`, snapshot it under `root` and delete it."""
    if options.apply and (fs is None or root is None):
        raise InvalidParameter("Deleting needs a backup path for the pre-image snapshot (--backup-path).")
    report = CleanupReport(source=endpoint.display_url, dry_run=not options.apply)
    source = open_source(endpoint)
    try:
        if not source.info.has_pexpiretime:
            raise InvalidParameter(f"{endpoint.display_url} runs {source.info.name} {source.info.version}; cleanup needs PEXPIRETIME (Redis >= 7.0 or Valkey).")
        if options.max_age_ms and not source.no_touch:
            raise InvalidParameter(
                f"A max age is judged by idle time, which reading would reset on {source.info.name} {source.info.version}; "
                "it needs CLIENT NO-TOUCH (Redis >= 7.2 or Valkey)."
            )
        chosen = _choose(source, options, report, now_ms or int(time.time() * 1000), progress)
        if chosen.count > options.max_delete:
            raise CleanupCapExceeded(
                f"This cleanup would delete {chosen.count:,} keys, more than the cap of {options.max_delete:,}; "
                "check the dry-run report and raise --max-delete to allow it. Nothing was deleted."
            )
        if options.apply and chosen.count:
            reads = [Read(None, batch, scope=options.patterns.index(pattern)) for pattern, batch in chosen.batches]
            pre = write_snapshot(fs, root, reads, endpoint, source.info,
                                 BackupOptions(patterns=options.patterns, part_rows=100_000,
                                               snapshot_id=f"{new_snapshot_id()}{PRE_IMAGE_SUFFIX}"), keyring)
            report.pre_image = pre.url
            sink = open_sink(endpoint)
            try:
                _delete(sink, chosen, options, report)
            finally:
                sink.close()
    finally:
        source.close()
    return report


def _choose(source: RedisSource, options: CleanupOptions, report: CleanupReport, now_ms: int,
            progress: Callable[[CleanupProgress], None] | None = None) -> _Candidates:
    wanted = {"expired"} | options.include
    dbsize = source.dbsize() if progress else 0
    chosen = _Candidates()
    spring_sessions: list[tuple[str, pa.RecordBatch, int, bytes]] = []  # companion rows to check later
    for chunk in source.read_chunks(options.patterns, options.batch_size):
        report.scanned += chunk.scanned
        if progress:
            within = scan_fraction(chunk.cursor, dbsize) if chunk.cursor else 1.0
            progress(CleanupProgress(report.scanned, (chunk.pattern_index + within) / len(options.patterns)))
        if chunk.result is None:
            continue
        batch = chunk.result.batch
        pattern = options.patterns[chunk.pattern_index]
        keep = [False] * batch.num_rows
        idle_limit: list[int | None] = [None] * batch.num_rows
        idle_checks: list[tuple[int, str | None, str | None]] = []  # (row, store, category otherwise)
        for i, record in enumerate(records_from_batch(batch)):
            verdict = classify(record, now_ms, options.max_age_ms)
            category = _category(record.key, verdict)
            if category == "orphans-check":
                spring_sessions.append((pattern, batch, i, _spring_session_key(record.key)))
                continue
            if record.expire_at_ms is None and verdict.store in options.max_age_ms and category in (None, "stale"):
                idle_checks.append((i, verdict.store, category))  # judged by idle time, below
                continue
            if category in wanted:
                keep[i] = True
                _note(report, category, verdict.store, record.key)
        idle = source.idle_ms([batch.column("key")[i].as_py() for i, _, _ in idle_checks])
        for (i, store, otherwise), idle_ms in zip(idle_checks, idle):
            too_old = idle_ms is not None and idle_ms > options.max_age_ms[store]
            category = "expired" if too_old else otherwise
            if category in wanted:
                keep[i] = True
                idle_limit[i] = options.max_age_ms[store] if too_old else None
                _note(report, category, store, batch.column("key")[i].as_py())
        if any(keep):
            chosen.add(pattern, batch.filter(pa.array(keep)), [limit for limit, k in zip(idle_limit, keep) if k])
    if "orphans" in wanted and spring_sessions:
        _orphans(source, spring_sessions, chosen, report)
    return chosen


def _category(key: bytes, verdict) -> str | None:
    if verdict.store == "spring" and b":sessions:expires:" in key:
        return "orphans-check"  # an expiry marker is an orphan when its session hash is gone
    if verdict.store == "php" and key.endswith(b"_LOCK"):
        return "locks" if verdict.status is SessionStatus.STALE else None
    return {
        SessionStatus.EXPIRED: "expired", SessionStatus.STALE: "stale", SessionStatus.CORRUPT: "corrupt",
    }.get(verdict.status)


def _spring_session_key(expires_key: bytes) -> bytes:
    return expires_key.replace(b":sessions:expires:", b":sessions:", 1)


def _orphans(source: RedisSource, rows, chosen: _Candidates, report: CleanupReport) -> None:
    alive = source.exists([session_key for _pattern, _batch, _i, session_key in rows])
    for (pattern, batch, i, session_key), exists in zip(rows, alive):
        if not exists:
            chosen.add(pattern, batch.slice(i, 1), absent=session_key)
            _note(report, "orphans", "spring", batch.column("key")[i].as_py())


def _note(report: CleanupReport, category: str, store: str | None, key: bytes) -> None:
    report.candidates[category] += 1
    report.by_store[store or "unknown"] += 1
    shown = report.examples.setdefault(category, [])
    if len(shown) < MAX_EXAMPLES:
        shown.append(redact_key(key))


def _rows(chosen: _Candidates) -> Iterator[tuple[KeyRecord, int | None, bytes | None]]:
    """Each chosen row as (record, idle limit, key that must be absent)."""
    records = (record for _pattern, batch in chosen.batches for record in records_from_batch(batch))
    yield from zip(records, chosen.idle_limits, chosen.absent)


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()  # noqa: S324 - a change detector matching redis.sha1hex, not a signature


def _combined(hexes: Iterable[str]) -> str:
    """Order-free digest of a collection: each 32-bit word of the SHA-1s summed mod 2**32."""
    sums = [0] * 5
    for hex_digest in hexes:
        for j in range(5):
            sums[j] = (sums[j] + int(hex_digest[8 * j : 8 * j + 8], 16)) % (1 << 32)
    return "".join(f"{s:08x}" for s in sums)


def _expectation(record: KeyRecord) -> tuple[str, str]:
    """(type, content digest) as `_COMPARE_AND_DELETE` computes them at the server; the digest
    is empty for the types whose content no judge reads (sorted sets, streams)."""
    if record.type == "string":
        return "string", _sha1(record.value or b"")
    if record.type == "hash":
        return "hash", _combined(_sha1(b"%d:" % len(f) + f + v) for f, v in record.fields or ())
    if record.type == "set":
        return "set", _combined(_sha1(m) for m in record.items or ())
    if record.type == "list":
        return "list", _sha1(b"".join(b"%d:" % len(x) + x for x in record.items or ()))
    return record.type, ""


def _delete(sink: RedisSink, chosen: _Candidates, options: CleanupOptions, report: CleanupReport) -> None:
    scope = ScopeMatcher(options.patterns)
    rows = list(_rows(chosen))
    keys = [record.key for record, _, _ in rows]
    inside = scope.mask(pa.array(keys, pa.binary())) if keys else []
    for key, ok in zip(keys, inside):  # belt and braces: SCAN MATCH chose them, the scope check proves it
        if not ok:
            raise ScopeViolation(f"{redact_key(key)} is outside the cleanup patterns; nothing more will be deleted.")
    started = time.monotonic()
    for start in range(0, len(rows), options.batch_size):
        batch = rows[start:start + options.batch_size]
        batch_keys = [record.key for record, _, _ in batch]
        absent_keys: list[bytes] = []
        args: list[Any] = [len(batch)]
        for record, idle_limit, absent in batch:
            kind, digest = _expectation(record)
            if absent is not None:
                absent_keys.append(absent)
            args += [-1 if record.expire_at_ms is None else record.expire_at_ms, kind, digest,
                     "" if idle_limit is None else idle_limit,
                     "" if absent is None else len(batch_keys) + len(absent_keys)]
        if getattr(sink, "clustered", False):
            outcome = _compare_and_delete_per_key(sink, batch)
        else:
            outcome = sink.run_script(_COMPARE_AND_DELETE, batch_keys + absent_keys, args)
        report.deleted += sum(1 for r in outcome if r == 1)
        report.changed += sum(1 for r in outcome if r == 0)
        report.gone += sum(1 for r in outcome if r == -1)
        if options.max_rate:
            ahead = (start + len(batch)) / options.max_rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)  # rate limit: stay under max_rate deletes per second


def _compare_and_delete_per_key(sink, batch: list) -> list:
    """The compare-and-delete on a cluster: a script there may touch one slot only, so it runs
    once per key. A companion key that must be absent (Spring's) and lives in another slot is
    checked just before, not atomically: if it appears in between, the key is deleted anyway,
    which the companion's own expiry already allows for."""
    calls = []
    outcome: list[Any] = [None] * len(batch)
    for i, (record, idle_limit, absent) in enumerate(batch):
        kind, digest = _expectation(record)
        keys = [record.key]
        companion = ""
        if absent is not None:
            if key_slot(absent) == key_slot(record.key):
                keys.append(absent)
                companion = 2
            elif sink.probe([absent])[1][0]:
                outcome[i] = 0  # the companion exists: the session is alive, kept
                continue
        calls.append((i, keys, [1, -1 if record.expire_at_ms is None else record.expire_at_ms, kind, digest,
                                "" if idle_limit is None else idle_limit, companion]))
    replies = sink.run_scripts(_COMPARE_AND_DELETE, [(keys, args) for _, keys, args in calls])
    for (i, _, _), reply in zip(calls, replies):
        outcome[i] = reply[0]
    return outcome


_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration_ms(text: str) -> int:
    """'90s', '30m', '12h', '7d', '500ms' or plain seconds -> milliseconds."""
    value = str(text).strip().lower()
    for unit in ("ms", "s", "m", "h", "d"):
        if value.endswith(unit) and value[: -len(unit)].replace(".", "", 1).isdigit():
            return int(float(value[: -len(unit)]) * _UNITS_MS[unit])
    if value.replace(".", "", 1).isdigit():
        return int(float(value) * 1000)
    raise InvalidParameter(f"{text!r} is not a duration; use e.g. 90s, 30m, 12h or 7d.")


def parse_max_age(items: Mapping[str, str] | list[str] | None) -> dict[str, int]:
    """`{"express": "30d"}` or `["express=30d"]` -> store -> ms, with known store names only."""
    from .sessions import STORES

    if not items:
        return {}
    pairs = items.items() if isinstance(items, Mapping) else [_split(item) for item in items]
    result = {}
    for store, duration in pairs:
        if store not in STORES:
            raise InvalidParameter(f"Unknown store {store!r} in a max age; stores are {', '.join(STORES)}.")
        result[store] = parse_duration_ms(duration)
    return result


def _split(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise InvalidParameter(f"{item!r} is not STORE=DURATION (for example express=30d).")
    store, duration = item.split("=", 1)
    return store.strip(), duration.strip()
