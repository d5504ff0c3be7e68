"""The notebooks run top to bottom on a fresh kernel of this environment (nbclient), as a user would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import demo_keys_in_scope

pytestmark = [pytest.mark.flows, pytest.mark.integration, pytest.mark.slow]

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def run_notebook(name: str, cwd: Path, **parameters):
    """Execute a notebook after replacing its `parameters`-tagged cell, like papermill does."""
    import nbclient
    import nbformat

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
    # "python3" with argv[0] "python" resolves to this interpreter, so the kernel sees this venv.
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def outputs(nb, mime: str) -> list[str]:
    return [o["data"][mime] for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if o.get("output_type") in ("display_data", "execute_result") and mime in o.get("data", {})]


def test_audit_report_notebook_builds_a_demo_snapshot_and_reports(tmp_path):
    nb = run_notebook("audit_report.ipynb", tmp_path, snapshot=None, output=str(tmp_path / "report"),
                      demo_copies=2, demo_root=str(tmp_path / "snapshots"))
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["valid"] is True and report["keys"] == demo_keys_in_scope(2)
    assert sum(sum(counts.values()) for counts in report["by_store"].values()) == report["keys"]
    assert "unknown" not in report["by_store"]  # every demo key is a session of a known store
    assert (tmp_path / "report" / "report.html").is_file() and (tmp_path / "report" / "findings.csv").is_file()
    assert len(outputs(nb, "image/svg+xml")) == 3  # the report's charts, displayed inline
    assert any("valid" in html for html in outputs(nb, "text/html"))  # the pandas tables


def test_committed_notebooks_have_no_outputs():
    import nbformat

    for path in NOTEBOOKS.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") and c.get("execution_count") is None
                   for c in nb.cells if c.cell_type == "code"), path.name
