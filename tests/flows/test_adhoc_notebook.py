"""notebooks/adhoc_migration.ipynb runs top to bottom on a fresh kernel (nbclient), as a user would:
two demo Valkeys, a dry run, the full_migration flow, verification counts and the audit summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import demo_keys_in_scope

pytestmark = [pytest.mark.flows, pytest.mark.integration, pytest.mark.slow]

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "adhoc_migration.ipynb"


def run_notebook(cwd: Path, **parameters):
    """Execute the notebook after replacing its `parameters`-tagged cell, like papermill does."""
    import nbclient
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def test_adhoc_migration_notebook_migrates_demo_servers(prefect_harness, tmp_path):
    # prefect_harness: the kernel inherits PREFECT_API_URL and reports to the shared test server.
    root = tmp_path / "snaps"
    nb = run_notebook(tmp_path, source=None, target=None, backup_path=str(root), patterns=None, demo_copies=1)
    [state_file] = (root / "migrations").glob("*.json")
    state = json.loads(state_file.read_text())
    assert state["step"] == "done" and state["verify"]["ok"] and not state["rolled_back"]
    assert state["counts"]["backup"]["keys"] == demo_keys_in_scope(1)
    assert state["verify"]["counts"]["OK"] == demo_keys_in_scope(1)
    assert (root / state["snapshot_id"] / "audit" / "report.html").is_file()
    texts = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("verification OK" in t for t in texts)


def test_committed_adhoc_notebook_has_no_outputs():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
