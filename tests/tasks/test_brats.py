"""medimg.tasks.brats: the BraTS adapter on the generic segmentation pipeline."""

from __future__ import annotations

import os
import shutil

import nibabel as nib
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from medimg.cli import main
from medimg.config import load_config
from medimg.datasets import msd
from medimg.errors import LayoutError
from medimg.synthetic.brats import make_brats
from medimg.tasks import brats, segmentation

TRAIN = "MICCAI_BraTS2020_TrainingData"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_brats(tmp_path_factory.mktemp("brats"), 5, seed=2, shape=(48, 48, 32),
                      n_validation=1, n_jobs=1, progress=False)


def test_cases_and_description(root):
    cases = brats.find_cases(root)
    assert len(cases) == 6
    assert cases["split"].tolist().count("test") == 1  # the validation subject has no label
    described = cases.attrs["dataset"]
    assert described.regions and described.regions_class_order == (2, 1, 4)
    assert described.foreground == {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}
    row = cases.iloc[0]
    assert [p.rsplit("_", 1)[-1] for p in row["images"]] == ["flair.nii.gz", "t1.nii.gz",
                                                           "t1ce.nii.gz", "t2.nii.gz"]
    image, label = msd.load_case(row, described)
    assert image.array.shape[-1] == 4 and set(np.unique(label.array)) <= {0, 1, 2, 4}


def test_a_stray_file_never_stands_in_for_a_missing_sequence(root, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    folder = copy / TRAIN / "BraTS20_Training_002"
    shutil.copy(next(folder.glob("*_flair.nii.gz")),
                folder / "BraTS20_Training_002_flair_backup.nii.gz")
    next(folder.glob("*_t1ce.nii.gz")).unlink()
    with pytest.raises(LayoutError, match="BraTS20_Training_002: missing t1ce"):
        brats.find_cases(copy)
    with pytest.raises(LayoutError, match="missing t1ce"):
        brats.subject_images(folder)


def test_plan_regions_and_targets(root):
    cases = brats.find_cases(root)
    labelled = cases[cases.label.notna()]
    labelled.attrs.update(cases.attrs)
    prints = segmentation.fingerprint(labelled, n_jobs=1, progress=False)
    plan = segmentation.make_plan(prints, patch_shape=[16, 16, 16], max_depth=2)
    assert plan.activation == "sigmoid" and plan.outputs == ["WT", "TC", "ET"]
    assert plan.use_nonzero_mask and plan.crop_to_nonzero  # skull-stripped MRI
    table = dict(zip(plan.class_values, plan.target_table, strict=True))
    assert table[0] == [0, 0, 0] and table[2] == [1, 0, 0]
    assert table[1] == [1, 1, 0] and table[4] == [1, 1, 1]


def test_threshold_baseline_is_fitted_on_training_cases(root):
    cases = brats.find_cases(root)
    labelled = cases[cases.label.notna()]
    fitted = brats.threshold_baseline(labelled.iloc[:3])
    assert 0.0 < fitted["train_dice"] <= 1.0 and np.isfinite(fitted["z_threshold"])
    scores = brats.baseline_scores(labelled.iloc[3:], fitted["z_threshold"])
    assert scores["case"].tolist() == labelled["case"].iloc[3:].tolist()
    assert scores["dice_wt"].between(0, 1).all()
    # a threshold above every voxel predicts nothing: Dice 0 where there is tumour
    nothing = brats.baseline_scores(labelled.iloc[3:4], 1e9)
    assert nothing["predicted_voxels"].iloc[0] == 0
    assert nothing["dice_wt"].iloc[0] == (1.0 if nothing["truth_voxels"].iloc[0] == 0 else 0.0)


@pytest.mark.slow
def test_train_and_predict_brats_commands(root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MEDIMG_PROFILE", "smoke")
    cfg = load_config("brats", "smoke")
    cache_root = cfg.repo_root / cfg.preprocess.cache_dir
    out = tmp_path / "run"
    assert main(["train", "brats", "--data", str(root), "--out", str(out), "--epochs", "1"]) == 0
    printed = capsys.readouterr().out
    assert "test Dice WT" in printed and (out / "model.keras").is_file()
    subject = root / TRAIN / "BraTS20_Training_001"
    target = tmp_path / "pred.nii.gz"
    assert main(["predict", "brats", "--model", str(out / "model.keras"), "--subject",
                 str(subject), "--out", str(target)]) == 0
    written = nib.load(target)
    source = nib.load(next(subject.glob("*_flair.nii.gz")))
    assert written.shape == source.shape
    np.testing.assert_allclose(written.affine, source.affine)
    assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1, 2, 4}
    assert any(cache_root.glob("BraTS2020-*/manifest.csv"))
