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


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..config import find_repo_root
    from ..runner import find_notebooks, format_table, run_notebooks

    root = find_repo_root()
    notebooks = [Path(p) for p in args.notebooks] or find_notebooks(root / "notebooks")
    if not notebooks:
        print("medimg: no notebooks found", file=sys.stderr)
        return 1
    runs = run_notebooks(notebooks, profile=args.profile, reports_dir=args.reports,
                         html=not args.no_html, timeout=args.timeout)
    print()
    print(format_table(runs))
    print(f"\nresults: {Path(args.reports) / 'results.json'}")
    return 0 if all(r.status == "ok" for r in runs) else 1


def _cmd_notebook(args: argparse.Namespace) -> int:
    from ..runner import format_table, run_notebook

    run = run_notebook(args.path, profile=args.profile, output_dir=args.reports,
                       html=not args.no_html, timeout=args.timeout)
    print(format_table([run]))
    return 0


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
    profile_argument(p, "demo")
    p.add_argument("notebooks", nargs="*", help="notebooks to run (default: notebooks/*.ipynb)")
    p.add_argument("--reports", default="reports", help="output folder (default: reports)")
    p.add_argument("--no-html", action="store_true", help="skip the HTML export")
    p.add_argument("--timeout", type=int, default=None, help="seconds allowed per cell")
    p.set_defaults(handler=_cmd_demo)

    p = sub.add_parser("notebook", help="execute one notebook under a profile")
    p.add_argument("path")
    profile_argument(p, "smoke")
    p.add_argument("--reports", default="reports")
    p.add_argument("--no-html", action="store_true")
    p.add_argument("--timeout", type=int, default=None)
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
