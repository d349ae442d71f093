"""Binary classification from an image and a few tabular features, as steps and ``run``.

Nothing here knows a data set. The input is a table with one row per image (a group
column naming the patient, a 0/1 target, numeric feature columns) and an array holding
that table's images in the same order; a chapter adapter (:mod:`medimg.tasks.pneumonia`)
builds both. The steps, in the order a notebook calls them, one cell each:

1. :func:`split` - train / validation / test by patient, stratified by the target
   (:func:`medimg.datasets.splits.split_by_group`);
2. :func:`make_dataset` - ``tf.data`` pipelines of ``((image, features), target)``
   batches, with :func:`augment` for training;
3. :func:`build_model` then :func:`compile_model` (or ``model.compile`` written out);
4. :func:`medimg.training.train` - the one training loop (best epoch chosen on
   validation);
5. :func:`predict`, :func:`choose_threshold` (on validation only) and :func:`evaluate`
   (AUC with a bootstrap interval over patients, sensitivity and specificity with
   their intervals, AUC within groups such as the view position);
6. :func:`fit_baseline` - a logistic regression on the features alone, on the same
   split - and :func:`compare_auc` (the model's gain over it, paired bootstrap);
7. :func:`headline` - the figures, each named after the part it was measured on.

:func:`run` chains them for the command line. The test patients choose nothing: the
epoch and the threshold are chosen on validation.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import intensity, metrics, models, training
from ..datasets.splits import SPLITS, split_by_group
from ..errors import ConfigError, InvalidImageError, LayoutError

__all__ = [
    "augment",
    "build_model",
    "choose_threshold",
    "compare_auc",
    "compile_model",
    "evaluate",
    "fit_baseline",
    "headline",
    "make_dataset",
    "predict",
    "run",
    "split",
]


# --------------------------------------------------------------------------- split
def split(table: pd.DataFrame, *, group: str = "patientId", target: str = "Target",
          validation_fraction: float = 0.15, test_fraction: float = 0.2,
          seed: int = 0) -> pd.DataFrame:
    """Train / validation / test by ``group`` (patient), stratified by ``target``.

    :func:`medimg.datasets.splits.split_by_group`, plus the checks a classifier needs
    before it trains: the target holds only 0 and 1, and validation and test each
    hold both classes (else their AUC is undefined and nothing could be chosen on
    validation or reported on test).

    Parameters
    ----------
    table : pandas.DataFrame
        One row per image, with ``group`` and ``target`` columns.
    group, target : str
        Column names.
    validation_fraction, test_fraction : float
        Shares of the patients.
    seed : int
        Shuffling seed.

    Returns
    -------
    pandas.DataFrame
        ``table`` with ``split`` (Categorical: train, validation, test).

    Raises
    ------
    LayoutError
        A missing column, a target other than 0/1, or a part without one class.
    ConfigError
        Fractions out of range.
    """
    if target not in table.columns:
        raise LayoutError(f"split: no target column {target!r}")
    values = pd.to_numeric(table[target], errors="coerce")
    if values.isna().any() or not values.isin([0, 1]).all():
        raise LayoutError(f"split: column {target!r} must hold only 0 and 1")
    out = split_by_group(table, group=group, stratify=target,
                         validation_fraction=validation_fraction,
                         test_fraction=test_fraction, seed=seed)
    for part in SPLITS:
        present = set(values[out["split"] == part].astype(int))
        if part != "train" and present != {0, 1}:
            raise LayoutError(
                f"split: the {part} part holds {sorted(present) or 'no rows'} only "
                f"({int((out['split'] == part).sum())} rows); its AUC is undefined: use more "
                "patients or a larger fraction")
    return out


# --------------------------------------------------------------------------- tf.data
def _tf():
    from .._backend import tensorflow

    return tensorflow()


def augment(images: Any, seed: Any, *, max_shift: float = 0.06, max_zoom: float = 0.08,
            max_rotation_deg: float = 5.0, max_brightness: float = 0.05,
            max_contrast: float = 0.1, clip: tuple[float, float] | None = (0.0, 1.0)) -> Any:
    """Small random shift, zoom, rotation, brightness and contrast, drawn per image.

    Stateless: the same ``seed`` gives the same draws. No flips: a chest film flipped
    left-right puts the heart on the wrong side, which no real film shows.

    Parameters
    ----------
    images : numpy.ndarray or tf.Tensor
        ``(n, rows, cols, channels)`` float32.
    seed : sequence of two int or tf.Tensor of shape (2,)
        Stateless seed.
    max_shift : float
        Largest shift, as a fraction of the image size.
    max_zoom : float
        Largest relative zoom in or out.
    max_rotation_deg : float
        Largest rotation in degrees (about the centre).
    max_brightness : float
        Largest added offset (in the units of ``images``).
    max_contrast : float
        Largest relative contrast change (about each image's mean).
    clip : (float, float) or None
        Range the result is clipped to (None: no clipping).

    Returns
    -------
    tf.Tensor
        Same shape, float32. Edges are filled by reflection.
    """
    tf = _tf()
    images = tf.convert_to_tensor(images, tf.float32)
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    shape = tf.shape(images)
    n = shape[0]
    height = tf.cast(shape[1], tf.float32)
    width = tf.cast(shape[2], tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, 6)

    def uniform(i, limit):
        return tf.random.stateless_uniform([n], seeds[i], -limit, limit)

    angle = uniform(0, max_rotation_deg * math.pi / 180.0)
    scale = 1.0 + uniform(1, max_zoom)
    dx = uniform(2, max_shift) * width
    dy = uniform(3, max_shift) * height
    # Output pixel (x, y) samples input A @ (x, y) + b: rotation and zoom about the centre.
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    cx, cy = (width - 1) / 2, (height - 1) / 2
    a0, a1, b0, b1 = cos, -sin, sin, cos
    a2 = cx - a0 * cx - a1 * cy - dx
    b2 = cy - b0 * cx - b1 * cy - dy
    zeros = tf.zeros_like(a0)
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=shape[1:3],
        interpolation="BILINEAR", fill_mode="REFLECT", fill_value=0.0)
    brightness = uniform(4, max_brightness)[:, None, None, None]
    contrast = 1.0 + uniform(5, max_contrast)[:, None, None, None]
    mean = tf.reduce_mean(out, axis=[1, 2, 3], keepdims=True)
    out = (out - mean) * contrast + mean + brightness
    return out if clip is None else tf.clip_by_value(out, float(clip[0]), float(clip[1]))


_augment_images = augment  # make_dataset's argument `augment` shadows the function

def _as_arrays(images: Any, features: Any, targets: Any) -> tuple[Any, Any, Any]:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[0] == 0:
        raise InvalidImageError(f"images must be (n, rows, cols) or (n, rows, cols, channels) "
                                f"with n >= 1, got shape {images.shape}")
    n = images.shape[0]
    features = (np.zeros((n, 0), np.float32) if features is None
                else np.asarray(features, dtype=np.float32))
    if features.ndim == 1 and features.size == 0:
        features = features.reshape(n, 0)
    if features.ndim != 2 or features.shape[0] != n:
        raise InvalidImageError(f"{n} images but {features.shape[0]} feature rows "
                                f"(features must be (n, k), got shape {features.shape})")
    if not np.all(np.isfinite(features)):
        raise InvalidImageError("features hold NaN or infinite values (encode missing values "
                                "as an explicit 'unknown' column)")
    if targets is not None:
        targets = np.asarray(targets, dtype=np.float32).reshape(-1)
        if targets.shape[0] != n:
            raise InvalidImageError(f"{n} images but {targets.shape[0]} targets")
    return images, features, targets


def make_dataset(images: Any, features: Any = None, targets: Any = None, *,
                 batch_size: int = 32, shuffle: bool = False, augment: bool = False,
                 seed: int = 0, clahe: tuple[float, Sequence[int]] | None = None,
                 drop_remainder: bool = False) -> Any:
    """A ``tf.data.Dataset`` of ``((image, features), target)`` batches from arrays.

    The arrays are held once as constants and batches are gathered by index, so an
    epoch costs a gather and a conversion, never a decode. Shuffling draws a new
    order every epoch (seeded); the conversion to float32 (uint8 images are scaled
    to [0, 1]), the optional CLAHE and :func:`augment` run as a parallel map over
    whole batches; batches are prefetched.

    Parameters
    ----------
    images : numpy.ndarray
        ``(n, rows, cols)`` or ``(n, rows, cols, channels)``; uint8 (scaled to
        [0, 1]) or float (used as they are).
    features : numpy.ndarray, optional
        ``(n, k)`` float; None or ``k = 0``: no features (the model's feature input
        then has width 0).
    targets : numpy.ndarray, optional
        ``(n,)`` 0/1. None: elements are ``((image, features),)``, for
        :meth:`keras.Model.predict`.
    batch_size : int
    shuffle : bool
        Reshuffle the rows every epoch (training).
    augment : bool
        :func:`augment` every batch (training only), drawn anew every epoch.
    seed : int
        Seeds the shuffling and the augmentation.
    clahe : (clip_limit, tile_grid), optional
        :func:`medimg.intensity.clahe` on every batch inside the pipeline (on the GPU
        when there is one), for uint8 images cached without it; the pixels equal
        OpenCV's to one grey level.
    drop_remainder : bool
        Drop a last, smaller batch.

    Returns
    -------
    tf.data.Dataset
        Elements ``((image (b, rows, cols, channels) float32, features (b, k)
        float32), target (b,) float32)``. Unshuffled, batches follow the row order.

    Raises
    ------
    InvalidImageError
        Shapes that disagree, no images, non-finite features.
    """
    tf = _tf()
    images, features, targets = _as_arrays(images, features, targets)
    scale = images.dtype == np.uint8
    if clahe is not None and images.dtype not in (np.uint8, np.uint16):
        raise InvalidImageError(f"clahe= needs uint8 or uint16 images, got {images.dtype}")
    n = images.shape[0]
    images_t = tf.constant(images)
    features_t = tf.constant(features)
    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)

    def gather(index):
        image = tf.gather(images_t, index)
        if clahe is not None:
            image = intensity.clahe(image, float(clahe[0]), tuple(int(t) for t in clahe[1]))
        image = tf.cast(image, tf.float32)
        if scale:
            image = image / 255.0
        return image, tf.gather(features_t, index), index

    ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if augment:
        limits = (0.0, 1.0) if scale else None
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda batch, s: (_augment_images(batch[0], s, clip=limits), *batch[1:]),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if targets is None:
        ds = ds.map(lambda image, feats, index: ((image, feats),))
    else:
        targets_t = tf.constant(targets)
        ds = ds.map(lambda image, feats, index: ((image, feats), tf.gather(targets_t, index)))
    return ds.prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------- model
def build_model(image_shape: Sequence[int], n_features: int, **settings: Any) -> Any:
    """The two-input network, not yet compiled (:func:`medimg.models.two_input_classifier`).

    Parameters
    ----------
    image_shape : (rows, cols, channels)
    n_features : int
        Width of the feature vector.
    **settings
        ``filters``, ``convs_per_block``, ``batch_norm``, ``batch_norm_momentum``,
        ``dropout``, ``dense_units``, ``feature_units`` (the config's ``model`` section).

    Returns
    -------
    keras.Model
        Inputs ``(image, features)``, output ``(N, 1)`` probabilities; compile it with
        :func:`compile_model` or your own ``model.compile``.
    """
    allowed = {"filters", "convs_per_block", "batch_norm", "batch_norm_momentum", "dropout",
               "dense_units", "feature_units", "name"}
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise ConfigError(f"build_model: unknown setting(s) {unknown} "
                          f"(expected some of {sorted(allowed)})")
    return models.two_input_classifier(tuple(image_shape), int(n_features), compile=False,
                                       **settings)


def compile_model(model: Any, *, learning_rate: float = 1e-3) -> Any:
    """Compile for a sigmoid output: Adam, binary cross-entropy, AUC and accuracy.

    Written out, this is::

        model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                      loss=keras.losses.BinaryCrossentropy(),
                      metrics=[keras.metrics.AUC(name="auc"),
                               keras.metrics.BinaryAccuracy(name="accuracy")])

    Returns
    -------
    keras.Model
        ``model``, compiled.
    """
    import keras

    model.compile(optimizer=keras.optimizers.Adam(float(learning_rate)),
                  loss=keras.losses.BinaryCrossentropy(),
                  metrics=[keras.metrics.AUC(name="auc"),
                           keras.metrics.BinaryAccuracy(name="accuracy")])
    return model


def predict(model: Any, images: Any, features: Any = None, *, batch_size: int = 64,
            clahe: tuple[float, Sequence[int]] | None = None) -> np.ndarray:
    """The model's probability of the positive class for every image, in row order.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` float64 in [0, 1].
    """
    ds = make_dataset(images, features, None, batch_size=batch_size, shuffle=False,
                      clahe=clahe)
    return np.asarray(model.predict(ds, verbose=0), dtype=np.float64).reshape(-1)


# --------------------------------------------------------------------------- evaluation
def choose_threshold(targets: Any, scores: Any, threshold: float = 0.0) -> float:
    """The operating threshold: ``threshold`` when positive, else Youden's J on these
    (validation) scores (:func:`medimg.metrics.youden_threshold`). Pass validation
    data only: a threshold chosen on the test set flatters the test figures."""
    if threshold and threshold > 0:
        return float(threshold)
    return metrics.youden_threshold(targets, scores)


def _proportion(k: int, n: int, confidence: float) -> tuple[float, float, float]:
    """A proportion with its Wilson score interval (NaN when ``n`` is 0)."""
    value = metrics.proportion_with_ci(k, n, confidence=confidence)
    return (value["rate"], value["low"], value["high"])


def _per_group(targets: Any, scores: Any, groups: Any, by: Any) -> pd.DataFrame:
    """One row per group: the largest target, the mean score, the first ``by`` value."""
    frame = pd.DataFrame({"target": np.asarray(targets).reshape(-1).astype(int),
                          "score": np.asarray(scores, dtype=np.float64).reshape(-1)})
    if by is not None:
        frame["by"] = np.asarray(by, dtype=object).reshape(-1)
    if groups is None:
        return frame
    frame["group"] = np.asarray(groups, dtype=object).reshape(-1)
    if frame["group"].is_unique:
        return frame.drop(columns="group")
    agg = {"target": "max", "score": "mean", **({"by": "first"} if by is not None else {})}
    return frame.groupby("group", sort=False).agg(agg).reset_index(drop=True)


def evaluate(targets: Any, scores: Any, *, threshold: float, groups: Any = None,
             by: Any = None, n_bootstrap: int = 1000, confidence: float = 0.95,
             seed: int | None = 0) -> dict[str, Any]:
    """AUC with its bootstrap interval, and the confusion matrix at a threshold.

    With ``groups`` (patient IDs) every figure is per patient: a patient's images
    count once (mean score, positive when any image is), so the bootstrap resamples
    patients, the independent units. Sensitivity and specificity come with Wilson
    intervals; ``by`` (e.g. view position) adds the AUC within each of its values.

    Parameters
    ----------
    targets : array-like of {0, 1}, shape (n,)
    scores : array-like of float, shape (n,)
    threshold : float
        Operating point, chosen beforehand on validation data (:func:`choose_threshold`).
    groups : array-like, shape (n,), optional
        Patient of each row.
    by : array-like, shape (n,), optional
        A grouping to report the AUC within (constant per patient).
    n_bootstrap : int
        Resamples for the intervals.
    confidence : float
        Coverage of every interval.
    seed : int
        Seeds the bootstrap.

    Returns
    -------
    dict
        ``auc``, ``auc_low``, ``auc_high``, ``n`` (patients), ``n_positive``,
        ``threshold``, ``sensitivity`` / ``specificity`` (each with ``_low`` /
        ``_high``), ``confusion`` (2x2 DataFrame, truth x predicted) and ``by``
        (DataFrame: ``group``, ``n``, ``n_positive``, ``auc``, ``low``, ``high``,
        ``false_positive``, ``false_negative``; None without ``by``).

    Raises
    ------
    InvalidImageError
        Lengths differ, labels other than 0/1, or one class only.
    """
    per = _per_group(targets, scores, groups, by)
    auc = metrics.auc_with_ci(per["target"], per["score"], n_bootstrap=n_bootstrap,
                              confidence=confidence, seed=seed)
    confusion = metrics.confusion_at(per["target"], per["score"], threshold)
    (tn, fp), (fn, tp) = confusion.to_numpy()
    sensitivity = _proportion(tp, tp + fn, confidence)
    specificity = _proportion(tn, tn + fp, confidence)
    result: dict[str, Any] = {
        "auc": auc["auc"], "auc_low": auc["low"], "auc_high": auc["high"], "n": auc["n"],
        "n_positive": auc["n_positive"], "threshold": float(threshold),
        "sensitivity": sensitivity[0], "sensitivity_low": sensitivity[1],
        "sensitivity_high": sensitivity[2],
        "specificity": specificity[0], "specificity_low": specificity[1],
        "specificity_high": specificity[2],
        "confusion": confusion, "by": None,
    }
    if by is not None:
        table = metrics.auc_by_group(per["target"], per["score"], per["by"],
                                     n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)
        called = per["score"] >= threshold
        labels = per["by"].where(per["by"].notna(), "missing").astype(str)
        errors = pd.DataFrame({
            "false_positive": (called & (per["target"] == 0)).groupby(labels).sum(),
            "false_negative": (~called & (per["target"] == 1)).groupby(labels).sum(),
        })
        result["by"] = table.join(errors, on="group")
    return result


def compare_auc(targets: Any, scores: Any, reference_scores: Any, *, groups: Any = None,
                n_bootstrap: int = 1000, confidence: float = 0.95,
                seed: int | None = 0) -> dict[str, float]:
    """AUC of ``scores`` minus AUC of ``reference_scores`` on the same cases, with a
    paired bootstrap interval (the same resampled patients score both).

    Parameters
    ----------
    targets, scores, reference_scores : array-like, shape (n,)
    groups : array-like, shape (n,), optional
        Patient of each row (figures per patient, as in :func:`evaluate`).
    n_bootstrap, confidence, seed :
        As for :func:`evaluate`.

    Returns
    -------
    dict
        ``difference``, ``low``, ``high``, ``auc``, ``reference_auc``, ``n``,
        ``fraction_better`` (share of resamples where ``scores`` wins).
    """
    model = _per_group(targets, scores, groups, None)
    reference = _per_group(targets, reference_scores, groups, None)
    truth = model["target"].to_numpy(np.int8)
    a = model["score"].to_numpy()
    b = reference["score"].to_numpy()
    if len(set(truth.tolist())) < 2:
        raise InvalidImageError("compare_auc: one class only; the AUC is undefined")
    difference = float(metrics.rank_auc(truth[None], a[None])[0] - metrics.rank_auc(truth[None], b[None])[0])
    generator = np.random.default_rng(seed)
    values = []
    chunk = max(1, min(n_bootstrap, 2_000_000 // truth.size))
    for start in range(0, n_bootstrap, chunk):
        idx = generator.integers(0, truth.size, size=(min(chunk, n_bootstrap - start),
                                                      truth.size))
        values.append(metrics.rank_auc(truth[idx], a[idx]) - metrics.rank_auc(truth[idx], b[idx]))
    values = np.concatenate(values) if values else np.array([])
    values = values[np.isfinite(values)]
    alpha = (1 - confidence) / 2
    low, high = ((float(v) for v in np.quantile(values, [alpha, 1 - alpha])) if values.size
                 else (math.nan, math.nan))
    return {"difference": difference, "low": low, "high": high,
            "auc": float(metrics.rank_auc(truth[None], a[None])[0]),
            "reference_auc": float(metrics.rank_auc(truth[None], b[None])[0]), "n": int(truth.size),
            "fraction_better": float((values > 0).mean()) if values.size else math.nan}


def fit_baseline(table: pd.DataFrame, feature_columns: Sequence[str], *,
                 target: str = "Target") -> Any:
    """A logistic regression on the features alone (no image), fitted on ``table``.

    The yardstick a model must beat: what the tabular features (for chest films, view
    position, age and sex) predict without looking at a pixel. Fit it on the training
    part of the same split, and score the same test patients. Standardised features,
    L2 penalty ``C = 1`` (scikit-learn's default; nothing is tuned, so nothing is
    chosen on validation or test).

    Returns
    -------
    sklearn.pipeline.Pipeline
        Fitted; ``predict_proba(table[feature_columns])[:, 1]`` gives its scores.

    Raises
    ------
    LayoutError
        Missing columns, no feature columns, or one class only.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    columns = list(feature_columns)
    missing = [c for c in (*columns, target) if c not in table.columns]
    if missing or not columns:
        raise LayoutError(f"fit_baseline: missing column(s) {missing or 'no feature columns'}")
    y = table[target].astype(int).to_numpy()
    if len(set(y.tolist())) < 2:
        raise LayoutError(f"fit_baseline: {target!r} holds one class only")
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(
        table[columns].astype(np.float32), y)


def headline(test: Mapping[str, Any], *, validation: Mapping[str, Any] | None = None,
             baseline: Mapping[str, Any] | None = None,
             comparison: Mapping[str, Any] | None = None,
             history: pd.DataFrame | None = None,
             counts: Mapping[str, tuple[int, int]] | None = None) -> dict[str, Any]:
    """The headline figures as one flat dict, every name saying where it was measured.

    Parameters
    ----------
    test, validation : dict
        :func:`evaluate` on the test and on the validation patients.
    baseline : dict, optional
        :func:`evaluate` of the baseline's scores on the test patients.
    comparison : dict, optional
        :func:`compare_auc` of the model against the baseline on the test patients.
    history : pandas.DataFrame, optional
        From :func:`medimg.training.train` (best epoch, epochs run, monitor).
    counts : dict, optional
        ``{part: (patients, positives)}`` (e.g. for ``train``).

    Returns
    -------
    dict
        ``test_auc`` (``_low``, ``_high``), ``n_test``, ``n_test_positive``,
        ``test_sensitivity`` / ``test_specificity`` (with intervals), ``threshold`` (chosen
        on validation), ``validation_auc`` ..., ``baseline_auc`` (``_low``, ``_high``: the
        baseline on the test patients), ``auc_gain`` (``_low``, ``_high``: model minus
        baseline, paired), ``test_auc_<group>`` with ``n_test_<group>``, ``best_epoch``,
        ``epochs_run``, ``monitor`` and ``n_<part>`` / ``n_<part>_positive``.
    """
    out: dict[str, Any] = {}

    def add(prefix: str, evaluation: Mapping[str, Any]) -> None:
        out[f"{prefix}_auc"] = evaluation["auc"]
        out[f"{prefix}_auc_low"] = evaluation["auc_low"]
        out[f"{prefix}_auc_high"] = evaluation["auc_high"]

    add("test", test)
    out["n_test"], out["n_test_positive"] = test["n"], test["n_positive"]
    for name in ("sensitivity", "specificity"):
        for suffix in ("", "_low", "_high"):
            out[f"test_{name}{suffix}"] = test[f"{name}{suffix}"]
    out["threshold"] = test["threshold"]
    if validation is not None:
        add("validation", validation)
        out["n_validation"] = validation["n"]
        out["n_validation_positive"] = validation["n_positive"]
    if baseline is not None:
        add("baseline", baseline)
    if comparison is not None:
        out["auc_gain"] = comparison["difference"]
        out["auc_gain_low"] = comparison["low"]
        out["auc_gain_high"] = comparison["high"]
    if test.get("by") is not None:
        for row in test["by"].itertuples(index=False):
            key = "".join(ch if ch.isalnum() else "_" for ch in str(row.group).lower())
            out[f"test_auc_{key}"] = row.auc
            out[f"test_auc_{key}_low"] = row.low
            out[f"test_auc_{key}_high"] = row.high
            out[f"n_test_{key}"] = row.n
            out[f"n_test_{key}_positive"] = row.n_positive
    if history is not None:
        out["best_epoch"] = history.attrs.get("best_epoch")
        out["epochs_run"] = len(history)
        out["monitor"] = history.attrs.get("monitor")
    for part, (n, positives) in (counts or {}).items():
        out[f"n_{part}"], out[f"n_{part}_positive"] = int(n), int(positives)
    return out


# --------------------------------------------------------------------------- run
def run(cfg: Any, table: pd.DataFrame, images: Any, *, feature_columns: Sequence[str],
        target: str = "Target", group: str = "patientId", by: str | None = None,
        run_dir: str | os.PathLike | None = None, epochs: int | None = None,
        clahe: tuple[float, Sequence[int]] | None = None,
        verbose: int | str = 2) -> dict[str, Any]:
    """The whole job: split, pipelines, model, training, evaluation, baseline.

    Parameters
    ----------
    cfg : medimg.config.Config
        Uses ``seed``, ``split`` (``validation_fraction``, ``test_fraction``),
        ``model`` (:func:`build_model`'s settings), ``train`` (``epochs``,
        ``batch_size`` (global), ``learning_rate``, ``patience``, ``monitor``,
        ``augment``, ``run_dir``, optional ``distribute``: :func:`medimg.training.strategy_for`)
        and ``evaluate`` (``n_bootstrap``, ``threshold``).
    table : pandas.DataFrame
        One row per image: ``group``, ``target`` and ``feature_columns`` (and a
        ``split`` column, else :func:`split` makes one).
    images : numpy.ndarray
        ``(len(table), rows, cols[, channels])``, row ``i`` is ``table``'s row ``i``.
    feature_columns : sequence of str
    target, group : str
    by : str, optional
        Column to report the test AUC within (e.g. ``view_position``).
    run_dir : path, optional
        Checkpoints, logs and ``model.keras``; default ``cfg.train.run_dir/<profile>``.
    epochs : int, optional
        Overrides ``cfg.train.epochs``.
    clahe : (clip_limit, tile_grid), optional
        CLAHE inside the pipeline (:func:`make_dataset`).
    verbose :
        Keras ``fit`` verbosity.

    Returns
    -------
    dict
        ``figures`` (:func:`headline`), ``test`` / ``validation`` / ``baseline``
        (:func:`evaluate`), ``comparison`` (:func:`compare_auc`), ``history``,
        ``table`` (with ``split``, ``score`` and ``baseline_score``), ``model_path``,
        ``run_dir``, ``train_seconds``.
    """
    import keras

    # first: a multi-worker strategy sets up its collectives when TensorFlow starts
    strategy = training.strategy_for(cfg.train.get("distribute", "none"))
    images = np.asarray(images)
    if len(images) != len(table):
        raise InvalidImageError(f"run: {len(images)} images for {len(table)} table rows")
    seed = int(cfg.seed)
    keras.utils.set_random_seed(seed)
    columns = list(feature_columns)
    table = table.reset_index(drop=True)
    if "split" not in table.columns:
        table = split(table, group=group, target=target,
                      validation_fraction=cfg.split.validation_fraction,
                      test_fraction=cfg.split.test_fraction, seed=seed)
    index = {part: np.flatnonzero((table["split"] == part).to_numpy()) for part in SPLITS}
    features = table[columns].to_numpy(np.float32)
    targets = table[target].to_numpy(np.float32)
    train_cfg = cfg.train

    def data(part: str, **kwargs: Any) -> Any:
        rows = index[part]
        return make_dataset(images[rows], features[rows], targets[rows], clahe=clahe, **kwargs)

    train_ds = data("train", batch_size=train_cfg.batch_size, shuffle=True,
                    augment=bool(train_cfg.augment), seed=seed)
    validation_ds = data("validation", batch_size=64)
    with training.scope(strategy):  # train.distribute: built and compiled in its scope
        model = compile_model(build_model(images.shape[1:3] + (images.shape[3:] or (1,)),
                                          len(columns), **cfg.model.to_dict()),
                              learning_rate=train_cfg.learning_rate)
    run_dir = Path(run_dir) if run_dir is not None else (
        cfg.repo_root / train_cfg.run_dir / cfg.profile)
    start = time.perf_counter()
    history = training.train(model, train_ds, validation_ds,
                             epochs=int(epochs or train_cfg.epochs), run_dir=run_dir,
                             monitor=train_cfg.monitor, patience=int(train_cfg.patience),
                             verbose=verbose, seed=seed, strategy=strategy)
    train_seconds = time.perf_counter() - start
    model_path = run_dir / "model.keras"
    model.save(model_path)

    table["score"] = np.nan
    for part in ("validation", "test"):
        rows = index[part]
        table.loc[rows, "score"] = predict(model, images[rows], features[rows], clahe=clahe)
    baseline_model = fit_baseline(table.iloc[index["train"]], columns, target=target)
    table["baseline_score"] = baseline_model.predict_proba(table[columns].astype(np.float32))[:, 1]
    parts = {part: table.iloc[index[part]] for part in SPLITS}
    settings = {"n_bootstrap": int(cfg.evaluate.n_bootstrap), "seed": seed}
    validation = parts["validation"]
    threshold = choose_threshold(validation[target], validation["score"],
                                 float(cfg.evaluate.threshold))
    baseline_threshold = choose_threshold(validation[target], validation["baseline_score"],
                                          float(cfg.evaluate.threshold))
    test = parts["test"]
    results = {
        "validation": evaluate(validation[target], validation["score"], threshold=threshold,
                               groups=validation[group], **settings),
        "test": evaluate(test[target], test["score"], threshold=threshold, groups=test[group],
                         by=None if by is None else test[by], **settings),
        "baseline": evaluate(test[target], test["baseline_score"],
                             threshold=baseline_threshold, groups=test[group], **settings),
        "comparison": compare_auc(test[target], test["score"], test["baseline_score"],
                                  groups=test[group], **settings),
    }
    counts = {part: (int(frame[group].nunique()),
                     int(frame.groupby(group)[target].max().sum()))
              for part, frame in parts.items()}
    figures = headline(results["test"], validation=results["validation"],
                       baseline=results["baseline"], comparison=results["comparison"],
                       history=history, counts={"train": counts["train"]})
    figures["train_seconds"] = round(train_seconds, 1)
    return {**results, "figures": figures, "history": history, "table": table,
            "model_path": str(model_path), "run_dir": str(run_dir),
            "train_seconds": train_seconds}
