"""Classification verbs: ``medimg train rsna`` (the pneumonia chapter's job).

Thin wrappers over :mod:`medimg.tasks.pneumonia`: parse the arguments, load the config,
run the task, print the figures. TensorFlow is imported inside the handler, so
``medimg --help`` stays fast.
"""

from __future__ import annotations

import argparse

from . import epochs_argument, profile_argument, register


def _train_rsna_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=None,
                        help="RSNA folder (default: the config's data root, or synthetic "
                             "data generated as the notebooks would)")
    profile_argument(parser)
    epochs_argument(parser)
    parser.add_argument("--run-dir", default=None,
                        help="checkpoints, CSV log, TensorBoard logs and model.keras "
                             "(default: the config's train.run_dir/<profile>)")


def _interval(figures: dict, key: str) -> str:
    return (f"{figures[key]:.3f} (95% CI {figures[key + '_low']:.3f}-"
            f"{figures[key + '_high']:.3f})")


@register("train", "rsna",
          "train the two-input pneumonia classifier, evaluate it on held-out patients "
          "beside a metadata-only baseline", _train_rsna_arguments)
def _train_rsna(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..tasks import pneumonia

    cfg = load_config("rsna", args.profile)
    result = pneumonia.run(cfg, root=args.root, epochs=args.epochs, run_dir=args.run_dir)
    f = result["figures"]
    print(f"test AUC {_interval(f, 'test_auc')}, n={f['n_test']} patients "
          f"({f['n_test_positive']} with opacity)")
    print(f"baseline (logistic regression on age, sex, view) test AUC "
          f"{_interval(f, 'baseline_auc')}; model minus baseline {_interval(f, 'auc_gain')}")
    print(f"threshold {f['threshold']:.3f} (chosen on {f['n_validation']} validation "
          f"patients): test sensitivity {_interval(f, 'test_sensitivity')}, specificity "
          f"{_interval(f, 'test_specificity')}")
    print(f"best epoch {f['best_epoch']} of {f['epochs_run']} by {f['monitor']} "
          f"(validation); {result['train_seconds']:.0f} s of training")
    by_view = result["test"]["by"]
    if by_view is not None:
        print(by_view.round(3).to_string(index=False))
    print(f"model: {result['model_path']}\nlogs: {result['run_dir']} "
          f"(tensorboard --logdir {result['run_dir']}/tensorboard)")
    return 0
