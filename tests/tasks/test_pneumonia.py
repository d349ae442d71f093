"""tasks.pneumonia: RSNA header features (buckets, documented defaults), the table and
cache glue, the whole job (``run``) and its verb ``medimg train rsna``."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from medimg.config import load_config
from medimg.datasets import rsna
from medimg.errors import LayoutError
from medimg.tasks import pneumonia


# --------------------------------------------------------------------------- features
def test_features_buckets_and_defaults():
    table = pd.DataFrame({
        "age_years": pd.array([0, 19, 20, 59, 60, 80, 95, None, 148, -3], dtype="Int64"),
        "view_position": ["AP", "PA", "pa", "LL", None, "AP", "AP", "PA", "PA", "AP"],
        "sex": ["M", "F", "F", "O", "M", None, "F", "M", "F", "M"],
    })
    out = pneumonia.features(table)
    assert out.age_bucket.astype(object).where(out.age_bucket.notna(), None).tolist() == [
        "0-20", "0-20", "20-40", "40-60", "60-80", "80+", "80+", None, None, None]
    assert out.attrs["defaults"] == {"age_unknown": 3, "age_impossible": 2,
                                     "view_unknown": 2, "sex_unknown": 2}
    matrix = out[list(pneumonia.FEATURE_COLUMNS)].to_numpy()
    assert matrix.dtype == np.float32
    # each of the three one-hot groups sums to exactly one per row
    assert np.all(matrix[:, :6].sum(1) == 1) and np.all(matrix[:, 6:9].sum(1) == 1)
    assert np.all(matrix[:, 9:].sum(1) == 1)
    assert out.loc[2, "view_PA"] == 1  # case-insensitive
    assert out.loc[3, "view_unknown"] == 1 and out.loc[3, "sex_unknown"] == 1


def test_features_missing_column():
    with pytest.raises(LayoutError, match="age_years"):
        pneumonia.features(pd.DataFrame({"sex": ["F"], "view_position": ["AP"]}))


# --------------------------------------------------------------------------- glue
@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    from medimg.synthetic.rsna import make_rsna

    root = tmp_path_factory.mktemp("rsna")
    return make_rsna(root, 20, seed=3, image_size=128, draw_size=64, n_jobs=1,
                     progress=False)


def test_load_table_one_row_per_patient_with_features(synthetic_root):
    table = pneumonia.load_table(synthetic_root, n_jobs=1, progress=False)
    labels = rsna.patients(rsna.load_labels(synthetic_root))
    assert table.patientId.tolist() == labels.patientId.tolist()
    assert set(pneumonia.FEATURE_COLUMNS) <= set(table.columns)
    assert {"view_position", "age_years", "sex", "age_bucket"} <= set(table.columns)
    assert table.attrs["defaults"]["metadata_errors"] == 0
    # the header's view position is what the feature says
    assert (table.view_AP == (table.view_position.astype(str) == "AP")).all()


def test_cache_images_uses_the_config_and_with_images_leaves_out_failures(
        synthetic_root, tmp_path):
    cfg = load_config("rsna", "smoke", overrides={
        "n_jobs": 1, "preprocess": {"image_size": 32, "spacing_mm": 5.6,
                                    "cache_dir": str(tmp_path / "cache")}})
    table = pneumonia.load_table(synthetic_root, n_jobs=1, progress=False)
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"not a DICOM file")
    table.loc[0, "path"] = str(broken)
    cache = pneumonia.cache_images(cfg, table, synthetic_root, progress=False)
    assert cache.settings["image_shape"] == [32, 32] and cache.settings["spacing_mm"] == 5.6
    assert cache.directory.parent == tmp_path / "cache" / synthetic_root.name
    assert cache.counts["failed"] == 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept, images = pneumonia.with_images(table, cache)
    assert any("1 patient(s)" in str(w.message) for w in caught)
    assert len(kept) == len(table) - 1 == len(images)
    assert kept.patientId.tolist() == table.patientId.iloc[1:].tolist()
    np.testing.assert_array_equal(images[0], cache.images[cache.rows([kept.patientId[0]])[0]])


# --------------------------------------------------------------------------- the job
def test_train_rsna_is_a_command():
    from medimg.cli import build_parser

    args = build_parser().parse_args(["train", "rsna", "--profile", "smoke", "--epochs", "1",
                                      "--run-dir", "somewhere"])
    assert (args.dataset, args.epochs, args.run_dir) == ("rsna", 1, "somewhere")
    assert args.handler.__module__ == "medimg.cli.classification"


def test_train_rsna_bad_root_is_one_error_line(tmp_path):
    missing = tmp_path / "absent"
    proc = subprocess.run([sys.executable, "-m", "medimg.cli", "train", "rsna", "--profile",
                           "smoke", "--root", str(missing)], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("medimg:")]
    assert lines == [f"medimg: error: {missing}: RSNA data root does not exist (set "
                     "MEDIMG_RSNA_ROOT or configs/rsna.yaml data.root)"]


@pytest.mark.slow
def test_run_end_to_end(synthetic_root, tmp_path):
    """The `medimg train rsna` job on a tiny synthetic set: trains, evaluates the model and
    the baseline on the same test patients, saves the model."""
    cfg = load_config("rsna", "smoke", overrides={
        "n_jobs": 1, "preprocess": {"image_size": 32, "spacing_mm": 5.6,
                                    "cache_dir": str(tmp_path / "cache")},
        "model": {"filters": [4, 8]}, "train": {"epochs": 2, "batch_size": 8},
        "evaluate": {"n_bootstrap": 50}, "split": {"validation_fraction": 0.2,
                                                   "test_fraction": 0.3}})
    result = pneumonia.run(cfg, root=synthetic_root, run_dir=tmp_path / "run", progress=False,
                           verbose=0)
    f = result["figures"]
    assert f["epochs_run"] == 2 and f["n_test"] + f["n_validation"] + f["n_train"] == 20
    for key in ("test_auc", "baseline_auc", "validation_auc"):
        assert 0.0 <= f[key] <= 1.0 and f[f"{key}_low"] <= f[key] <= f[f"{key}_high"]
    assert f["auc_gain"] == pytest.approx(f["test_auc"] - f["baseline_auc"])
    assert 0.0 <= f["threshold"] <= 1.0
    assert result["cache_counts"]["images"] == 20
    assert (tmp_path / "run" / "model.keras").is_file()
    assert set(result["test"]["by"].group) <= {"AP", "PA"}
    scored = result["table"]
    assert scored.loc[scored.split == "train", "score"].isna().all()  # never scored
    assert scored.loc[scored.split != "train", "score"].between(0, 1).all()
