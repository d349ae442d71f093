"""The ``medimg`` console script."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("verb", [("train", "segmentation"), ("train", "brats"),
                                  ("train", "verse"), ("train", "rsna")])
@pytest.mark.parametrize("epochs", ["0", "-3", "two"])
def test_every_training_verb_refuses_epochs_below_one(verb, epochs, capsys):
    from medimg.cli import build_parser

    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*verb, "--epochs", epochs])
    assert exit_info.value.code == 2
    assert "--epochs" in capsys.readouterr().err


def _one_error_line(proc, expected):
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0
    assert len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("medimg: error: ") and expected in lines[0], lines[0]


def test_missing_notebook_is_one_line():
    _one_error_line(run("notebook", "no/such/notebook.ipynb", "--reports", "/tmp/r"),
                    "no/such/notebook.ipynb")


def test_output_path_with_a_file_in_the_way(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    proc = run("evaluate", "segmentation", "--predictions", str(tmp_path), "--labels",
               str(tmp_path), "--plan", str(blocker / "plan.json"))
    _one_error_line(proc, "plan.json")


def test_os_errors_become_one_line(monkeypatch, capsys):
    import errno

    from medimg import cli

    def full_disk(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out/model.keras")

    def in_the_way(args):
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", "/data/file/out")

    def denied(args):
        raise PermissionError(errno.EACCES, "Permission denied", "/root/out.nii.gz")

    for handler, expected in [(full_disk, "/data/out/model.keras: no space left"),
                              (in_the_way, "/data/file/out: Not a directory"),
                              (denied, "/root/out.nii.gz: Permission denied")]:
        parser = cli.build_parser()
        args = parser.parse_args(["config", "rsna"])
        args.handler = handler
        monkeypatch.setattr(cli, "build_parser", lambda p=parser, a=args: _Fixed(p, a))
        assert cli.main(["config", "rsna"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("medimg: error: ") and expected in err[0]


class _Fixed:
    """A parser stand-in that returns prepared arguments."""

    def __init__(self, parser, args):
        self.parser, self.args = parser, args

    def parse_args(self, argv):
        return self.args

    def print_help(self):
        self.parser.print_help()


def test_train_and_predict_print_no_tensorflow_start_up_lines(tmp_path):
    proc = run("predict", "segmentation", "--model", str(tmp_path / "none.keras"), "--image",
               str(tmp_path / "x_0000.nii.gz"), "--out", str(tmp_path / "y.nii.gz"))
    _one_error_line(proc, "no such model file")
