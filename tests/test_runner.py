"""The notebook runner shared by ``make demo`` and the tests."""

from __future__ import annotations

import json
import re

import nbformat
import pytest

from medimg.errors import NotebookError
from medimg.runner import (
    NotebookRun,
    chapter_title,
    format_duration,
    format_table,
    run_notebook,
    run_notebooks,
)

#: What TensorFlow writes to file descriptor 2 while it starts (absl's pre-init banner,
#: oneDNN, CUDA lookups, cuInit on a machine without a GPU).
TF_START_UP = re.compile(r"absl::InitializeLog|oneDNN|cuda|cuInit|cpu_feature_guard|"
                         r"^[IWE]\d{4} ", re.IGNORECASE | re.MULTILINE)


def make_notebook(path, *sources, title="A test notebook"):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\nSome prose.")]
    nb.cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    return path


def stream_text(nb, name=None):
    return "".join(output.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                   for output in cell.outputs if output.output_type == "stream"
                   and (name is None or output.name == name))


@pytest.mark.slow
def test_runs_with_profile_and_collects_figures(tmp_path):
    nb = make_notebook(
        tmp_path / "ok.ipynb",
        "import os\nfrom medimg import report\nprofile = os.environ['MEDIMG_PROFILE']",
        "report.record('ok', profile=profile, value=1.5, headline=['value'])",
        "import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0])",
        title="7 · A chapter: with a colon",
    )
    run = run_notebook(nb, profile="smoke", output_dir=tmp_path / "out", html=True)
    assert run.status == "ok" and run.error is None
    assert run.figures == {"profile": "smoke", "value": 1.5}
    assert run.headline == [["value"]]
    assert run.title == "7 · A chapter: with a colon"
    executed = nbformat.read(tmp_path / "out" / "ok.ipynb", as_version=4)
    assert executed.cells[1].execution_count == 1
    # figures are embedded in the executed copy (not lost to a non-interactive backend)
    assert any("image/png" in out.get("data", {}) for out in executed.cells[3].outputs)
    page = (tmp_path / "out" / "ok.html").read_text(encoding="utf-8")
    assert page.lower().startswith("<!doctype html")
    # the page is titled with the chapter title, not "Notebook"
    assert "<title>7 · A chapter: with a colon</title>" in page
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
def test_run_notebooks_goes_on_and_writes_results(tmp_path, capsys):
    good = make_notebook(tmp_path / "a.ipynb",
                         "from medimg import report\nreport.record('a', x=1, headline=['x'])")
    bad = make_notebook(tmp_path / "b.ipynb", "raise ValueError('boom')")
    runs = run_notebooks([bad, good], profile="smoke", reports_dir=tmp_path / "rep", html=False,
                         progress_every=0)
    assert [r.status for r in runs] == ["failed", "ok"]
    results = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert results["profile"] == "smoke"
    assert results["notebooks"]["a"]["figures"] == {"x": 1}
    assert results["notebooks"]["a"]["headline"] == [["x"]]
    assert results["total_seconds"] == pytest.approx(sum(r.wall_time_s for r in runs), abs=0.02)
    assert "ValueError: boom" in results["notebooks"]["b"]["error"]
    log = capsys.readouterr().out
    assert "1/2 b" in log and "2/2 a" in log and "FAILED" in log
    table = format_table(runs)
    assert "FAILED: code cell 1" in table and re.search(r"^a +ok .* x 1$", table, re.MULTILINE)


@pytest.mark.slow
def test_kernel_is_quiet_but_errors_stay_visible(tmp_path, capfd):
    """TensorFlow's start-up lines reach neither the log nor the executed copy; what is
    written to stderr afterwards (Python or C level) still reaches the notebook; a tqdm
    bar is kept in its final state only."""
    nb = make_notebook(
        tmp_path / "tf.ipynb",
        "import time\nfrom tqdm.auto import tqdm\nfor _ in tqdm(range(4), mininterval=0):\n"
        "    time.sleep(0.05)",
        "import keras\nimport tensorflow as tf\n"
        "print(float(tf.reduce_sum(tf.ones(3))), keras.__name__)",
        "import os, sys\nprint('python stderr stays', file=sys.stderr)\n"
        "os.write(2, b'C-level stderr stays\\n')\nimport time; time.sleep(0.5)",
    )
    run = run_notebook(nb, profile="smoke", output_dir=tmp_path / "out")
    assert run.status == "ok"
    executed = nbformat.read(tmp_path / "out" / "tf.ipynb", as_version=4)
    outputs = stream_text(executed)
    assert "3.0 keras" in outputs
    assert not TF_START_UP.search(outputs), outputs
    assert "python stderr stays" in outputs and "C-level stderr stays" in outputs
    # the bar: one line, its final state, no carriage-return redraws
    bar = "".join(output.get("text", "") for output in executed.cells[1].outputs)
    assert "\r" not in bar and bar.count("4/4") == 1 and "0/4" not in bar
    assert "IProgress" not in outputs
    log = capfd.readouterr()
    assert not TF_START_UP.search(log.err + log.out), (log.err + log.out)[-2000:]
    assert "TCP" not in log.err  # the kernel talks over local sockets


@pytest.mark.slow
def test_progress_lines_name_notebook_cell_and_time(tmp_path, capsys):
    nb = make_notebook(tmp_path / "slow.ipynb", "x = 1", "import time\ntime.sleep(2.5)")
    run_notebook(nb, profile="smoke", progress_every=1.0)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[medimg]")]
    assert lines, "no progress line"
    assert any(re.search(r"slow: \d+ s, code cell 2/2 running for \d+ s: import time", ln)
               for ln in lines), lines


def test_missing_or_malformed_notebook_is_a_notebook_error(tmp_path):
    with pytest.raises(NotebookError, match="no such notebook") as info:
        run_notebook(tmp_path / "missing.ipynb")
    assert info.value.path.endswith("missing.ipynb")
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{ not json")
    with pytest.raises(NotebookError, match="not a readable notebook"):
        run_notebook(broken)
    with pytest.raises(NotebookError, match="folder"):
        run_notebook(tmp_path)


def test_nothing_runs_when_a_notebook_is_missing_or_reports_unwritable(tmp_path):
    good = make_notebook(tmp_path / "a.ipynb", "raise SystemExit('must not run')")
    reports = tmp_path / "rep"
    with pytest.raises(NotebookError, match="missing.ipynb"):
        run_notebooks([good, tmp_path / "missing.ipynb"], reports_dir=reports)
    assert not reports.exists()
    blocker = tmp_path / "file"
    blocker.write_text("a file where the reports folder should go")
    with pytest.raises(OSError) as info:
        run_notebooks([good], reports_dir=blocker / "reports")
    assert "file" in str(info.value.filename)
    with pytest.raises(OSError):
        run_notebook(good, output_dir=blocker)


def test_chapter_title_is_the_first_heading():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("# a comment, not a heading"),
                nbformat.v4.new_markdown_cell("Intro without heading"),
                nbformat.v4.new_markdown_cell("text\n\n## 2 · NIfTI: 3-D MRI\n\n# later")]
    assert chapter_title(nb) == "2 · NIfTI: 3-D MRI"
    assert chapter_title(nbformat.v4.new_notebook()) is None


def test_format_duration():
    assert [format_duration(s) for s in (0.4, 42.2, 59.6, 185, 3725)] == [
        "0 s", "42 s", "1m00s", "3m05s", "1h02m"]


def test_table_lists_headline_time_page_and_total():
    runs = [
        NotebookRun("03_pneumonia_classification", "ok", 250.0,
                    figures={"test_auc": 0.8412, "test_auc_low": 0.761, "test_auc_high": 0.912,
                             "n_test": 60, "baseline_auc": 0.72, "baseline_auc_low": 0.61,
                             "baseline_auc_high": 0.82, "epochs": 10},
                    html_path="reports/03_pneumonia_classification.html",
                    headline=[["test_auc"], ["baseline_auc"]]),
        NotebookRun("04_brats_unet3d", "failed", 12.0, error="code cell 3 (`x`) raised KeyError"),
    ]
    table = format_table(runs)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["notebook", "status", "time"]
    row = next(ln for ln in lines if ln.startswith("03_"))
    assert re.search(r"ok +4m10s +test AUC 0\.84 \(0\.76-0\.91\), n=60$", row)
    assert any(ln.strip() == "baseline AUC 0.72 (0.61-0.82), n=60" for ln in lines)
    assert any(ln.strip() == "reports/03_pneumonia_classification.html" for ln in lines)
    assert "epochs" not in table  # not a headline figure
    assert re.search(r"^04_brats_unet3d +failed +12 s +FAILED: code cell 3", table, re.MULTILINE)
    assert re.search(r"^total +4m22s$", lines[-1])
    # headline figures start in one column
    starts = {ln.index("test AUC") if "test AUC" in ln else None for ln in lines} - {None}
    assert len(starts) == 1 and lines[lines.index(row) + 1].index("baseline") in starts
