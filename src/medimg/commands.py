"""Data-set verbs of the ``medimg`` command (``prepare``, ``train``, ``predict``).

Each verb is a small function: parse arguments, load the config, call the package
function that does the work. Heavy imports (TensorFlow) happen inside the handlers,
so ``medimg --help`` stays fast.
"""

from __future__ import annotations

import argparse

from .cli import register

# --- medimg prepare brats (issue 4) ---------------------------------------------------

def _prepare_brats_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=None,
                        help="BraTS folder (default: the config's data root, or synthetic "
                             "data generated as the notebooks would)")
    parser.add_argument("--out", default=None,
                        help="output folder for the HDF5 files and manifest.csv "
                             "(default: <data root>/../brats-h5-<profile>)")
    parser.add_argument("--profile", choices=("smoke", "demo", "full"), default=None,
                        help="config profile (default: $MEDIMG_PROFILE or demo)")
    parser.add_argument("--n-jobs", type=int, default=None,
                        help="worker processes (default: the config's n_jobs; -1 = all cores)")
    parser.add_argument("--no-n4", action="store_true", help="skip N4 bias-field correction")
    parser.add_argument("--shrink", type=int, default=None, help="N4 shrink factor")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo subjects whose HDF5 file exists")


@register("prepare", "brats", "N4, crop and stack BraTS subjects into one HDF5 file each",
          _prepare_brats_arguments)
def _prepare_brats(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .config import load_config
    from .datasets.brats import preprocess
    from .synthetic import ensure_data

    cfg = load_config("brats", args.profile)
    root = Path(args.root) if args.root else ensure_data(cfg)
    out = Path(args.out) if args.out else root.parent / f"{root.name}-h5"
    options = cfg.preprocess
    manifest = preprocess(
        root, out,
        n_jobs=args.n_jobs if args.n_jobs is not None else cfg.n_jobs,
        n4=options.n4 and not args.no_n4,
        shrink=args.shrink or options.shrink,
        iterations=options.iterations,
        overwrite=args.overwrite,
    )
    counts = manifest["status"].value_counts().to_dict()
    print(f"{out}: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    for row in manifest[manifest["status"] == "error"].itertuples():
        print(f"  {row.subject}: {row.error}")
    return 1 if counts.get("error") else 0


# --- medimg train rsna (issue 5) -------------------------------------------------------

def _train_rsna_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=None,
                        help="RSNA folder (default: the config's data root, or synthetic "
                             "data generated as the notebooks would)")
    parser.add_argument("--profile", choices=("smoke", "demo", "full"), default=None,
                        help="config profile (default: $MEDIMG_PROFILE or demo)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="maximum epochs (default: the config's classifier.epochs)")
    parser.add_argument("--run-dir", default=None,
                        help="checkpoints, CSV log and TensorBoard logs "
                             "(default: the config's classifier.run_dir/<profile>)")


@register("train", "rsna", "train the two-input pneumonia classifier and evaluate it",
          _train_rsna_arguments)
def _train_rsna(args: argparse.Namespace) -> int:
    from .config import load_config
    from .training import train_rsna

    cfg = load_config("rsna", args.profile)
    result = train_rsna(cfg, root=args.root, epochs=args.epochs, run_dir=args.run_dir)
    print(f"held-out AUC {result['test_auc']:.3f} (95% CI {result['test_auc_low']:.3f}-"
          f"{result['test_auc_high']:.3f}, n={result['n_test']}); best epoch "
          f"{result['best_epoch']} of {result['epochs_run']}")
    print(result["auc_by_view"].to_string(index=False))
    print(f"model: {result['model_path']}\nlogs: {result['run_dir']} "
          f"(tensorboard --logdir {result['run_dir']}/tensorboard)")
    return 0
