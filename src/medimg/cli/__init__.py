"""The ``medimg`` command: long jobs from a terminal, with progress bars.

Verbs
-----
medimg demo        execute every notebook under a profile, write reports/ and a table
medimg notebook    execute one notebook
medimg synth       write synthetic data for a data set (as the notebooks would)
medimg config      print a data set's resolved configuration

Task verbs (``medimg train segmentation``, ``medimg prepare brats``, ``medimg train rsna``,
``medimg predict brats``, ...) are defined in the modules of this package named in
:data:`VERB_MODULES` (one per task: thin wrappers over :mod:`medimg.tasks`), which
register them in :data:`VERBS`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from .. import __version__
from ..errors import MedimgError

#: data-set verbs: (verb, data set) -> (help, function adding arguments, handler)
VERBS: dict[tuple[str, str], tuple[str, Callable[[argparse.ArgumentParser], None],
                                   Callable[[argparse.Namespace], int]]] = {}


#: modules that register task verbs (imported when the parser is built)
VERB_MODULES: tuple[str, ...] = ("medimg.cli.segmentation", "medimg.cli.classification",
                                 "medimg.cli.spine")


def register(verb: str, dataset: str, help_text: str,
             add_arguments: Callable[[argparse.ArgumentParser], None]):
    """Decorator registering ``medimg <verb> <dataset>`` (used by the modules of
    :data:`VERB_MODULES`)."""

    def decorate(handler: Callable[[argparse.Namespace], int]):
        VERBS[(verb, dataset)] = (help_text, add_arguments, handler)
        return handler

    return decorate


def profile_argument(parser: argparse.ArgumentParser, default: str | None = None, *,
                     help: str = "config profile (default: $MEDIMG_PROFILE or demo)") -> None:
    """Add the ``--profile {smoke,demo,full}`` option every verb shares."""
    from ..config import PROFILES

    parser.add_argument("--profile", choices=PROFILES, default=default, help=help)


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def epochs_argument(parser: argparse.ArgumentParser) -> None:
    """Add the ``--epochs N`` option the training verbs share (N >= 1; default: the config's
    ``train.epochs``)."""
    parser.add_argument("--epochs", type=_positive_int, default=None,
                        help="maximum epochs, at least 1 (default: the config's train.epochs)")


def print_prepared(prepared) -> int:
    """Print what ``medimg prepare ...`` did: the cache folder and its item counts by status,
    one line per failed item, and the plan's summary table.

    Parameters
    ----------
    prepared : medimg.tasks.segmentation.Prepared

    Returns
    -------
    int
        The exit status: 1 when any item failed, else 0.
    """
    manifest = prepared.manifest
    counts = manifest["status"].value_counts().to_dict()
    print(f"{manifest.attrs['cache_dir']}: " + ", ".join(f"{n} {s}" for s, n in
                                                          sorted(counts.items())))
    for row in manifest[manifest["status"] == "error"].itertuples():
        print(f"  {row.item}: {row.error}")
    print(prepared.plan.summary().to_string())
    return 1 if counts.get("error") else 0


def nifti_output(value: str) -> Path:
    """The ``--out`` of a prediction verb as a path, refused unless it names a NIfTI file.

    Raises
    ------
    ConfigError
        The name does not end in ``.nii`` or ``.nii.gz``.
    """
    from ..errors import ConfigError

    out = Path(value)
    if not (out.name.endswith(".nii") or out.name.endswith(".nii.gz")):
        raise ConfigError("--out must end in .nii or .nii.gz", out)
    return out


def print_prediction(out: Path, volume) -> None:
    """One line on a written label map: its path, shape, voxels per label value and the
    seconds the prediction took (``volume.meta["seconds"]``).

    Parameters
    ----------
    out : pathlib.Path
    volume : medimg.io.Volume
        The label map, ``(x, y, z)`` integer values.
    """
    import numpy as np

    values, counts = np.unique(volume.array, return_counts=True)
    print(f"{out}: shape {volume.shape}, voxels per label "
          f"{dict(zip(values.tolist(), counts.tolist(), strict=True))} "
          f"({volume.meta.get('seconds', 0):.1f} s)")


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..config import PROFILES, find_repo_root
    from ..errors import ConfigError
    from ..runner import find_notebooks, format_table, run_notebooks

    if args.notebooks:
        notebooks = [Path(p) for p in args.notebooks]
    else:
        folder = find_repo_root() / "notebooks"
        notebooks = find_notebooks(folder)
        if not notebooks:
            raise MedimgError("no notebooks (.ipynb) in this folder", folder)
    profile = args.profile or os.environ.get("MEDIMG_PROFILE") or "demo"
    if profile not in PROFILES:
        raise ConfigError(f"MEDIMG_PROFILE={profile!r} is not a profile (expected one of "
                          f"{', '.join(PROFILES)})")
    runs = run_notebooks(notebooks, profile=profile, reports_dir=args.reports,
                         html=not args.no_html, timeout=args.timeout,
                         progress_every=args.progress_every)
    print()
    print(format_table(runs))
    print(f"\nEvery recorded figure: {Path(args.reports) / 'results.json'}. Figures vary from "
          f"run to run (random weights,\nsampling, threads): compare the 95% intervals, not the "
          f"last digit.")
    return 0 if all(r.status == "ok" for r in runs) else 1


def _cmd_notebook(args: argparse.Namespace) -> int:
    from ..runner import format_table, run_notebook

    run = run_notebook(args.path, profile=args.profile, output_dir=args.reports,
                       html=not args.no_html, timeout=args.timeout,
                       progress_every=args.progress_every, announce=True)
    print(format_table([run], total=False))
    return 0


def _runner_arguments(parser: argparse.ArgumentParser) -> None:
    """Options ``demo`` and ``notebook`` share."""
    from ..runner import PROGRESS_EVERY_S

    parser.add_argument("--reports", default="reports",
                        help="folder for the executed notebooks, HTML and results.json "
                             "(default: reports)")
    parser.add_argument("--no-html", action="store_true", help="skip the HTML export")
    parser.add_argument("--timeout", type=int, default=None, metavar="SECONDS",
                        help="seconds allowed per cell (default: no limit)")
    parser.add_argument("--progress-every", type=float, default=PROGRESS_EVERY_S,
                        metavar="SECONDS",
                        help="a progress line (notebook, cell, elapsed time) every so many "
                             f"seconds while a notebook runs; 0 for none (default: "
                             f"{PROGRESS_EVERY_S:g})")


def _cmd_synth(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..synthetic import ensure_data

    cfg = load_config(args.name, args.profile)
    print(ensure_data(cfg, force=args.force))
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    from ..config import load_config

    cfg = load_config(args.name, args.profile)
    print(json.dumps({"name": cfg.name, "profile": cfg.profile, "file": str(cfg.path),
                      "data_root": str(cfg.data_root) if cfg.data_root else None,
                      "synthetic_root": str(cfg.synthetic_root), **cfg.to_dict()}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``medimg`` command."""
    parser = argparse.ArgumentParser(
        prog="medimg",
        description="Medical image analysis helpers: run the chapter notebooks, prepare "
                    "data sets, train and predict from a terminal.",
    )
    parser.add_argument("--version", action="version", version=f"medimg {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")

    p = sub.add_parser("demo", help="execute every notebook, write reports/ and a results table")
    profile_argument(p)
    p.add_argument("notebooks", nargs="*", help="notebooks to run (default: notebooks/*.ipynb)")
    _runner_arguments(p)
    p.set_defaults(handler=_cmd_demo)

    p = sub.add_parser("notebook", help="execute one notebook under a profile")
    p.add_argument("path", help="the notebook (.ipynb)")
    profile_argument(p, "smoke", help="config profile (default: smoke)")
    _runner_arguments(p)
    p.set_defaults(handler=_cmd_notebook)

    p = sub.add_parser("synth", help="write synthetic data for a data set")
    p.add_argument("name", choices=("rsna", "brats", "verse"))
    profile_argument(p)
    p.add_argument("--force", action="store_true", help="regenerate even if present")
    p.set_defaults(handler=_cmd_synth)

    p = sub.add_parser("config", help="print a data set's resolved configuration")
    p.add_argument("name")
    profile_argument(p)
    p.set_defaults(handler=_cmd_config)

    _load_verbs()
    groups: dict[str, argparse._SubParsersAction] = {}
    for (verb, dataset), (help_text, add_arguments, handler) in sorted(VERBS.items()):
        if verb not in groups:
            verb_parser = sub.add_parser(verb, help=f"{verb} a data set (see medimg {verb} -h)")
            groups[verb] = verb_parser.add_subparsers(dest="dataset", metavar="DATASET",
                                                      required=True)
        p = groups[verb].add_parser(dataset, help=help_text)
        add_arguments(p)
        p.set_defaults(handler=handler)
    return parser


def _load_verbs() -> None:
    """Import the modules that register data-set verbs (cheap: no TensorFlow)."""
    import importlib

    for module in VERB_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


#: verbs whose handlers run TensorFlow: its start-up lines are silenced before they run
_TENSORFLOW_VERBS = frozenset({"train", "predict"})


def _os_error_line(exc: OSError) -> str:
    """One line for an operating-system error: the path, then what went wrong."""
    import errno

    what = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        what = "no space left on the device (free some space or write elsewhere)"
    where = exc.filename if exc.filename is not None else None
    return f"medimg: error: {where}: {what}" if where is not None else f"medimg: error: {what}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``medimg`` console script.

    Every failure on purpose (:class:`~medimg.errors.MedimgError`) and every operating
    system error (a file in the way, no permission, a full disk) is one line on stderr,
    ``medimg: error: <path>: <what>``, with a non-zero exit code and no traceback
    (``MEDIMG_DEBUG=1`` shows it).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    try:
        if args.verb in _TENSORFLOW_VERBS:
            from .._backend import import_tensorflow_quietly

            import_tensorflow_quietly()
        return int(args.handler(args) or 0)
    except MedimgError as exc:
        _debug()
        print(f"medimg: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        _debug()
        print(_os_error_line(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medimg: interrupted", file=sys.stderr)
        return 130


def _debug() -> None:
    if os.environ.get("MEDIMG_DEBUG"):
        import traceback

        traceback.print_exc()
