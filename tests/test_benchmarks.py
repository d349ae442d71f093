"""benchmarks/: every ``bench_*.py`` still runs (``--quick --repeats 1``) and reports its rows.

The benchmarks check their own answers before timing (both sides agree, the rule is
kept); a script broken by a change elsewhere in the package fails here instead of at the
next ``make bench``. Nothing about speed is asserted (ratios belong in the benchmarks'
output, not in a test).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("bench_*.py"))
MARKER = "MEDIMG-BENCH "


def test_every_benchmark_is_collected():
    assert len(SCRIPTS) >= 10 and "bench_patches.py" in SCRIPTS


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_runs_quick_and_reports(script):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, script, "--quick", "--repeats", "1"], cwd=BENCHMARKS,
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, (done.stdout[-1500:], done.stderr[-3000:])
    rows = [json.loads(line[len(MARKER):]) for line in done.stdout.splitlines()
            if line.startswith(MARKER)]
    assert rows, done.stdout[-1500:]
    for row in rows:
        assert row["textbook_items_per_s"] > 0 and row["medimg_items_per_s"] > 0, row


@pytest.mark.slow
def test_n4_fit_settings_are_compared():
    """``bench_n4.py --fits``: one line per setting with its time and both qualities."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "bench_n4.py", "--quick", "--fits", "4:20,10",
                           "6:20"], cwd=BENCHMARKS, capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("shrink ")]
    assert [line.split(",")[0] for line in lines] == ["shrink 4", "shrink 6"]
    for line in lines:
        corr = float(line.split("field corr ")[1].split(",")[0])
        assert -1 <= corr <= 1 and "WM CV 0." in line


@pytest.mark.slow
def test_gpu_check_runs_quick_and_prints_its_table():
    """``gpu_check.py --quick`` (what a GPU machine runs at full size) still runs here and
    prints every row of its table, so it has not rotted when a GPU is finally at hand."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "gpu_check.py", "--quick"], cwd=BENCHMARKS,
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, (done.stdout[-1500:], done.stderr[-3000:])
    for row in ("3-D U-Net training, float32", "3-D U-Net training, mixed_float16",
                "sliding-window prediction", "CLAHE, OpenCV (CPU)"):
        line = next((x for x in done.stdout.splitlines() if x.startswith(row)), None)
        assert line is not None, (row, done.stdout[-2000:])
        assert any(ch.isdigit() for ch in line[len(row):]), line
