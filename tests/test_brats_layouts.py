"""find_subjects on the layouts the BraTS 2020 data set really comes in."""

from __future__ import annotations

import numpy as np
import pytest

from medimg.datasets import brats
from medimg.errors import LayoutError
from medimg.io import Volume, write_nifti


def write_subject(folder, subject, roles=("flair", "t1", "t1ce", "t2", "seg")):
    folder.mkdir(parents=True)
    for role in roles:
        write_nifti(Volume(np.zeros((4, 4, 3), np.int16), np.eye(4)),
                    folder / f"{subject}_{role}.nii.gz")


@pytest.mark.parametrize("nesting", [
    "MICCAI_BraTS2020_TrainingData",                          # challenge download
    "BraTS2020_TrainingData/MICCAI_BraTS2020_TrainingData",   # Kaggle mirror
])
def test_training_and_validation_found_at_either_depth(tmp_path, nesting):
    train = tmp_path / nesting
    valid = tmp_path / nesting.replace("Training", "Validation")
    write_subject(train / "BraTS20_Training_001", "BraTS20_Training_001")
    write_subject(train / "BraTS20_Training_002", "BraTS20_Training_002")
    write_subject(valid / "BraTS20_Validation_001", "BraTS20_Validation_001",
                  roles=("flair", "t1", "t1ce", "t2"))
    table = brats.find_subjects(tmp_path)
    assert list(table.subject) == ["BraTS20_Training_001", "BraTS20_Training_002",
                                   "BraTS20_Validation_001"]
    assert list(table.split) == ["training", "training", "validation"]
    assert table.seg.iloc[2] is None and table.seg.iloc[0].endswith("_seg.nii.gz")
    assert not any(table.problem)


def test_nested_folder_without_subjects_is_a_layout_error(tmp_path):
    (tmp_path / "BraTS2020_TrainingData" / "empty").mkdir(parents=True)
    with pytest.raises(LayoutError, match="no BraTS subject folders"):
        brats.find_subjects(tmp_path)
