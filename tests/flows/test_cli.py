"""The command line, run as a user would: a subprocess, stdout parsed as scripts parse it.

Both modes are exercised: *direct* (no Prefect API configured: the core runs in the process)
and *flow* (PREFECT_API_URL points at the test suite's Prefect server: each command is a flow
run). They must agree on results, exit codes and messages.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.flows, pytest.mark.integration, pytest.mark.slow,
              pytest.mark.usefixtures("prefect_harness")]  # flow-mode runs report to the shared server

CLI = [sys.executable, "-m", "session_migration_cli"]


def cli_env(mode: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    if mode == "direct":
        env.pop("PREFECT_API_URL", None)
        env.setdefault("PREFECT_HOME", str(Path(env.get("TMPDIR", "/tmp")) / "no-prefect-profile"))
    return env


def cli(*args: str, mode: str = "direct", env: dict[str, str] | None = None, timeout: float = 300):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=cli_env(mode, **(env or {})),
                          timeout=timeout)


def last_json(stdout: str):
    return json.loads(stdout.strip().splitlines()[-1])


def rows(snapshot_dir: Path) -> set[tuple]:
    out = set()
    for part in sorted((snapshot_dir / "parts").glob("*.parquet")):
        table = pq.read_table(part, columns=["key", "type", "value", "expire_at_ms"])
        out |= set(zip(*(table.column(c).to_pylist() for c in table.column_names)))
    return out


# -- two modes, one behaviour ---------------------------------------------------------------------


def test_backup_direct_and_as_a_flow_give_the_same_result(valkey, tmp_path):
    r = valkey.client()
    for i in range(100):
        r.set(f"sess:{i}", f"v{i}", ex=600)
    r.set("other:key", "out of scope")
    results = {}
    for mode in ("direct", "flow"):
        done = cli("backup", valkey.url, str(tmp_path), "-p", "sess:*", "--batch-size", "10",
                   "--snapshot-id", f"cli-{mode}", "--json", mode=mode)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        assert "Backed up 100 keys" in done.stderr  # the same sentence in both modes
        results[mode] = last_json(done.stdout)
    assert results["direct"]["snapshot"] == f"file://{tmp_path}/cli-direct"
    for summary in results.values():
        summary.pop("snapshot"), summary.pop("snapshot_id")
    assert results["direct"] == results["flow"]
    assert results["direct"]["keys"] == 100 and results["direct"]["by_pattern"] == {"sess:*": {"keys": 100, "bytes": 290}}
    assert rows(tmp_path / "cli-direct") == rows(tmp_path / "cli-flow")
    listed = cli("snapshots", str(tmp_path), "--json")
    assert listed.returncode == 0, listed.stderr
    answer = last_json(listed.stdout)
    assert answer["root"] == f"file://{tmp_path}"
    assert [s["snapshot_id"] for s in answer["snapshots"]] == ["cli-direct", "cli-flow"]


def test_a_flow_mode_run_is_recorded_with_its_counts_and_no_prefect_noise(valkey, tmp_path):
    from prefect.client.orchestration import get_client

    valkey.client().set("sess:logged", "v")
    done = cli("backup", valkey.url, str(tmp_path), "-p", "sess:*", "--snapshot-id", "logged", "--json", mode="flow")
    assert done.returncode == 0, done.stderr
    # Prefect's own console output (log lines, EventsWorker warnings, server notices) stays out
    assert " | INFO" not in done.stderr and "EventsWorker" not in done.stderr and "prefect" not in done.stderr.lower()
    with get_client(sync_client=True) as client:
        runs = [r for r in client.read_flow_runs(limit=20) if r.parameters.get("snapshot_id") == "logged"]
        assert len(runs) == 1 and runs[0].state.is_completed()
        deadline = time.monotonic() + 30
        while True:  # logs reach the server in batches: wait for the sentence itself
            logs = client.read_logs(log_filter=_logs_of(runs[0].id))
            if any("Backed up 1 keys" in log.message for log in logs) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert any("Backed up 1 keys" in log.message and "logged" in log.message for log in logs)


def _logs_of(flow_run_id):
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    return LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))


def test_first_run_with_a_fresh_prefect_home_works(valkey, tmp_path):
    """--prefect without a server: Prefect's temporary server migrates a new database first."""
    valkey.client().set("sess:first", "v")
    home = tmp_path / "fresh-prefect-home"
    env = cli_env("direct", PREFECT_HOME=str(home))
    env.pop("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", None)
    done = subprocess.run([*CLI, "backup", valkey.url, str(tmp_path / "snaps"), "-p", "sess:*", "--prefect", "--json"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "for the first time" in done.stderr and last_json(done.stdout)["keys"] == 1
    assert (home / "prefect.db").is_file()


# -- Ctrl-C and SIGTERM ----------------------------------------------------------------------------


def _default_sigint() -> None:
    """As in a terminal: a command started from a background job inherits SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_mid_backup(url: str, root: Path, sig: int, mode: str) -> subprocess.CompletedProcess:
    """Start a backup, wait for its first committed part, then send `sig`."""
    proc = subprocess.Popen([*CLI, "backup", url, str(root), "-p", "sess:*", "--part-rows", "2000",
                             "--batch-size", "200"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env(mode), preexec_fn=_default_sigint)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        checkpoints = list(root.glob("*/checkpoint.json"))
        if checkpoints and json.loads(checkpoints[0].read_text() or "{}").get("parts"):
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the backup ended before it could be interrupted"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("sig, code, mode", [(signal.SIGINT, 130, "direct"), (signal.SIGTERM, 143, "flow")])
def test_interrupted_backup_says_how_to_resume_and_the_resume_completes_it(valkey, tmp_path, sig, code, mode):
    r = valkey.client()
    pipe = r.pipeline(transaction=False)
    for i in range(120_000):
        pipe.set(f"sess:{i:07d}", b"x" * 64, px=3_600_000)
    pipe.execute()
    stopped = _interrupt_mid_backup(valkey.url, tmp_path / "interrupted", sig, mode)
    assert stopped.returncode == code, stopped.stderr
    assert "Traceback" not in stopped.stderr
    line = [ln for ln in stopped.stderr.splitlines() if "Resume with: " in ln]
    assert len(line) == 1, stopped.stderr
    snapshot_id = line[0].split("Interrupted: snapshot ", 1)[1].split(" ", 1)[0]
    assert not (tmp_path / "interrupted" / snapshot_id / "manifest.json").exists()  # not readable as complete
    command = shlex.split(line[0].split("Resume with: ", 1)[1])
    assert command[0] == "session-migration" and command[-2:] == ["--snapshot-id", snapshot_id]
    resumed = subprocess.run([*CLI, *command[1:], "--json"], capture_output=True, text=True, env=cli_env("direct"),
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "part(s) with" in resumed.stderr and "already written are reused" in resumed.stderr
    assert last_json(resumed.stdout)["keys"] == 120_000
    whole = cli("backup", valkey.url, str(tmp_path / "whole"), "-p", "sess:*", "--snapshot-id", "whole")
    assert whole.returncode == 0, whole.stderr
    assert rows(tmp_path / "interrupted" / snapshot_id) == rows(tmp_path / "whole" / "whole")
    if mode == "flow":
        _assert_flow_run_cancelled_with(snapshot_id)


def _assert_flow_run_cancelled_with(snapshot_id: str) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        runs = [r for r in client.read_flow_runs(limit=50) if r.parameters.get("snapshot_id") == snapshot_id]
    assert len(runs) == 1
    assert runs[0].state.is_cancelled() and "Resume with: session-migration" in runs[0].state.message


# -- bad input: one clear sentence, a JSON object, no traceback ----------------------------------------


@pytest.fixture(scope="module")
def http_port():
    """A port that answers HTTP, not Redis."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("args, code, message", [
    (["backup", "mongodb://x", "{tmp}"], 1, "Unknown URL scheme 'mongodb'"),
    (["backup", "redis//127.0.0.1:6379", "{tmp}"], 1, "did you mean redis://127.0.0.1:6379?"),
    (["backup", "redis://127.0.0.1:{http}/0", "{tmp}"], 1, "but not in the Redis protocol"),
    (["backup", "redis://127.0.0.1:1/0", "{tmp}", "--batch-size", "0"], 1, "batch_size must be a whole number from 1"),
    (["backup", "redis://127.0.0.1:1/0"], 2, "Missing argument 'DEST'"),
    (["backup", "redis://127.0.0.1:1/0", "{tmp}", "--no-such-option"], 2, "No such option: --no-such-option"),
    (["snapshots", "{tmp}/no-such-root"], 1, "The snapshot root file://{tmp}/no-such-root does not exist"),
    (["validate", "{tmp}"], 1, None),
])
def test_bad_input_is_one_clear_sentence(args, code, message, tmp_path, http_port):
    done = cli(*[a.replace("{tmp}", str(tmp_path)).replace("{http}", str(http_port)) for a in args], "--json")
    assert done.returncode == code, done.stderr
    assert len(done.stdout.strip().splitlines()) == 1  # one JSON object, and nothing else on stdout
    answer = last_json(done.stdout)
    assert "Traceback" not in done.stderr
    if message is None:  # validate of a folder that is not a snapshot: a report, not valid
        assert answer["valid"] is False and answer["problems"]
        assert "unfinished" not in json.dumps(answer)  # no checkpoint: not called an unfinished backup
    else:
        assert message.replace("{tmp}", str(tmp_path)).lower() in answer["error"].lower()
        assert message.replace("{tmp}", str(tmp_path)).lower() in done.stderr.lower()


@pytest.mark.parametrize("mode", ["direct", "flow"])
def test_session_ids_never_appear_whole_in_cli_output(valkey, redis_server, mode):
    """verify --json names mismatching keys as examples, and cleanup lists candidates: a session
    id (a bearer credential) shows as a short prefix and a keyed hash, never whole."""
    session_id = "0123456789abcdef0123456789abcdef"
    for server, value in ((valkey, b'{"cookie":{}, "user": 1}'), (redis_server, b'{"cookie":{}, "user": 2}')):
        server.client().flushall()
        server.client().set(f"sess:{session_id}", value, px=3_600_000)
        server.client().set(f"sess:{session_id}:csrf", value[-4:], px=3_600_000)
    verified = cli("verify", valkey.url, redis_server.url, "-p", "sess:*", "--json", mode=mode)
    assert verified.returncode == 1, verified.stderr
    answer = last_json(verified.stdout)
    assert answer["counts"]["VALUE"] == 2
    assert any(e.startswith("sess:0123…#") for e in json.dumps(answer["examples"], ensure_ascii=False).split('"'))
    valkey.client().set(f"sess:{session_id}:x", b"{not json", px=3_600_000)
    cleaned = cli("cleanup", valkey.url, "--include", "corrupt", "--json", mode=mode)
    assert last_json(cleaned.stdout)["candidates"]["corrupt"] == 2, cleaned.stdout  # :csrf and :x
    for done in (verified, cleaned):
        assert session_id not in done.stdout + done.stderr
        assert session_id[:8] not in done.stdout + done.stderr


def test_unreachable_server_is_retried_out_loud(tmp_path):
    done = cli("backup", "redis://127.0.0.1:1/0", str(tmp_path), "--json")
    assert done.returncode == 1
    retries = [ln for ln in done.stderr.splitlines() if "retrying in" in ln]
    assert [ln.rsplit("(", 1)[1] for ln in retries] == ["1/3)", "2/3)", "3/3)"]
    assert "Cannot reach the Redis server at redis://127.0.0.1:1/0" in last_json(done.stdout)["error"]


def test_password_in_url_is_never_printed_and_never_a_flow_parameter(tmp_path):
    from prefect.client.orchestration import get_client

    from servers import start_server

    server = start_server("valkey", password="cli-secret-77")
    try:
        server.client().set("sess:p", "v")
        for mode in ("direct", "flow"):
            done = cli("backup", server.url, str(tmp_path), "-p", "sess:*", "--snapshot-id", f"pw-{mode}", "--json",
                       "--debug", mode=mode)
            assert done.returncode == 0, done.stderr
            assert "cli-secret-77" not in done.stdout + done.stderr
        wrong = cli("backup", server.url.replace("cli-secret-77", "nope-nope"), str(tmp_path), "--json", mode="flow")
        assert wrong.returncode == 1
        error = last_json(wrong.stdout)["error"]
        # names the server the operator typed, not the variable the CLI handed the password through
        assert f"Authentication to redis://127.0.0.1:{server.port}/0 failed" in error
        assert "password_env" not in wrong.stderr + wrong.stdout and "nope-nope" not in wrong.stdout + wrong.stderr
        with get_client(sync_client=True) as client:
            recorded = [r.parameters for r in client.read_flow_runs(limit=200)]
        assert recorded and all("cli-secret-77" not in json.dumps(p) and "nope-nope" not in json.dumps(p)
                                for p in recorded)
    finally:
        server.stop()


# -- output contract --------------------------------------------------------------------------------


def test_long_paths_are_printed_whole_at_80_columns(valkey, tmp_path):
    valkey.client().set("sess:x", "v")
    root = tmp_path
    while len(str(root)) < 200:
        root = root / "a-rather-long-folder-name"
    done = cli("backup", valkey.url, str(root), "-p", "sess:*", "--snapshot-id", "long-one", env={"COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    url = f"file://{root}/long-one"
    assert len(url) > 200 and url in done.stdout and "…" not in done.stdout
    listed = cli("snapshots", str(root), env={"COLUMNS": "80"})
    assert f"file://{root}" in listed.stdout and "…" not in listed.stdout


def test_validate_exit_codes_and_json(valkey, tmp_path):
    valkey.client().set("sess:v", "v")
    assert cli("backup", valkey.url, str(tmp_path), "-p", "sess:*", "--snapshot-id", "v1").returncode == 0
    good = cli("validate", str(tmp_path / "v1"), "--json")
    assert good.returncode == 0 and last_json(good.stdout)["valid"] is True
    part = next((tmp_path / "v1" / "parts").glob("*.parquet"))
    part.write_bytes(part.read_bytes()[:-20])
    bad = cli("validate", str(tmp_path / "v1"), "--json")
    assert bad.returncode == 1
    answer = last_json(bad.stdout)
    assert answer["valid"] is False and {p["code"] for p in answer["problems"]} >= {"part-size"}


def test_demo(tmp_path):
    done = cli("demo", "--output", str(tmp_path / "demo"), "--copies", "3", "--json", mode="flow")
    assert done.returncode == 0, done.stderr
    summary = last_json(done.stdout)
    assert summary["keys"] == 126 and summary["snapshot"].startswith("file://")
    assert summary["by_store"].get("unknown", 0) == 0  # every demo key is a recognised session
    assert summary["verify"]["ok"] and summary["verify"]["counts"]["MISSING"] == 0


def test_snapshots_prune_dry_run_then_apply(valkey, tmp_path):
    valkey.client().set("sess:x", "v")
    for i in range(3):
        assert cli("backup", valkey.url, str(tmp_path), "-p", "sess:*", "--snapshot-id", f"s{i}").returncode == 0
    dry = cli("snapshots", "prune", str(tmp_path), "--keep-last", "1", "--json")
    assert dry.returncode == 0, dry.stderr
    assert [s["snapshot_id"] for s in last_json(dry.stdout)["delete"]] == ["s1", "s0"]
    assert len(last_json(cli("snapshots", str(tmp_path), "--json").stdout)["snapshots"]) == 3
    applied = cli("snapshots", "prune", str(tmp_path), "--keep-last", "1", "--apply", "--json", mode="flow")
    assert last_json(applied.stdout)["deleted"] == 2
    assert [s["snapshot_id"] for s in last_json(cli("snapshots", str(tmp_path), "--json").stdout)["snapshots"]] == ["s2"]
    refused = cli("snapshots", "prune", str(tmp_path), "--json")
    assert refused.returncode == 1 and "keep_last and/or keep_days" in last_json(refused.stdout)["error"]
