"""Spine verbs: the VerSe chapter's pipeline (the generic segmentation pipeline in 2-D on
sagittal slices, through :mod:`medimg.tasks.spine`).

``medimg prepare verse [--data ROOT]``
    find the scans, split them by subject (VerSe's folders when they hold all three
    parts), fingerprint, plan and preprocess the training and validation scans into
    the keyed cache; writes ``plan.json``.
``medimg train verse [--data ROOT] [--out DIR]``
    the above, then train the 2-D U-Net, predict the test scans on their own grids and
    score them (Dice with a 95% interval over scans); writes ``DIR/model.keras`` and
    ``DIR/plan.json``.
``medimg predict verse --model DIR/model.keras --scan CT --out OUT.nii.gz``
    segment one CT; the mask is written on the CT's own grid with its affine.

Handlers import TensorFlow only when they run, so ``medimg --help`` stays fast.
"""

from __future__ import annotations

import argparse
import math

from . import (
    epochs_argument,
    nifti_output,
    print_prediction,
    print_prepared,
    profile_argument,
    register,
)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", "--root", dest="data", default=None,
                        help="VerSe folder (default: the config's data root, or synthetic "
                             "data generated as the notebooks would)")
    profile_argument(parser)
    parser.add_argument("--config", default=None,
                        help="a segmentation config YAML (default: configs/verse.yaml)")


def _config(args: argparse.Namespace):
    from ..config import load_config

    return load_config(args.config or "verse", args.profile)


def _prepare_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--out", default=None,
                        help="where plan.json goes (default: the config's output_dir/<profile>)")


@register("prepare", "verse",
          "split the VerSe scans by subject, plan the 2-D pipeline and cache the scans",
          _prepare_arguments)
def _prepare(args: argparse.Namespace) -> int:
    from ..tasks import segmentation, spine

    cfg = _config(args)
    prepared = segmentation.prepare(cfg, data=args.data, out=args.out,
                                    adapter=spine.adapter_for(cfg))
    parts = prepared.cases["split"].value_counts().to_dict()
    print(f"split ({prepared.cases.attrs.get('split_source', 'by subject')}): "
          + ", ".join(f"{parts.get(name, 0)} {name}" for name in ("train", "validation", "test"))
          + " scans")
    status = print_prepared(prepared)
    print(f"plan: {prepared.out / 'plan.json'}")
    return status


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--out", default=None,
                        help="model, plan, logs and test predictions (default: the config's "
                             "output_dir/<profile>)")
    epochs_argument(parser)


@register("train", "verse",
          "train the 2-D spine U-Net on sagittal slices and score the test scans",
          _train_arguments)
def _train(args: argparse.Namespace) -> int:
    from ..tasks import segmentation, spine

    cfg = _config(args)
    result = segmentation.run(cfg, data=args.data, out=args.out, epochs=args.epochs,
                              adapter=spine.adapter_for(cfg))
    counts = result["cases"]["split"].value_counts().to_dict()
    print("scans: " + ", ".join(f"{counts.get(name, 0)} {name}"
                                for name in ("train", "validation", "test")))
    summary = result["summary"]
    if len(summary):
        for label, row in summary.iterrows():
            interval = (f"95% CI {row.dice_low:.3f} to {row.dice_high:.3f}"
                        if math.isfinite(row.dice_low) else "no interval from one scan")
            print(f"test Dice {label}: {row.dice:.3f} ({interval}, n = {int(row.n_cases)} "
                  f"test scans); HD95 median {row.hd95_median_mm:.1f} mm")
    else:
        print("no test scan held out: nothing scored")
    print(f"model: {result['model_path']}\nplan: {result['plan_path']}\n"
          f"predictions: {result['out'] / 'predictions'}\n"
          f"{len(result['history'])} epochs, {result['train_seconds']:.0f} s of training")
    return 0


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="model.keras from medimg train verse (plan.json beside it)")
    parser.add_argument("--scan", required=True, help="CT NIfTI (*_ct.nii.gz), in HU")
    parser.add_argument("--out", required=True,
                        help="output mask (.nii or .nii.gz), on the CT's grid and affine")
    parser.add_argument("--max-oblique-deg", type=float, default=30.0,
                        help="refuse scans whose voxel axes are more oblique than this "
                             "(default 30)")
    parser.add_argument("--batch-size", type=int, default=16, help="slices per network call")


@register("predict", "verse", "segment the spine of one CT scan, written as NIfTI on its grid",
          _predict_arguments)
def _predict(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..tasks import segmentation, spine

    out = nifti_output(args.out)
    spine.check_scan(args.scan, max_oblique_deg=args.max_oblique_deg)
    model, plan = segmentation.load_model(args.model)
    if plan.dataset.get("layout") != "verse" or plan.dimensionality != "2d":
        raise ConfigError(f"the model was trained on {plan.dataset.get('name')!r} "
                          f"({plan.dimensionality}), not on VerSe sagittal slices "
                          "(train one with medimg train verse)", args.model)
    volume = segmentation.predict_files(model, plan, [args.scan], out,
                                        batch_size=args.batch_size)
    print_prediction(out, volume)
    return 0
