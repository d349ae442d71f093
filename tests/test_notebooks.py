"""Every chapter notebook runs top to bottom under the smoke profile, and is committed
without outputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from medimg.report import headline_figures
from medimg.runner import chapter_title, find_notebooks, run_notebook

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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_opens_with_its_chapter_title(path):
    """The first markdown heading is the chapter title (the HTML page's title)."""
    title = chapter_title(nbformat.read(path, as_version=4))
    assert title and re.match(r"\d+ ?[·.] ", title), f"{path.name}: first heading {title!r}"


#: TensorFlow's start-up lines (absl banner, oneDNN, CUDA lookups) and tqdm redraws
NOISE = re.compile(r"absl::InitializeLog|oneDNN custom operations|cuInit|cuda_driver|"
                   r"IProgress not found|\r(?!\n)")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_under_smoke(path, tmp_path):
    run = run_notebook(path, profile="smoke", output_dir=tmp_path, timeout=900)
    assert run.status == "ok"
    assert run.figures, f"{path.name} recorded no headline figures (medimg.report.record)"
    assert headline_figures(run.figures, run.headline), f"{path.name}: nothing for the table"
    if run.headline is not None:
        assert 2 <= len(run.headline) <= 4, f"{path.name}: headline {run.headline}"
    executed = json.loads((tmp_path / path.name).read_text(encoding="utf-8"))
    images = sum("image/png" in output.get("data", {})
                 for cell in executed["cells"] for output in cell.get("outputs", []))
    assert images >= 1, f"{path.name}: the executed copy shows no figure"
    streams = "".join("".join(output.get("text", "")) for cell in executed["cells"]
                      for output in cell.get("outputs", []) if output["output_type"] == "stream")
    noise = NOISE.search(streams)
    assert noise is None, f"{path.name}: {streams[max(0, noise.start() - 200):noise.end() + 200]!r}"
