"""How a command runs: directly or as a Prefect flow, and how it ends (results, errors, Ctrl-C).

Two modes, one behaviour. Both run `session_migration.parameters.run_operation` with the same
parameters, so the work, the retries (one policy), the progress, the messages and the summary
are the same:

- **direct** (no Prefect API configured): the operation's steps are plain calls in this
  process. Nothing of Prefect is imported, so a command answers in about a second.
- **flow** (`PREFECT_API_URL` set, in the environment or the active Prefect profile): the
  command runs the Prefect flow of the same name, visible in the UI; each step is a task.

`--prefect` / `--no-prefect` choose explicitly; `--prefect` without a server runs Prefect's
temporary (ephemeral) server.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import sys
import time
import tomllib
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import typer

from .terminal import TerminalFeedback, emit_error, err, flush, safe

CONNECTIONS = ("source", "target", "a", "b")
PASSWORD_ENV = {name: f"SESSION_MIGRATION_{name.upper()}_PASSWORD" for name in CONNECTIONS}
SENTINEL_PASSWORD_ENV = {name: f"SESSION_MIGRATION_{name.upper()}_SENTINEL_PASSWORD" for name in CONNECTIONS}
EXIT_SIGINT, EXIT_SIGTERM = 130, 143
EPHEMERAL_STARTUP_S = "180"


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (which Python raises as KeyboardInterrupt)."""


def install_signal_handlers() -> None:
    def terminate(_signum: int, _frame: Any) -> None:
        raise Terminated()

    signal.signal(signal.SIGTERM, terminate)


# -- which mode ---------------------------------------------------------------------------------


def prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()


def prefect_api_configured() -> bool:
    """True when Prefect would talk to a server: PREFECT_API_URL in the environment or in the
    active profile of profiles.toml (read here, without importing Prefect)."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    path = Path(os.environ.get("PREFECT_PROFILES_PATH") or prefect_home() / "profiles.toml")
    try:
        profiles = tomllib.loads(path.read_text())
    except (OSError, ValueError):
        return False
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active", "ephemeral")
    return bool(profiles.get("profiles", {}).get(active, {}).get("PREFECT_API_URL"))


def use_prefect(choice: bool | None) -> bool:
    return prefect_api_configured() if choice is None else choice


def prepare_prefect(debug: bool) -> None:
    """Environment for Prefect, set before it is imported: no telemetry, its console output only
    with --debug (logs still reach the server and the UI), and a start-up limit for its
    temporary server that a first start (which migrates a new database) fits in."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", EPHEMERAL_STARTUP_S)
    if not debug:
        for handler in ("CONSOLE", "DEBUG"):
            os.environ.setdefault(f"PREFECT_LOGGING_HANDLERS_{handler}_LEVEL", "CRITICAL")
        os.environ.setdefault("PREFECT_INTERNAL_LOGGING_LEVEL", "CRITICAL")
    if not prefect_api_configured():
        database = prefect_home() / "prefect.db"
        if not database.exists() and not os.environ.get("PREFECT_API_DATABASE_CONNECTION_URL"):
            err.print(f"Starting Prefect's temporary server for the first time: it prepares its database in "
                      f"{safe(prefect_home())} (once, 20-60 s).", soft_wrap=True)


# -- connections ----------------------------------------------------------------------------------


def hand_to_flow(params: dict[str, Any]) -> dict[str, Any]:
    """Flow parameters are stored by Prefect: a password typed in a connection URL moves to an
    environment variable of this process, and the flow gets `?password_env=` instead."""
    from session_migration.endpoints import RedisEndpoint

    moved = dict(params)
    for name in CONNECTIONS:
        value = moved.get(name)
        if isinstance(value, str) and "://" in value and urlsplit(value).scheme.lower() in _redis_schemes():
            endpoint = given = RedisEndpoint.from_url(value)
            if given.has_inline_password:
                os.environ[PASSWORD_ENV[name]] = given.password or ""
                endpoint = replace(endpoint, password=None, password_env=PASSWORD_ENV[name])
            if given.sentinel_password is not None:  # the sentinels' own password (Sentinel URLs)
                os.environ[SENTINEL_PASSWORD_ENV[name]] = given.sentinel_password
                endpoint = replace(endpoint, sentinel_password=None, sentinel_password_env=SENTINEL_PASSWORD_ENV[name])
            if endpoint is not given:
                moved[name] = endpoint.parameter_url
    return moved


def _redis_schemes() -> tuple[str, ...]:
    from session_migration.endpoints import SCHEMES

    return SCHEMES


def masked_command(extra: list[str] | None = None) -> str:
    """This very command line, passwords in URLs replaced by ****, plus `extra` arguments."""
    from session_migration.endpoints import SECRET_OPTIONS

    secret_option = re.compile(rf"([?&](?:{'|'.join(sorted(SECRET_OPTIONS))})=)[^&#]*")
    words = []
    for word in sys.argv[1:] + (extra or []):
        if "://" in word and "@" in word:
            parts = urlsplit(word)
            if parts.password:
                word = word.replace(f":{parts.password}@", ":****@", 1)
        if "://" in word:
            word = secret_option.sub(r"\1****", word)
        words.append(word)
    return "session-migration " + shlex.join(words)


# -- one command's run --------------------------------------------------------------------------


class Invocation:
    """One command: runs its operation in the chosen mode and turns every way it can end into an
    exit code, a message and (with --json) one JSON object on stdout's last line."""

    def __init__(self, as_json: bool, debug: bool, prefect: bool | None):
        self.as_json = as_json
        self.debug = debug
        self.flow_mode = use_prefect(prefect)
        self.feedback = TerminalFeedback(as_json)
        self.interrupted_line = "Interrupted; nothing was left half-written. Run the same command again to go on."

    def run(self, flow_name: str, params: dict[str, Any]) -> dict[str, Any]:
        """The operation of `flow_name` with these flow parameters, in this invocation's mode."""
        if self.flow_mode:
            prepare_prefect(self.debug)
            from tasks.progress import subscribe

            import flows

            unsubscribe = subscribe(self.feedback)
            try:
                return _ephemeral_start_failures(getattr(flows, flow_name), hand_to_flow(params))
            finally:
                unsubscribe()
        from session_migration.parameters import run_operation
        from session_migration.runner import DirectRunner

        if any(isinstance(params.get(n), str) and params[n] and "://" not in params[n] for n in CONNECTIONS):
            import tasks.blocks  # noqa: F401 - a block name: Prefect loads it

        return run_operation(flow_name, DirectRunner(self.feedback), params)

    def __enter__(self) -> Invocation:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        self.feedback.close()
        if exc is None or isinstance(exc, (typer.Exit, SystemExit)):
            return False
        if isinstance(exc, KeyboardInterrupt):
            self._interrupted(EXIT_SIGTERM if isinstance(exc, Terminated) else EXIT_SIGINT)
        from session_migration.errors import SessionMigrationError

        if self.debug:
            traceback.print_exception(exc, file=sys.stderr)
        if isinstance(exc, (SessionMigrationError, ValueError)):
            extra = {k: v for k, v in (("summary", getattr(exc, "summary", None)),) if v}
            if extra:
                extra.update(migration_id=extra["summary"].get("migration_id"),
                             rolled_back=extra["summary"].get("rolled_back"))
            emit_error(str(exc) or exc.__class__.__name__, exc.__class__.__name__, self.as_json, extra)
        else:
            emit_error(f"{exc.__class__.__name__}: {exc}" + ("" if self.debug else " (run with --debug for details)"),
                       exc.__class__.__name__, self.as_json)
        raise typer.Exit(1)

    def _interrupted(self, code: int) -> None:
        err.print(f"\n[bold yellow]{safe(self.interrupted_line)}[/]", soft_wrap=True)
        if self.as_json:
            print('{"error": "interrupted", "kind": "Interrupted", "resume": %s}' % _json(self.interrupted_line))
        if self.flow_mode and self.feedback.run_id:
            _mark_cancelled(self.feedback.run_id, self.interrupted_line)
        flush()
        # Prefect's background services would now retry a temporary server that died with the
        # same signal; the checkpoint is already durable, so leave at once.
        os._exit(code)


def _json(text: str) -> str:
    import json

    return json.dumps(text)


def _ephemeral_start_failures(flow: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Run the flow; one clear sentence when Prefect's temporary server cannot start."""
    try:
        return flow(**params)
    except RuntimeError as exc:
        if "ephemeral Prefect API server" not in str(exc):
            raise
        from session_migration.errors import ServerUnavailable

        raise ServerUnavailable(
            f"Prefect's temporary server did not start within "
            f"{os.environ['PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS']} s. Run the command again (its "
            "database is prepared now), raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, point "
            "PREFECT_API_URL at a running Prefect server, or use --no-prefect.") from None


def _mark_cancelled(run_id: str, message: str) -> None:
    """Best effort, bounded: the flow run shows Cancelled, with the resume line, in the UI."""
    try:
        from prefect.client.orchestration import get_client
        from prefect.states import Cancelled

        started = time.monotonic()
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run_id, Cancelled(message=message), force=True)
        if time.monotonic() - started > 3:
            return
    except Exception:  # noqa: BLE001 - the server may be gone (it shares our terminal's signals)
        pass
