"""The whole segmentation pipeline from a config: what ``medimg train segmentation`` runs.

Steps (each also a function a notebook calls on its own): find the cases
(:func:`medimg.datasets.msd.find_cases`, or a chapter adapter's), split them by case
or subject (:func:`split_cases`), fingerprint the training and validation cases and
make the plan (:mod:`.plan`), preprocess them into the keyed cache (:mod:`.preprocess`),
build the patch pipelines (:mod:`.data`), build and compile the network (:mod:`.model`),
train with :func:`medimg.training.train`, save ``model.keras`` and ``plan.json``, predict
the held-out test cases on their own grids (:mod:`.inference`) and score them
(:mod:`.evaluate`). The test cases choose nothing: they are not fingerprinted, not
cached, not used for early stopping.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from ... import training
from ...datasets.msd import find_cases
from ...datasets.splits import split_by_group
from ...errors import ConfigError, LayoutError, MedimgError
from ...synthetic import ensure_data
from .data import patch_dataset, patch_dataset_fn, sampling_indexes
from .evaluate import evaluate_folder, summarize
from .inference import predict_cases
from .model import build_model, compile_model
from .plan import fingerprint, make_plan
from .preprocess import cached_cases, preprocess

__all__ = ["DEFAULT_ADAPTER", "Adapter", "make_plan_from_config", "run", "split_cases"]


@dataclass(frozen=True)
class Adapter:
    """What a data set adds to the generic pipeline (the chapters' adapters are these).

    Attributes
    ----------
    name : str
        Data set name (cache folder names).
    find_cases : callable
        ``root -> DataFrame`` with the columns of
        :func:`medimg.datasets.msd.find_cases` (``case``, ``images``, ``label``,
        ``split``, ``packed``) and ``attrs["dataset"]`` (a DatasetDescription).
    group : str
        Column the split keeps together (``case``; ``subject`` where one subject has
        several scans).
    split : callable, optional
        ``(labelled cases, cfg) -> DataFrame with split`` replacing the default split
        (e.g. VerSe's release folders).
    """
    name: str
    find_cases: Callable[[Any], pd.DataFrame]
    group: str = "case"
    split: Callable[[pd.DataFrame, Any], pd.DataFrame] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _msd_cases(root: Any) -> pd.DataFrame:

    return find_cases(root)


#: The adapter for data sets in the nnU-Net or Decathlon layout.
DEFAULT_ADAPTER = Adapter(name="segmentation", find_cases=_msd_cases)


def split_cases(cases: pd.DataFrame, cfg: Any = None, *, adapter: Adapter = DEFAULT_ADAPTER,
                validation_fraction: float | None = None, test_fraction: float | None = None,
                seed: int | None = None) -> pd.DataFrame:
    """Train / validation / test split of the labelled cases, by ``adapter.group``.

    Unlabelled cases (the data set's own test images) are left out: they cannot be
    scored, and nothing is learnt from them.

    Parameters
    ----------
    cases : pandas.DataFrame
        From ``find_cases``.
    cfg : Config, optional
        Supplies ``split.validation_fraction``, ``split.test_fraction`` and ``seed``
        when the arguments are not given.

    Returns
    -------
    pandas.DataFrame
        The labelled rows with ``split`` (train, validation, test); ``attrs`` kept.
    """
    labelled = cases[cases["label"].notna()]
    if labelled.empty:
        raise LayoutError("no labelled case to split")
    if adapter.split is not None and cfg is not None:
        out = adapter.split(labelled, cfg)
    else:
        section = cfg.split if cfg is not None else {}
        out = split_by_group(
            labelled, group=adapter.group,
            validation_fraction=float(validation_fraction if validation_fraction is not None
                                      else section["validation_fraction"]),
            test_fraction=float(test_fraction if test_fraction is not None
                                else section["test_fraction"]),
            seed=int(seed if seed is not None else cfg.seed))
    out.attrs.update(cases.attrs)
    return out


def sampling_settings(cfg: Any, n_cases: int) -> dict[str, Any]:
    """Keyword arguments of :func:`~medimg.tasks.segmentation.data.patch_dataset` from a
    config's ``sampling`` section and ``seed``.

    ``sampling.patches_per_epoch`` (when positive) sets the epoch's size whatever the
    number of cases, as nnU-Net's fixed iterations per epoch do: each case then gives
    ``round(patches_per_epoch / n_cases)`` patches (at least one), so a data set of 300
    small cases and one of 12 large ones train in comparable time per epoch. Otherwise
    ``sampling.patches_per_case`` applies.
    """
    sampling = cfg.sampling
    per_case = int(sampling.patches_per_case)
    per_epoch = int(sampling.get("patches_per_epoch", 0) or 0)
    if per_epoch > 0 and n_cases > 0:
        per_case = max(1, round(per_epoch / n_cases))
    return {"patches_per_case": per_case,
            "foreground_fraction": float(sampling.foreground_fraction),
            "max_background": float(sampling.max_background), "seed": int(cfg.seed)}


def make_plan_from_config(prints: pd.DataFrame, cfg: Any) -> Any:
    """:func:`~medimg.tasks.segmentation.plan.make_plan` with a config's ``preprocess``,
    ``plan`` and ``train.batch_size`` settings."""
    pre, plan = cfg.preprocess, cfg.plan
    return make_plan(
        prints, dimensionality=plan.dimensionality, slice_axis=plan.slice_axis,
        target_spacing=list(pre.target_spacing_mm), spacing_scale=float(pre.spacing_scale),
        crop_to_nonzero=bool(pre.crop_to_nonzero), bias_correction=bool(pre.bias_correction),
        n4_shrink=int(pre.n4_shrink), n4_iterations=list(pre.n4_iterations),
        patch_shape=list(plan.patch_shape), memory_budget_mb=float(plan.memory_budget_mb),
        max_patch_voxels=int(plan.max_patch_voxels), max_depth=int(plan.max_depth),
        base_filters=int(plan.base_filters), batch_size=int(cfg.train.batch_size))


class Prepared(NamedTuple):
    """What :func:`prepare` returns."""
    plan: Any
    manifest: pd.DataFrame
    cases: pd.DataFrame
    root: Path
    out: Path


def prepare(cfg: Any, *, data: str | os.PathLike | None = None,
            out: str | os.PathLike | None = None, adapter: Adapter = DEFAULT_ADAPTER,
            progress: bool = True) -> Prepared:
    """Find, split, fingerprint, plan and preprocess (everything before training).

    The plan is written to ``<out>/plan.json``; the training and validation cases are
    cached (keyed, resumable). The test cases are neither fingerprinted nor cached.

    Returns
    -------
    Prepared
        ``plan``, ``manifest`` (``attrs["cache_dir"]``), ``cases`` (labelled, with
        ``split``), ``root`` (the data set), ``out``.

    Raises
    ------
    MedimgError
        A bad data set (layout, unreadable or inconsistent cases, each named), before
        any training starts.
    """
    if cfg.task not in (None, "segmentation"):
        raise ConfigError(f"config {cfg.name!r} is a {cfg.task} config, not segmentation",
                          cfg.path)
    root = Path(data) if data is not None else ensure_data(cfg)
    out = Path(out) if out is not None else cfg.repo_root / cfg.output_dir / cfg.profile
    out.mkdir(parents=True, exist_ok=True)
    cases = adapter.find_cases(root)
    table = split_cases(cases, cfg, adapter=adapter)
    fit_cases = table[table["split"].isin(["train", "validation"])]
    fit_cases.attrs.update(cases.attrs)
    prints = fingerprint(fit_cases, n_jobs=cfg.n_jobs, progress=progress)
    plan = make_plan_from_config(prints, cfg)
    plan.save(out / "plan.json")
    cache_root = cfg.repo_root / cfg.preprocess.cache_dir
    backend = parallel_backend(cfg)
    manifest = preprocess(fit_cases, plan, cache_root, n_jobs=cfg.n_jobs, progress=progress,
                          backend=backend)
    max_background = float(cfg.sampling.max_background)
    if max_background > 0:  # the rule's allowed starts, stored once for every later run
        ok = manifest[manifest["status"].isin(["ok", "cached"])]
        sampling_indexes(list(ok["path"]), plan, max_background, n_jobs=cfg.n_jobs,
                         backend=backend, progress=progress)
    return Prepared(plan, manifest, table, root, out)


def parallel_backend(cfg: Any) -> str | None:
    """The :func:`medimg._parallel.map_items` backend of a config: its ``dask_scheduler``
    address when it has one, else the default (``MEDIMG_DASK_SCHEDULER`` when set, else
    processes on this machine)."""
    address = cfg.get("dask_scheduler") if hasattr(cfg, "get") else None
    return str(address) if address else None


def run(cfg: Any, *, data: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
        adapter: Adapter = DEFAULT_ADAPTER, epochs: int | None = None, progress: bool = True,
        verbose: int | str = 2) -> dict[str, Any]:
    """Plan, preprocess, train, predict and score a data set from a config.

    Parameters
    ----------
    cfg : medimg.config.Config
        A segmentation config (``configs/segmentation.yaml``, ``brats.yaml``,
        ``verse.yaml``).
    data : path, optional
        The data set (default: the config's data root, or synthetic data).
    out : path, optional
        Output folder (default ``<output_dir>/<profile>``): ``model.keras``,
        ``plan.json``, ``run/`` (logs, best checkpoint), ``predictions/`` (the test
        cases, NIfTI on their own grids), ``scores.csv``, ``summary.csv``.
    adapter : Adapter
        The data set's discovery (default: nnU-Net / Decathlon layouts).
    epochs : int, optional
        Overrides ``train.epochs``.
    progress : bool
        Progress bars.
    verbose :
        Keras ``fit`` verbosity.

    Returns
    -------
    dict
        ``plan``, ``cases`` (with ``split``), ``manifest``, ``history``, ``model_path``,
        ``plan_path``, ``scores`` (per test case and label), ``summary`` (per label,
        with intervals), ``predictions`` (table), ``train_seconds``, ``out``.

    Raises
    ------
    MedimgError
        A bad data set (layout, unreadable or inconsistent cases, named) before any
        training starts.
    """
    # first: a multi-worker strategy sets up its collectives when TensorFlow starts
    strategy = training.strategy_for(cfg.train.get("distribute", "none"))
    plan, manifest, table, _, out = prepare(cfg, data=data, out=out, adapter=adapter,
                                            progress=progress)
    description = plan.description()
    plan_path = out / "plan.json"
    fit_cases = table[table["split"].isin(["train", "validation"])]
    test_cases = table[table["split"] == "test"]
    failed = manifest[manifest["status"] == "error"]
    if len(failed):
        listing = "; ".join(f"{r.item}: {r.error}" for r in failed.head(5).itertuples())
        raise MedimgError(f"{len(failed)} case(s) failed preprocessing: {listing}",
                          manifest.attrs["cache_dir"])
    cached = cached_cases(manifest).set_index("case")
    parts = {name: cached.loc[[c for c in fit_cases.loc[fit_cases["split"] == name, "case"]
                               if c in cached.index]] for name in ("train", "validation")}
    train_cfg = cfg.train
    common = sampling_settings(cfg, len(parts["train"]))
    # train.distribute: the data come as dataset_fn(input_context), one shard per worker,
    # batch_size the global batch (see medimg.training)
    make_data = patch_dataset if strategy is None else patch_dataset_fn
    train_ds = make_data(parts["train"], plan, augment=bool(train_cfg.augment), **common)
    val_ds = (make_data(parts["validation"], plan, shuffle=False, **common)
              if len(parts["validation"]) else None)
    import keras

    keras.utils.set_random_seed(int(cfg.seed))
    with training.scope(strategy):
        model = build_model(plan, batch_norm=bool(cfg.model.batch_norm),
                            deconvolution=bool(cfg.model.deconvolution),
                            mixed_precision=bool(train_cfg.mixed_precision))
        compile_model(model, plan, learning_rate=float(train_cfg.learning_rate),
                      xla=bool(train_cfg.xla))
    start = time.perf_counter()
    history = training.train(model, train_ds, val_ds, epochs=int(epochs or train_cfg.epochs),
                             run_dir=out / "run", monitor=str(train_cfg.monitor),
                             patience=int(train_cfg.patience), tensorboard=False,
                             seed=int(cfg.seed), verbose=verbose, strategy=strategy)
    train_seconds = time.perf_counter() - start
    model_path = out / "model.keras"
    if not training.is_chief(strategy):  # the chief saves, predicts and scores
        return {"plan": plan, "cases": table, "manifest": manifest, "history": history,
                "model_path": model_path, "plan_path": plan_path, "out": out,
                "train_seconds": train_seconds, "model": model}
    model.save(model_path)
    predictions = pd.DataFrame(columns=["case", "prediction", "status", "seconds", "error"])
    scores = pd.DataFrame()
    summary = pd.DataFrame()
    if len(test_cases):
        predict = cfg.predict
        predictions = predict_cases(model, plan, test_cases, out / "predictions",
                                    overlap=float(predict.overlap),
                                    batch_size=int(predict.batch_size), progress=progress,
                                    overwrite=True)
        scores = evaluate_folder(out / "predictions", test_cases, description.foreground,
                                 progress=progress)
        scores.to_csv(out / "scores.csv", index=False)
        summary = summarize(scores, seed=int(cfg.seed))
        summary.to_csv(out / "summary.csv")
    return {"plan": plan, "cases": table, "manifest": manifest, "history": history,
            "model_path": model_path, "plan_path": plan_path, "predictions": predictions,
            "scores": scores, "summary": summary, "train_seconds": train_seconds, "out": out,
            "model": model}
