"""Generic 2-D/3-D segmentation for any data set in the nnU-Net or Decathlon layout.

The pipeline, one step per function (a notebook calls them one cell at a time; ``run``
calls them all, and ``medimg train segmentation`` calls ``run``)::

    cases = msd.find_cases(root)                       # medimg.datasets.msd
    table = split_cases(cases, cfg)                    # train / validation / test by case
    prints = fingerprint(table[table.split != "test"])  # shapes, spacings, intensities
    plan = make_plan_from_config(prints, cfg)          # spacing, patch, network, normalisation
    manifest = preprocess(fit_cases, plan, cache_root) # keyed, resumable HDF5 cache
    train_ds = patch_dataset(cached, plan, ...)        # tf.data, foreground oversampling
    model = build_model(plan); model.compile(loss=loss_for(plan), metrics=metrics_for(plan))
    history = medimg.training.train(model, train_ds, val_ds, monitor="val_dice")
    predict_cases(model, plan, test_cases, out_dir)    # NIfTI on each case's own grid
    scores = evaluate_folder(out_dir, test_cases, description.foreground); summarize(scores)

Modules: :mod:`.plan`, :mod:`.preprocess`, :mod:`.data`, :mod:`.model`,
:mod:`.inference`, :mod:`.evaluate`, :mod:`.run`. Chapter adapters
(:mod:`medimg.tasks.brats`, :mod:`medimg.tasks.spine`) supply only what is specific to
their data set (discovery, labels and regions, splits).
"""

from .data import CaseReader, patch_dataset, patch_dataset_fn, sampling_index, sampling_indexes
from .evaluate import evaluate_folder, mean_with_ci, score_case, summarize
from .inference import (
    predict_case,
    predict_cases,
    predict_files,
    probabilities_to_labels,
    to_source_grid,
)
from .model import (
    build_model,
    check_model,
    compile_model,
    dice_bce_loss,
    dice_cce_loss,
    load_model,
    loss_for,
    metrics_for,
)
from .plan import PLANES, Plan, estimate_memory_mb, fingerprint, make_plan
from .preprocess import (
    cache_dir_for,
    cached_cases,
    normalize,
    preprocess,
    preprocess_case,
    read_case,
)
from .run import (
    DEFAULT_ADAPTER,
    Adapter,
    Prepared,
    make_plan_from_config,
    prepare,
    run,
    sampling_settings,
    split_cases,
)

__all__ = [
    "DEFAULT_ADAPTER",
    "PLANES",
    "Adapter",
    "CaseReader",
    "Plan",
    "Prepared",
    "build_model",
    "cache_dir_for",
    "cached_cases",
    "check_model",
    "compile_model",
    "dice_bce_loss",
    "dice_cce_loss",
    "estimate_memory_mb",
    "evaluate_folder",
    "fingerprint",
    "load_model",
    "loss_for",
    "make_plan",
    "make_plan_from_config",
    "mean_with_ci",
    "metrics_for",
    "normalize",
    "patch_dataset",
    "patch_dataset_fn",
    "predict_case",
    "predict_cases",
    "predict_files",
    "prepare",
    "preprocess",
    "preprocess_case",
    "probabilities_to_labels",
    "read_case",
    "run",
    "sampling_index",
    "sampling_indexes",
    "sampling_settings",
    "score_case",
    "split_cases",
    "summarize",
    "to_source_grid",
]
