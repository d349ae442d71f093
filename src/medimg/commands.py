"""Data-set verbs of the ``medimg`` command (``prepare``, ``train``, ``predict``).

Each verb is a small function: parse arguments, load the config, call the package
function that does the work. Heavy imports (TensorFlow) happen inside the handlers,
so ``medimg --help`` stays fast.
"""

from __future__ import annotations

import argparse

from .cli import profile_argument, register

# --- medimg prepare/train/predict verse (issue 7) --------------------------------------

def _verse_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=None,
                        help="VerSe folder (default: the config's data root, or synthetic "
                             "data generated as the notebooks would)")
    profile_argument(parser)


def _prepare_verse_arguments(parser: argparse.ArgumentParser) -> None:
    _verse_common_arguments(parser)
    parser.add_argument("--cache", default=None,
                        help="slice cache folder (default: the config's cache_dir/<profile>)")
    parser.add_argument("--n-jobs", type=int, default=None,
                        help="worker processes (default: the config's n_jobs; -1 = all cores)")


@register("prepare", "verse", "reorient every labelled VerSe scan and cache its slices",
          _prepare_verse_arguments)
def _prepare_verse(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .config import load_config
    from .datasets import verse
    from .synthetic import ensure_data

    cfg = load_config("verse", args.profile)
    root = Path(args.root) if args.root else ensure_data(cfg)
    cache = Path(args.cache) if args.cache else cfg.repo_root / cfg.cache_dir / cfg.profile
    subjects = verse.find_subjects(root)
    index = verse.build_slice_cache(
        subjects, cache, plane=cfg.plane, spacing_mm=cfg.slice_spacing_mm,
        max_oblique_deg=cfg.max_oblique_deg,
        n_jobs=args.n_jobs if args.n_jobs is not None else cfg.n_jobs, on_error="skip")
    print(f"{cache}: {len(index)} of {int(subjects.has_mask.sum())} labelled scans cached, "
          f"{int(index.n_slices.sum()) if len(index) else 0} slices")
    return 0 if len(index) == int(subjects.has_mask.sum()) else 1


def _train_verse_arguments(parser: argparse.ArgumentParser) -> None:
    _verse_common_arguments(parser)
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs (default: the config's epochs)")
    parser.add_argument("--out", default=None,
                        help="model and predicted masks (default: the config's "
                             "output_dir/<profile>)")


@register("train", "verse", "train the 2-D spine U-Net and predict the held-out scans",
          _train_verse_arguments)
def _train_verse(args: argparse.Namespace) -> int:
    from .config import load_config
    from .datasets import verse

    cfg = load_config("verse", args.profile)
    result = verse.train_from_config(cfg, root=args.root, epochs=args.epochs, out_dir=args.out)
    for fold in ("validation", "test"):
        value = result[f"dice_{fold}"]
        print(f"{fold} Dice (whole volumes): " + ("n/a" if value is None else f"{value:.3f}"))
    print(result["scores"][["scan", "fold", "dice"]].to_string(index=False))
    print(f"model: {result['model_path']}\npredictions: {result['out_dir']}")
    return 0


def _predict_verse_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model.keras from medimg train verse")
    parser.add_argument("--scan", required=True, help="CT NIfTI (*_ct.nii.gz)")
    parser.add_argument("--out", required=True, help="output mask (.nii.gz), CT's affine")
    profile_argument(parser, help="config profile whose slice settings the model was trained with")


@register("predict", "verse", "segment the spine of one CT scan, written as NIfTI",
          _predict_verse_arguments)
def _predict_verse(args: argparse.Namespace) -> int:
    import keras

    from .config import load_config
    from .datasets import verse
    from .io import write_nifti

    cfg = load_config("verse", args.profile)
    model = keras.models.load_model(args.model, custom_objects=verse.custom_objects())
    prediction = verse.predict_scan(model, args.scan, plane=cfg.plane,
                                    spacing_mm=cfg.slice_spacing_mm, window=cfg.window,
                                    threshold=cfg.threshold,
                                    max_oblique_deg=cfg.max_oblique_deg)
    write_nifti(prediction, args.out)
    print(f"{args.out}: {int((prediction.array > 0).sum())} spine voxels "
          f"({prediction.meta['seconds']:.1f} s)")
    return 0
