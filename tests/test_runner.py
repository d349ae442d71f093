"""The notebook runner shared by ``make demo`` and the tests."""

from __future__ import annotations

import json

import nbformat
import pytest

from medimg.errors import NotebookError
from medimg.runner import format_table, run_notebook, run_notebooks


def make_notebook(path, *sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A test notebook")]
    nb.cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_runs_with_profile_and_collects_figures(tmp_path):
    nb = make_notebook(
        tmp_path / "ok.ipynb",
        "import os\nfrom medimg import report\nprofile = os.environ['MEDIMG_PROFILE']",
        "report.record('ok', profile=profile, value=1.5)",
        "import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0])",
    )
    run = run_notebook(nb, profile="smoke", output_dir=tmp_path / "out", html=True)
    assert run.status == "ok" and run.error is None
    assert run.figures == {"profile": "smoke", "value": 1.5}
    executed = nbformat.read(tmp_path / "out" / "ok.ipynb", as_version=4)
    assert executed.cells[1].execution_count == 1
    # figures are embedded in the executed copy (not lost to a non-interactive backend)
    assert any("image/png" in out.get("data", {}) for out in executed.cells[3].outputs)
    assert (tmp_path / "out" / "ok.html").read_text().lower().startswith("<!doctype html")
    assert run.wall_time_s > 0


@pytest.mark.slow
def test_failing_cell_is_named(tmp_path):
    nb = make_notebook(tmp_path / "bad.ipynb", "x = 1", "y = x +\\\n  undefined_name", "z = 3")
    with pytest.raises(NotebookError) as info:
        run_notebook(nb, profile="smoke", output_dir=tmp_path / "out")
    message = str(info.value)
    assert "bad.ipynb" in message
    assert "code cell 2" in message and "NameError" in message and "undefined_name" in message
    # the partial executed copy is kept for debugging
    assert (tmp_path / "out" / "bad.ipynb").is_file()


@pytest.mark.slow
def test_run_notebooks_goes_on_and_writes_results(tmp_path):
    good = make_notebook(tmp_path / "a.ipynb", "from medimg import report\nreport.record('a', x=1)")
    bad = make_notebook(tmp_path / "b.ipynb", "raise ValueError('boom')")
    runs = run_notebooks([bad, good], profile="smoke", reports_dir=tmp_path / "rep", html=False)
    assert [r.status for r in runs] == ["failed", "ok"]
    results = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert results["profile"] == "smoke"
    assert results["notebooks"]["a"]["figures"] == {"x": 1}
    assert "ValueError: boom" in results["notebooks"]["b"]["error"]
    table = format_table(runs)
    assert "a" in table and "failed" in table and "x=1" in table
