"""The RSNA pneumonia chapter on the generic classifier: only what is RSNA-specific.

The header features (age bucket, view position, sex, one-hot with explicit *unknown*
columns), the glue that turns an RSNA folder into the classifier's inputs (one row per
patient with its features; the preprocessed image cache built with the config's
``preprocess`` settings) and :func:`run`, the job behind ``medimg train rsna``.
Everything else (split, pipelines, model, training, evaluation, baseline) is
:mod:`medimg.tasks.classification`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..datasets import rsna
from ..errors import LayoutError
from ..io import dicom_metadata
from . import classification

__all__ = ["AGE_BUCKETS", "DISPLAY_AXCODES", "FEATURE_COLUMNS", "MAX_AGE_YEARS", "SEXES",
           "VIEW_POSITIONS", "cache_images", "feature_table", "features", "load_table", "run",
           "with_images"]

#: Where the rows and the columns of an RSNA film run (nibabel codes, for
#: :mod:`medimg.viz`'s ``axcodes``): the films are stored as a radiologist reads them, the
#: patient's feet at the bottom and the patient's left on the viewer's right (DICOM
#: Patient Orientation ``L\F``), for AP and PA films alike.
DISPLAY_AXCODES = ("I", "L")

#: Age buckets in years: [0, 20), [20, 40), [40, 60), [60, 80), [80, 120].
AGE_BUCKETS = ("0-20", "20-40", "40-60", "60-80", "80+")
_AGE_EDGES = (0, 20, 40, 60, 80, 121)
#: Oldest age accepted as real (older, e.g. the real set's 148-155, counts as unknown).
MAX_AGE_YEARS = 120
VIEW_POSITIONS = ("AP", "PA")
SEXES = ("F", "M")
#: Columns of the feature vector, in order: one-hot age bucket, view position and sex,
#: each with an ``unknown`` column that is 1 when the value is missing or impossible.
FEATURE_COLUMNS = (
    "age_0_20", "age_20_40", "age_40_60", "age_60_80", "age_80_plus", "age_unknown",
    "view_AP", "view_PA", "view_unknown",
    "sex_F", "sex_M", "sex_unknown",
)


def features(table: Any) -> Any:
    """Model features from metadata: age bucket, view position and sex, one-hot.

    Documented defaults for bad values (never guessed, always counted): a
    missing, unreadable, negative or impossible age (``> 120``, such as the real
    set's 148) sets ``age_unknown``; a view position other than AP/PA (missing,
    ``LL``, ...) sets ``view_unknown``; a sex other than F/M sets ``sex_unknown``.
    The counts are in ``attrs["defaults"]``.

    Parameters
    ----------
    table : pandas.DataFrame
        Needs ``age_years`` (numeric, missing allowed), ``view_position`` and ``sex``
        (strings or categories), as :func:`medimg.io.dicom_metadata` gives them.

    Returns
    -------
    pandas.DataFrame
        A copy of ``table`` with ``age_bucket`` (ordered category of
        :data:`AGE_BUCKETS`, missing when unknown) and the float32 columns of
        :data:`FEATURE_COLUMNS`.

    Raises
    ------
    LayoutError
        A required column is absent.

    Examples
    --------
    >>> import pandas as pd
    >>> t = features(pd.DataFrame({"age_years": [35, 148], "view_position": ["PA", "LL"],
    ...                            "sex": ["F", "M"]}))
    >>> t.age_bucket.tolist(), t.attrs["defaults"]["age_unknown"]
    (['20-40', nan], 1)
    """
    missing = [c for c in ("age_years", "view_position", "sex") if c not in table.columns]
    if missing:
        raise LayoutError(f"features: missing column(s) {missing} (expected the output of "
                          "medimg.io.dicom_metadata)")
    out = table.copy()
    age = pd.to_numeric(out["age_years"], errors="coerce").astype("float64")
    impossible = age.notna() & ((age < 0) | (age > MAX_AGE_YEARS))
    age = age.mask(impossible)
    bucket = pd.cut(age, bins=list(_AGE_EDGES), labels=list(AGE_BUCKETS), right=False)
    out["age_bucket"] = bucket
    for label, column in zip(AGE_BUCKETS, FEATURE_COLUMNS[:5], strict=True):
        out[column] = (bucket == label).astype("float32")
    out["age_unknown"] = bucket.isna().astype("float32")

    def one_hot(column: str, values: tuple[str, ...], prefix: str) -> Any:
        text = out[column].astype("string").str.strip().str.upper()
        for value in values:
            out[f"{prefix}_{value}"] = (text == value).fillna(False).astype("float32")
        known = text.isin(values).fillna(False)
        out[f"{prefix}_unknown"] = (~known).astype("float32")
        return ~known

    view_unknown = one_hot("view_position", VIEW_POSITIONS, "view")
    sex_unknown = one_hot("sex", SEXES, "sex")
    out.attrs["defaults"] = {
        "age_unknown": int(bucket.isna().sum()),
        "age_impossible": int(impossible.sum()),
        "view_unknown": int(np.asarray(view_unknown).sum()),
        "sex_unknown": int(np.asarray(sex_unknown).sum()),
    }
    return out


def feature_table(patients_table: Any, metadata: Any) -> Any:
    """Patients (from :func:`patients`) joined with their metadata and :func:`features`.

    Parameters
    ----------
    patients_table : pandas.DataFrame
        ``patientId``, ``Target``, ``path`` ... one row per patient.
    metadata : pandas.DataFrame
        From :func:`medimg.io.dicom_metadata` on the same paths (joined on ``path``).
        Files whose header failed to read keep their row, with unknown features.

    Returns
    -------
    pandas.DataFrame
        One row per patient, ``patientId`` order of ``patients_table``; the metadata
        columns, ``age_bucket`` and :data:`FEATURE_COLUMNS`. ``attrs["defaults"]``
        counts the documented defaults and adds ``metadata_errors``.
    """
    meta = metadata.drop(columns=[c for c in ("patientId",) if c in metadata.columns])
    meta = meta.assign(path=meta["path"].astype("string")).drop_duplicates("path")
    left = patients_table.assign(path=patients_table["path"].astype("string"))
    merged = left.merge(meta, on="path", how="left", validate="one_to_one")
    out = features(merged)
    errors = int(merged["error"].notna().sum()) if "error" in merged else 0
    out.attrs["defaults"] = {**out.attrs["defaults"], "metadata_errors": errors}
    out.attrs["layout"] = patients_table.attrs.get("layout")
    return out


def load_table(root: str | os.PathLike, *, n_jobs: int | None = -1,
               progress: bool = True) -> pd.DataFrame:
    """One row per labelled patient of an RSNA folder, with its header features.

    :func:`medimg.datasets.rsna.load_labels` and :func:`~medimg.datasets.rsna.patients`,
    the header fields read in parallel (:func:`medimg.io.dicom_metadata`, no pixel
    data), then :func:`feature_table`.

    Parameters
    ----------
    root : path
        The data set (real or synthetic).
    n_jobs : int
        Worker processes for the headers (-1: every core).
    progress : bool
        Progress bar.

    Returns
    -------
    pandas.DataFrame
        As :func:`feature_table`.

    Raises
    ------
    LayoutError
        Bad label files (:func:`medimg.datasets.rsna.load_labels`) or a box that ends past
        its image (:func:`medimg.datasets.rsna.check_boxes`).
    """
    labels = rsna.load_labels(root)
    patients = rsna.patients(labels)
    metadata = dicom_metadata(patients["path"], n_jobs=n_jobs, progress=progress)
    rsna.check_boxes(labels, metadata)
    return feature_table(patients, metadata)


def cache_images(cfg: Any, table: pd.DataFrame, root: str | os.PathLike, *,
                 progress: bool = True) -> rsna.RsnaCache:
    """The patients' images preprocessed once with the config's ``preprocess`` settings.

    :func:`medimg.datasets.rsna.build_cache` under
    ``<preprocess.cache_dir>/<data folder name>``: ``image_size`` square images,
    resampled to ``spacing_mm`` (0: fit the field of view), CLAHE with
    ``clahe_clip_limit`` and ``clahe_tile_grid``.

    Returns
    -------
    medimg.datasets.rsna.RsnaCache
    """
    p = cfg.preprocess
    return rsna.build_cache(
        table, cfg.repo_root / p.cache_dir / Path(root).name,
        image_shape=(int(p.image_size), int(p.image_size)), spacing_mm=float(p.spacing_mm),
        clip_limit=float(p.clahe_clip_limit), tile_grid=tuple(p.clahe_tile_grid),
        n_jobs=cfg.n_jobs, progress=progress)


def with_images(table: pd.DataFrame, cache: rsna.RsnaCache) -> tuple[pd.DataFrame, np.ndarray]:
    """The patients of ``table`` that have a cached image, and those images.

    Patients whose file failed to decode (:attr:`~medimg.datasets.rsna.RsnaCache.failed`)
    are left out, with a warning giving their number.

    Returns
    -------
    (pandas.DataFrame, numpy.ndarray)
        The kept rows (index reset) and their images ``(n, rows, cols)`` uint8, row
        ``i`` for patient ``i``.
    """
    keep = cache.rows(table["patientId"].astype(str)) >= 0
    if not keep.all():
        warnings.warn(f"{int((~keep).sum())} patient(s) have no cached image (their file "
                      "failed to decode; see cache.failed) and are left out", stacklevel=2)
    kept = table.loc[keep].reset_index(drop=True)
    return kept, cache.images_for(kept["patientId"].astype(str))


def run(cfg: Any, *, root: str | os.PathLike | None = None, epochs: int | None = None,
        run_dir: str | os.PathLike | None = None, progress: bool = True,
        verbose: int | str = 2) -> dict[str, Any]:
    """The whole pneumonia job (``medimg train rsna``): what notebook 03 does, without
    the figures.

    Parameters
    ----------
    cfg : medimg.config.Config
        ``load_config("rsna", profile)``.
    root : path, optional
        Data root; default :func:`medimg.synthetic.ensure_data` (the real data set when
        configured, else synthetic look-alike data).
    epochs : int, optional
        Overrides ``cfg.train.epochs``.
    run_dir : path, optional
        Overrides ``cfg.train.run_dir/<profile>``.
    progress : bool
        Progress bars for the headers and the cache.
    verbose :
        Keras ``fit`` verbosity.

    Returns
    -------
    dict
        :func:`medimg.tasks.classification.run`'s result plus ``cache_counts`` and
        ``feature_defaults`` (the documented defaults applied, counted); ``figures`` also
        holds ``test_auc_ap`` / ``test_auc_pa`` (AUC within each view).
    """
    from ..synthetic import ensure_data

    root = Path(root) if root is not None else ensure_data(cfg)
    table = load_table(root, n_jobs=cfg.n_jobs, progress=progress)
    table = classification.split(table, group="patientId", target="Target",
                                 validation_fraction=cfg.split.validation_fraction,
                                 test_fraction=cfg.split.test_fraction, seed=int(cfg.seed))
    cache = cache_images(cfg, table, root, progress=progress)
    kept, images = with_images(table, cache)
    result = classification.run(cfg, kept, images, feature_columns=FEATURE_COLUMNS,
                                target="Target", group="patientId", by="view_position",
                                run_dir=run_dir, epochs=epochs, verbose=verbose)
    result["cache_counts"] = cache.counts
    result["feature_defaults"] = table.attrs.get("defaults", {})
    return result
