"""The ``medimg`` console script."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import medimg


def run(*args):
    return subprocess.run([sys.executable, "-m", "medimg.cli", *args],
                          capture_output=True, text=True)


def test_help_lists_verbs():
    proc = run("--help")
    assert proc.returncode == 0
    for verb in ("demo", "notebook", "synth", "config"):
        assert verb in proc.stdout


def test_version():
    proc = run("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"medimg {medimg.__version__}"


def test_console_script_installed():
    script = Path(sys.executable).parent / "medimg"
    if not script.exists():
        script = shutil.which("medimg")
    assert script, "the medimg console script is not installed"
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and medimg.__version__ in proc.stdout


def test_unknown_profile_rejected_by_argparse():
    proc = run("config", "rsna", "--profile", "huge")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
