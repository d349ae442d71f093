"""Segmentation verbs: the generic pipeline for any data set, and the BraTS chapter's.

``medimg train segmentation --data ROOT --out DIR``
    plan, preprocess, train and score a data set in the nnU-Net or Decathlon layout;
    writes ``DIR/model.keras`` and ``DIR/plan.json`` (and logs, test predictions,
    ``scores.csv``, ``summary.csv``).
``medimg predict segmentation --model DIR/model.keras --image F [F ...] --out OUT.nii.gz``
    segment one case (its channel files in ``dataset.json`` order, or one 4-D file);
    the label map is written on the input's grid and affine with ``dataset.json``'s
    label values.
``medimg evaluate segmentation --predictions DIR (--data ROOT | --labels DIR --plan P)``
    Dice and HD95 per case and label, and a summary with 95% intervals.
``medimg prepare segmentation --data ROOT``
    plan and preprocess only (the cache is keyed and resumable).

``prepare``/``train``/``predict brats`` run the same code through the BraTS adapter.
Handlers import TensorFlow only when they run, so ``medimg --help`` stays fast.
"""

from __future__ import annotations

import argparse

from . import (
    epochs_argument,
    nifti_output,
    print_prediction,
    print_prepared,
    profile_argument,
    register,
)


def _common(parser: argparse.ArgumentParser, *, data_help: str) -> None:
    parser.add_argument("--data", "--root", dest="data", default=None, help=data_help)
    profile_argument(parser)
    parser.add_argument("--config", default=None,
                        help="a segmentation config YAML (default: configs/<data set>.yaml)")


def _config(args: argparse.Namespace, name: str):
    from ..config import load_config

    return load_config(args.config or name, args.profile)


# --------------------------------------------------------------------------- generic

def _train_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser, data_help="data set folder holding dataset.json (nnU-Net v2 raw or "
                              "Decathlon layout; default: the config's data root, or a "
                              "phantom data set)")
    parser.add_argument("--out", default=None,
                        help="output folder (default: the config's output_dir/<profile>)")
    epochs_argument(parser)


def _print_result(result: dict) -> None:
    summary = result["summary"]
    if len(summary):
        print(result["scores"].round(3).to_string(index=False))
        for label, row in summary.iterrows():
            interval = ("no interval with one case" if int(row.n_cases) < 2 else
                        f"95% CI {row.dice_low:.3f}-{row.dice_high:.3f}")
            print(f"test Dice {label}: {row.dice:.3f} ({interval}, n={int(row.n_cases)} "
                  f"cases; {int(row.n_with_label)} with {label}: {row.dice_present:.3f}); "
                  f"HD95 median {row.hd95_median_mm:.1f} mm")
    else:
        print("no test case held out: nothing scored")
    print(f"model: {result['model_path']}\nplan: {result['plan_path']}\n"
          f"{len(result['history'])} epochs, {result['train_seconds']:.0f} s of training")


@register("train", "segmentation",
          "plan, preprocess, train and score any data set in the nnU-Net or Decathlon layout",
          _train_arguments)
def _train(args: argparse.Namespace) -> int:
    from ..tasks import segmentation

    cfg = _config(args, "segmentation")
    result = segmentation.run(cfg, data=args.data, out=args.out, epochs=args.epochs)
    _print_result(result)
    return 0


def _prepare_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser, data_help="data set folder holding dataset.json")
    parser.add_argument("--out", default=None,
                        help="where plan.json goes (default: the config's output_dir/<profile>)")


def _prepare(args: argparse.Namespace, name: str, adapter_name: str | None) -> int:
    from ..tasks import segmentation

    cfg = _config(args, name)
    adapter = _adapter(adapter_name)
    prepared = segmentation.prepare(cfg, data=args.data, out=args.out, adapter=adapter)
    return print_prepared(prepared)


@register("prepare", "segmentation",
          "fingerprint a data set, make its plan and preprocess it into the keyed cache",
          _prepare_arguments)
def _prepare_generic(args: argparse.Namespace) -> int:
    return _prepare(args, "segmentation", None)


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="model.keras written by medimg train segmentation (plan.json "
                             "beside it)")
    parser.add_argument("--image", required=True, nargs="+",
                        help="the case's channel files in dataset.json order, or one 4-D file")
    parser.add_argument("--out", required=True, help="output label map (.nii or .nii.gz)")
    parser.add_argument("--overlap", type=float, default=0.5,
                        help="shared fraction of neighbouring windows (default 0.5)")
    parser.add_argument("--batch-size", type=int, default=2, help="windows per network call")


def _predict_one(args: argparse.Namespace, images: list[str]) -> int:
    from ..tasks import segmentation

    out = nifti_output(args.out)
    model, plan = segmentation.load_model(args.model)
    volume = segmentation.predict_files(model, plan, images, out, overlap=args.overlap,
                                        batch_size=args.batch_size)
    print_prediction(out, volume)
    return 0


@register("predict", "segmentation",
          "segment one case with a trained model; the label map keeps the input's grid",
          _predict_arguments)
def _predict(args: argparse.Namespace) -> int:
    return _predict_one(args, list(args.image))


def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--predictions", required=True, help="folder of <case>.nii.gz")
    parser.add_argument("--data", default=None,
                        help="the data set (dataset.json and labelsTr/): labels and truth")
    parser.add_argument("--labels", default=None, help="folder of truth <case>.nii.gz")
    parser.add_argument("--plan", default=None,
                        help="plan.json (or its folder) naming the labels, with --labels")
    parser.add_argument("--no-hd95", action="store_true", help="skip HD95 (faster)")
    parser.add_argument("--out", default=None, help="write the per-case table here (.csv)")


@register("evaluate", "segmentation",
          "Dice and HD95 of a folder of predictions, per case and label, with intervals",
          _evaluate_arguments)
def _evaluate(args: argparse.Namespace) -> int:
    from ..datasets.msd import find_cases
    from ..errors import ConfigError
    from ..tasks import segmentation

    if args.data:
        cases = find_cases(args.data)
        truth = cases[cases["label"].notna()]
        labels = cases.attrs["dataset"].foreground
    elif args.labels and args.plan:
        truth = args.labels
        labels = segmentation.Plan.load(args.plan).description().foreground
    else:
        raise ConfigError("give --data ROOT, or --labels DIR with --plan plan.json")
    scores = segmentation.evaluate_folder(args.predictions, truth, labels,
                                          hausdorff=not args.no_hd95)
    print(scores.round(3).to_string(index=False))
    print(segmentation.summarize(scores).round(3).to_string())
    if scores.attrs.get("missing_predictions"):
        print(f"no prediction for {len(scores.attrs['missing_predictions'])} labelled case(s)")
    if args.out:
        from .._fsutil import atomic_write_text

        atomic_write_text(args.out, scores.to_csv(index=False))
    return 0


# --------------------------------------------------------------------------- BraTS

def _adapter(name: str | None):
    from ..tasks import segmentation

    if name is None:
        return segmentation.DEFAULT_ADAPTER
    if name == "brats":
        from ..tasks import brats

        return brats.ADAPTER
    raise ValueError(name)  # the spine verbs (medimg.cli.spine) build their own adapter


def _brats_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser, data_help="BraTS folder (default: the config's data root, or synthetic "
                              "data generated as the notebooks would)")
    parser.add_argument("--out", default=None, help="where plan.json goes")


@register("prepare", "brats", "N4, crop, normalise and cache the BraTS subjects (keyed HDF5)",
          _brats_prepare_arguments)
def _prepare_brats(args: argparse.Namespace) -> int:
    return _prepare(args, "brats", "brats")


def _brats_train_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser, data_help="BraTS folder (default: the config's data root, or synthetic "
                              "data generated as the notebooks would)")
    parser.add_argument("--out", default=None,
                        help="model, plan and logs (default: the config's output_dir/<profile>)")
    epochs_argument(parser)


@register("train", "brats", "preprocess, train the 3-D U-Net and score held-out whole scans",
          _brats_train_arguments)
def _train_brats(args: argparse.Namespace) -> int:
    from ..tasks import brats, segmentation

    cfg = _config(args, "brats")
    result = segmentation.run(cfg, data=args.data, out=args.out, epochs=args.epochs,
                              adapter=brats.ADAPTER)
    _print_result(result)
    return 0


def _brats_predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model.keras from medimg train brats")
    parser.add_argument("--subject", required=True,
                        help="BraTS subject folder (the four sequences)")
    parser.add_argument("--out", required=True,
                        help="output label map (.nii.gz): labels {0, 1, 2, 4} on the "
                             "subject's grid with its affine")
    parser.add_argument("--overlap", type=float, default=0.5,
                        help="shared fraction of neighbouring windows (default 0.5)")
    parser.add_argument("--batch-size", type=int, default=2, help="windows per network call")


@register("predict", "brats", "segment one BraTS subject with a trained model (NIfTI out)",
          _brats_predict_arguments)
def _predict_brats(args: argparse.Namespace) -> int:
    from ..tasks import brats

    return _predict_one(args, brats.subject_images(args.subject))
