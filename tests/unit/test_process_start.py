"""What importing the core costs a process: what it loads, and what it leaves for exit."""

from __future__ import annotations

import subprocess
import sys


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_backup_process_does_not_load_the_store_decoders():
    loaded = _python(
        "import sys\n"
        "from session_migration import backup\n"
        "from session_migration.sessions import detect_store\n"
        "print(sorted(m for m in sys.modules if m.startswith('session_migration.sessions.')))"
    )
    assert loaded == "['session_migration.sessions.detect', 'session_migration.sessions.model']"
    # ...and `classify` still loads them on first use
    assert _python("from session_migration.sessions import classify; print(classify.__module__)") == \
        "session_migration.sessions.registry"


def test_the_cli_freezes_what_is_alive_at_exit_and_other_exit_work_still_runs(tmp_path):
    out = tmp_path / "written-at-exit.txt"
    # Registered before main() runs, so it runs after the CLI's handler (exit handlers run last-in first-out).
    printed = _python(
        "import atexit, gc\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0))\n"
        f"handle = open({str(out)!r}, 'w')\n"
        "handle.write('flushed by reference counting at exit')\n"  # never closed explicitly
        "from session_migration_cli.app import main\n"
        "main(['snapshots', '--help'])\n"
    )
    assert printed.endswith("frozen True")
    assert out.read_text() == "flushed by reference counting at exit"


def test_importing_the_core_changes_nothing_process_wide():
    """A notebook or a host program imports the core: its garbage collection at exit is its own."""
    assert _python(
        "import atexit, gc\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0))\n"
        "import session_migration, session_migration.operations\n"
    ) == "frozen False"


def test_a_command_gets_to_its_first_line_without_loading_pandas():
    """pyarrow imports pandas (~0.2 s) with the first Arrow array or scalar it builds: one made
    at import time by any module a command loads delays every command's first line by that, an
    empty backup or a bad option included. The work that needs pandas loads it on first use."""
    loaded = _python(
        "import sys\n"
        "import session_migration_cli.app, session_migration.parameters, session_migration.operations\n"
        "import session_migration.sessions.registry, session_migration.sinks.redis\n"
        "print('pandas' in sys.modules)"
    )
    assert loaded == "False"
