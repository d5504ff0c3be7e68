"""`dask_address`: where a flow's per-unit tasks run (prefect-dask's `DaskTaskRunner`).

With a Dask scheduler's address, the flow runs with `DaskTaskRunner(address=...)`: called
directly (the CLI's `--dask`, notebooks), `SessionFlow` chooses it with `flow.with_options`
before the run starts; a run of a deployment (whose task runner is fixed in code) enters one of
its own for the per-unit tasks. Either way the address is checked first, so a wrong one gets
one sentence, not a 30 s wait inside Prefect. Only the steps an operation runs with
`Runner.each` (backup units, groups of restored parts, an audit's per-part checks and counts)
go to the cluster; the others run in the flow's process. What the workers need to reach:
docs/scale-out.md.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from session_migration.errors import DaskUnavailable
from session_migration.redaction import safe_text

CONNECT_TIMEOUT_S = 10

# (the task runner the per-unit tasks go to, the threads its cluster had) in a flow run with dask_address
UNITS: ContextVar[tuple[Any, int] | None] = ContextVar("session_migration_units", default=None)


def dask_threads(address: str) -> int:
    """The worker threads the Dask scheduler at `address` has now (at least 1); one clear
    sentence when it cannot be reached."""
    from distributed import Client

    shown = safe_text(address)
    if not isinstance(address, str) or not address.strip():
        raise DaskUnavailable("dask_address must be a Dask scheduler address such as tcp://HOST:8786.")
    try:
        with Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False) as client:
            return max(1, sum(client.nthreads().values()))
    except (ValueError, TypeError) as exc:
        raise DaskUnavailable(f"{shown} is not a Dask scheduler address ({safe_text(str(exc))}); give one such as "
                              "tcp://HOST:8786 (--dask / dask_address).") from None
    except (OSError, TimeoutError) as exc:
        raise DaskUnavailable(f"No Dask scheduler answered at {shown} within {CONNECT_TIMEOUT_S} s "
                              f"({type(exc).__name__}); start it (dask scheduler) or fix --dask / dask_address.") from None


def task_runner(address: str) -> Any:
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(address=address)


@contextlib.contextmanager
def units_on(address: str | None) -> Iterator[None]:
    """Inside a flow run: the per-unit tasks go to the Dask cluster at `address` (the flow's own
    task runner when it is that one, else one entered here); nothing changes without one."""
    if not address:
        yield
        return
    from prefect.context import FlowRunContext
    from prefect_dask import DaskTaskRunner

    threads = dask_threads(address)
    context = FlowRunContext.get()
    own = context.task_runner if context is not None else None
    with contextlib.ExitStack() as stack:
        stack.enter_context(_temporary_server_for_tasks())
        if not isinstance(own, DaskTaskRunner):  # a deployment's run: its task runner is fixed in code
            own = stack.enter_context(task_runner(address))
        token = UNITS.set((own, threads))
        try:
            yield
        finally:
            UNITS.reset(token)


def _temporary_server_for_tasks() -> contextlib.AbstractContextManager[Any]:
    """Without a Prefect server configured, this flow runs against Prefect's temporary server,
    which the tasks (other processes) would not know: each would start one of its own. Name it
    in the settings the tasks are sent with (it listens on loopback: workers of this machine
    reach it; others need a real server, PREFECT_API_URL)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        return contextlib.nullcontext()
    # Prefect's client imports its server package to start the temporary server, so a process
    # without it loaded has none. Importing it only to ask cost 2-4 s (FastAPI, SQLAlchemy and
    # the server's models): most of what a Dask flow run cost more than the same flow without.
    server_module = sys.modules.get("prefect.server.api.server")
    if server_module is None:
        return contextlib.nullcontext()
    server = server_module.SubprocessASGIServer()
    if not server.running:
        return contextlib.nullcontext()
    return temporary_settings({PREFECT_API_URL: server.api_url})
