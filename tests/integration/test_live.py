"""Live transfer: the source's changes during and after the copy reach the target, through lost
notifications, a source restart, a kill -9 of the tool, and without notifications (scan mode).

An application is played by tests/live_writer.py (its own process: creates, refreshes, logouts,
PEXPIREs, hash sessions, short TTLs that expire). Each test stops the writer, then sends SIGTERM
to the tool, and then compares both servers key by key (verify, expiry within 2 s)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from servers import start_server

from session_migration.endpoints import RedisEndpoint
from session_migration.options import VerifyOptions
from session_migration.verify import verify

CLI = str(Path(sys.executable).with_name("session-migration"))
WRITER = str(Path(__file__).parents[1] / "live_writer.py")


def seed(server, n: int) -> None:
    client = server.client()
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        pipe.set(f"sess:{i:07d}", b"user=%d" % i, px=1_800_000)
        if len(pipe) >= 5000:
            pipe.execute()
    pipe.execute()


class Tool:
    """The CLI running `transfer --live` as a subprocess."""

    def __init__(self, tmp_path: Path, *args: str, name: str = "tool"):
        self.err_path = tmp_path / f"{name}.err"
        self.out_path = tmp_path / f"{name}.out"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.process = subprocess.Popen([CLI, *args, "--json", "--no-prefect"], stdout=out, stderr=err,
                                            env=cli_env(tmp_path))

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr():
            assert self.process.poll() is None, f"the tool exited early:\n{self.stderr()}"
            assert time.monotonic() < deadline, f"no {text!r} within {timeout} s:\n{self.stderr()}"
            time.sleep(0.1)

    def following(self, settle: float = 3) -> Tool:
        """Once it follows the source, and `settle` seconds of changes later."""
        self.wait_for("Now following")
        time.sleep(settle)
        return self

    def stop(self, timeout: float = 120) -> tuple[int, dict]:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        lines = self.out_path.read_text().strip().splitlines()
        return code, json.loads(lines[-1]) if lines else {}

    def finish(self, app: subprocess.Popen | None = None) -> dict:
        """Stop the application's writer (if any), then the tool; its summary, after a clean exit."""
        if app is not None:
            stop_writer(app)
        code, summary = self.stop()
        assert code == 0, self.stderr()
        return summary


def cli_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, SESSION_MIGRATION_STATE_DIR=str(tmp_path / "state"))
    env.pop("PREFECT_API_URL", None)
    return env


def run_cli(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """The CLI with --json, to its end; the process and its last stdout line as JSON."""
    done = subprocess.run([CLI, *args, "--json", "--no-prefect"], capture_output=True, text=True, timeout=120,
                          env=cli_env(tmp_path))
    lines = done.stdout.strip().splitlines()
    return done, json.loads(lines[-1]) if lines else {}


def writer(server, seconds: float, rate: float = 1500, keys: int = 20_000) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, WRITER, server.url, str(seconds), str(rate), str(keys)],
                            stdout=subprocess.PIPE)


def stop_writer(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=30)
    return int(out.strip() or 0)


def assert_equal(src, dst) -> None:
    report = verify(RedisEndpoint.from_url(src.url), RedisEndpoint.from_url(dst.url),
                    VerifyOptions(patterns=("sess:*",), ttl_tolerance_ms=2000))
    assert report.ok, report.as_dict()
    assert report.counts["OK"] > 0


@pytest.fixture
def pair():
    src, dst = start_server("redis"), start_server("valkey")
    try:
        yield src, dst
    finally:
        src.stop()
        dst.stop()


def _live(src, dst, tmp_path, *extra: str, name: str = "tool") -> Tool:
    return Tool(tmp_path, "transfer", src.url, dst.url, "-p", "sess:*", "--live", *extra, name=name)


def test_a_live_migration_under_writes_ends_with_both_sides_equal(pair, tmp_path):
    """The issue's own case: 100k sessions on Redis 7.0, ~1,500 writes/s for 40 s while
    `migrate --live` runs, then SIGTERM."""
    src, dst = pair
    seed(src, 100_000)
    dst.client().set(b"sess:target-own", b"kept")  # the target's own key: never the source's to delete
    dst.client().set(b"other:x", b"out of scope")
    app = writer(src, 60, keys=100_000)
    tool = Tool(tmp_path, "migrate", src.url, dst.url, "--backup-path", str(tmp_path / "snaps"), "-p", "sess:*",
                "--live")
    started = time.monotonic()
    tool.wait_for("Now following")
    src.client().set(b"other:y", b"changed on the source, out of scope")
    time.sleep(max(0.0, 40 - (time.monotonic() - started)))
    ops = stop_writer(app)
    summary = tool.finish()
    live = summary["live"]
    assert summary["step"] == "done" and live["stopped_by"] == "SIGTERM" and live["verify"]["ok"], live
    assert live["changes"] > 0 and live["deleted"] > 0 and live["gaps"] == 0 and live["kept_target_only"] == 1
    assert ops > 20_000
    assert dst.client().get(b"sess:target-own") == b"kept" and dst.client().get(b"other:x") == b"out of scope"
    assert dst.client().exists(b"other:y") == 0
    dst.client().delete(b"sess:target-own")
    assert_equal(src, dst)
    assert src.client().config_get("notify-keyspace-events")["notify-keyspace-events"] == ""  # put back


def test_a_killed_subscription_is_a_gap_repaired_by_a_compare_pass(pair, tmp_path):
    src, dst = pair
    seed(src, 20_000)
    app = writer(src, 60)
    tool = _live(src, dst, tmp_path).following()
    assert src.client().execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 1
    time.sleep(4)
    summary = tool.finish(app)
    assert summary["live"]["gaps"] >= 1 and summary["live"]["repairs"] >= 1, summary["live"]
    assert_equal(src, dst)


def test_a_source_restart_mid_follow_loses_nothing(pair, tmp_path):
    src, dst = pair
    seed(src, 20_000)
    app = writer(src, 60)
    tool = _live(src, dst, tmp_path).following()
    stop_writer(app)  # the writer would fail while the server is down
    src.restart()  # notify-keyspace-events is off again after it: the tool turns it back on
    app = writer(src, 60)
    time.sleep(5)
    summary = tool.finish(app)
    assert summary["live"]["gaps"] >= 1, summary["live"]
    assert_equal(src, dst)


def test_kill_9_then_the_same_command_resumes_with_a_repair_pass(pair, tmp_path):
    src, dst = pair
    seed(src, 20_000)
    app = writer(src, 120)
    tool = _live(src, dst, tmp_path).following()
    tool.process.kill()
    tool.process.wait()
    time.sleep(3)  # changes, logouts included, while nobody follows
    again = _live(src, dst, tmp_path, name="again")
    again.wait_for("compare-and-repair pass")
    time.sleep(4)
    summary = again.finish(app)
    assert summary["copy"] == "done before" and summary["live"]["repairs"] >= 1, summary
    assert_equal(src, dst)
    # the killed run had turned notifications on: the run that finished put back what it found before
    assert src.client().config_get("notify-keyspace-events")["notify-keyspace-events"] == ""


def test_without_config_rights_notify_mode_says_what_to_set_and_scan_mode_converges(tmp_path):
    src = start_server("redis", extra=("--rename-command", "CONFIG", ""))
    dst = start_server("valkey")
    try:
        seed(src, 5_000)
        refused, error = run_cli(tmp_path, "transfer", src.url, dst.url, "-p", "sess:*", "--live")
        assert refused.returncode == 1
        assert error["kind"] == "LiveUnavailable" and "--live-mode scan" in error["error"], error
        assert "notify-keyspace-events" in error["error"]
        assert dst.client().dbsize() == 0  # nothing written

        app = writer(src, 60, keys=5_000)
        tool = _live(src, dst, tmp_path, "--live-mode", "scan").following(settle=8)
        live = tool.finish(app)["live"]
        assert live["mode"] == "scan" and live["repairs"] >= 1 and live["verify"]["ok"], live
        assert_equal(src, dst)
    finally:
        src.stop()
        dst.stop()


def test_live_until_stops_by_itself(pair, tmp_path):
    src, dst = pair
    seed(src, 1_000)
    done, summary = run_cli(tmp_path, "transfer", src.url, dst.url, "-p", "sess:*", "--live", "--live-until", "3s")
    assert done.returncode == 0, done.stderr
    assert summary["live"]["stopped_by"] == "live_until" and summary["written"] == 1_000


@pytest.mark.parametrize("args, words", [
    (["--live", "--on-conflict", "skip"], "on_conflict=replace"),
    (["--live", "--ttl-policy", "relative"], "ttl_policy=absolute"),
    (["--live-mode", "scan"], "need live=true"),
    (["--live", "--live-mode", "fast"], "Unknown live_mode 'fast'"),
    (["--live", "--live-until", "soon"], "neither an instant"),
])
def test_bad_live_options_are_refused_before_anything_is_written(pair, tmp_path, args, words):
    src, dst = pair
    seed(src, 10)
    done, error = run_cli(tmp_path, "transfer", src.url, dst.url, "-p", "sess:*", *args)
    assert done.returncode == 1, done.stderr
    assert words in error["error"]
    assert dst.client().dbsize() == 0


def _migrate(src, dst, tmp_path, *extra: str, name: str = "migrate") -> Tool:
    return Tool(tmp_path, "migrate", src.url, dst.url, "--backup-path", str(tmp_path / "snaps"), "-p", "sess:*",
                *extra, name=name)


def test_a_live_migration_converges_and_resumes_after_kill_9(pair, tmp_path):
    src, dst = pair
    seed(src, 20_000)
    dst.client().set(b"sess:target-own", b"kept", px=1_800_000)
    app = writer(src, 120)
    tool = _migrate(src, dst, tmp_path, "--live").following()
    tool.process.kill()  # kill -9 while following
    tool.process.wait()
    migration_id = next((tmp_path / "snaps" / "migrations").glob("*.json")).stem
    state = json.loads((tmp_path / "snaps" / "migrations" / f"{migration_id}.json").read_text())
    assert state["step"] == "following", (state.get("error"), tool.stderr())
    time.sleep(3)  # changes, logouts included, while nobody follows
    summary = _migrate(src, dst, tmp_path, "--resume-live", migration_id, name="again").following().finish(app)
    assert summary["step"] == "done" and summary["live"]["repairs"] >= 1 and summary["live"]["verify"]["ok"], summary
    assert summary["live"]["kept_target_only"] == 1 and dst.client().get(b"sess:target-own") == b"kept"
    assert summary["audit"]["html"]
    dst.client().delete(b"sess:target-own")
    assert_equal(src, dst)


def test_a_live_migration_still_rolls_back_to_its_pre_image(pair, tmp_path):
    src, dst = pair
    seed(src, 2_000)
    dst.client().set(b"sess:0000001", b"the target's own value")
    before = {k: dst.client().dump(k) for k in dst.client().scan_iter(match="sess:*")}
    tool = _migrate(src, dst, tmp_path, "--live")
    tool.wait_for("Now following")
    src.client().set(b"sess:new-during-follow", b"v", px=600_000)
    time.sleep(2)
    tool.process.kill()
    tool.process.wait()
    assert dst.client().get(b"sess:new-during-follow") == b"v"  # it was followed
    migration_id = next((tmp_path / "snaps" / "migrations").glob("*.json")).stem
    done, _ = run_cli(tmp_path, "migrate", src.url, dst.url, "--backup-path", str(tmp_path / "snaps"), "-p", "sess:*",
                      "--resume-rollback", migration_id)
    assert done.returncode == 0, done.stderr
    after = {k: dst.client().dump(k) for k in dst.client().scan_iter(match="sess:*")}
    assert after == before


def test_changes_beyond_the_memory_limit_spill_to_files_and_all_arrive(pair, tmp_path):
    """Through the Python API: 6,000 keys changed while the copy runs, with room for 1,000 in
    memory: they go to spill files beside the checkpoint and every one reaches the target."""
    from session_migration import operations
    from session_migration.options import LiveOptions, TransferOptions
    from session_migration.runner import DirectRunner, Feedback

    src, dst = pair
    seed(src, 2_000)

    class ChangeDuringTheCopy(Feedback):
        def say(self, text: str) -> None:
            if text.startswith("Live: the source's changes are recorded"):  # recording, nothing copied yet
                pipe = src.client().pipeline(transaction=False)
                for i in range(6_000):
                    pipe.set(f"sess:spilled{i:05d}", f"v{i}", px=600_000)
                pipe.delete("sess:0000007")
                pipe.execute()
                time.sleep(1)  # the feed thread takes them in

    summary = operations.transfer_sessions(
        DirectRunner(ChangeDuringTheCopy()), src.url, dst.url, TransferOptions(patterns=("sess:*",)),
        checkpoint_path=str(tmp_path / "state"), live=LiveOptions(until="2s", max_pending_keys=1_000))
    live = summary["live"]
    # each SET ... PX makes two events (set, expire): one may land in a spill file and the other in
    # memory after it, and such a key is applied twice (harmless), so the count is a lower bound
    assert live["spills"] >= 1 and live["changes"] >= 6_001 and live["verify"]["ok"], live
    assert not any(p.name.endswith("-spill") and any(p.iterdir()) for p in (tmp_path / "state" / "transfers").iterdir())
    assert dst.client().get("sess:spilled05999") == b"v5999" and not dst.client().exists("sess:0000007")
    assert_equal(src, dst)


def test_kill_9_during_the_copy_then_the_rerun_repairs_what_changed_meanwhile(pair, tmp_path):
    src, dst = pair
    seed(src, 150_000)
    tool = _live(src, dst, tmp_path)
    tool.wait_for("recorded from now")
    while dst.client().dbsize() < 20_000:  # part of the copy done
        assert tool.process.poll() is None, tool.stderr()
        time.sleep(0.05)
    tool.process.kill()
    tool.process.wait()
    copied = [k for k in dst.client().scan_iter(match="sess:*", count=1000)][:2_000]
    src.client().delete(*copied)  # logged out while nobody followed: already on the target
    again = _live(src, dst, tmp_path, name="again")
    again.wait_for("Now following")
    assert "stopped during its copy" in again.stderr()
    summary = again.finish()
    assert summary["live"]["repairs"] >= 1 and summary["live"]["verify"]["ok"], summary["live"]
    assert dst.client().exists(*copied) == 0
    assert_equal(src, dst)
