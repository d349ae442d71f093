"""Every chapter notebook runs top to bottom under the smoke profile, and is committed
without outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medimg.runner import find_notebooks, run_notebook

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = find_notebooks(REPO / "notebooks")


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no .ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    dirty = [i for i, c in enumerate(nb["cells"])
             if c.get("outputs") or c.get("execution_count") is not None]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs or execution counts"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_under_smoke(path, tmp_path):
    run = run_notebook(path, profile="smoke", output_dir=tmp_path, timeout=900)
    assert run.status == "ok"
    assert run.figures, f"{path.name} recorded no headline figures (medimg.report.record)"
    executed = json.loads((tmp_path / path.name).read_text(encoding="utf-8"))
    images = sum("image/png" in output.get("data", {})
                 for cell in executed["cells"] for output in cell.get("outputs", []))
    assert images >= 1, f"{path.name}: the executed copy shows no figure"
