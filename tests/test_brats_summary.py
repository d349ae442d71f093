"""Notebook 02's helpers in medimg.datasets.brats: the NIfTI header table, label volumes
in mL and the per-subject summary."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest

from medimg.datasets import brats
from medimg.errors import DecodeError, InvalidImageError
from medimg.io import Volume, write_nifti

NIBABEL_DATA = os.path.join(os.path.dirname(nib.__file__), "tests", "data")


# --------------------------------------------------------------------------- nifti_header

def test_nifti_header_of_a_real_file_matches_nibabel():
    path = os.path.join(NIBABEL_DATA, "example4d.nii.gz")
    table = brats.nifti_header(path)
    value = table["value"]
    assert value["dim"] == "4: 128 x 96 x 24 x 2"
    assert value["datatype"] == "int16"
    assert value["pixdim"].split(", ")[1:4] == ["2", "2", "2.2"]
    assert value["xyzt_units"] == "mm, sec"
    assert value["axcodes"] == "".join(nib.aff2axcodes(nib.load(path).affine)) == "LAS"
    assert value["qform_code"] == "1" and value["sform_code"] == "1"
    assert value["scl_slope / scl_inter"] == "none"
    assert "FSL" in value["descrip"]
    assert set(table.columns) == {"value", "meaning"}


def test_nifti_header_shows_the_affine_rows(tmp_path):
    affine = np.array([[-1.0, 0, 0, 10], [0, -1, 0, 20], [0, 0, 2.5, -5], [0, 0, 0, 1]])
    path = write_nifti(Volume(np.zeros((3, 4, 5), np.int16), affine), tmp_path / "a.nii")
    value = brats.nifti_header(path)["value"]
    assert value["affine"] == "-1 0 0 10; 0 -1 0 20; 0 0 2.5 -5"
    assert value["axcodes"] == "LPS"
    assert value["pixdim"].split(", ")[1:4] == ["1", "1", "2.5"]


def test_nifti_header_errors_name_the_file(tmp_path):
    with pytest.raises(DecodeError, match="missing.nii"):
        brats.nifti_header(tmp_path / "missing.nii")
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a nifti file at all")
    with pytest.raises(DecodeError, match="bad.nii.gz"):
        brats.nifti_header(bad)


# --------------------------------------------------------------------------- label_volumes

def test_label_volumes_counts_labels_and_regions_in_ml():
    label = np.zeros((10, 10, 10), np.uint8)
    label[0, :5, :4] = 1      # 20 voxels
    label[1, :, :3] = 2       # 30 voxels
    label[2, :2, :3] = 4      # 6 voxels
    table = brats.label_volumes(label, (1.0, 2.0, 0.5))   # 1 mm^3 per voxel
    assert table.loc[["0", "1", "2", "4"], "voxels"].tolist() == [944, 20, 30, 6]
    assert table.loc[["WT", "TC", "ET"], "voxels"].tolist() == [56, 26, 6]
    assert table.loc["WT", "volume_ml"] == pytest.approx(0.056)
    doubled = brats.label_volumes(label, (2.0, 2.0, 0.5))
    assert doubled.loc["TC", "volume_ml"] == pytest.approx(2 * 0.026)
    assert table.loc["2", "name"] == "oedema"


def test_label_volumes_without_tumour_is_zero():
    table = brats.label_volumes(np.zeros((4, 4, 4), np.int16))
    assert table.loc[["WT", "TC", "ET"], "voxels"].tolist() == [0, 0, 0]
    assert table.loc["0", "volume_ml"] == pytest.approx(0.064)


@pytest.mark.parametrize("value", [3, 5, -1])
def test_label_volumes_rejects_other_values(value):
    label = np.zeros((4, 4, 4), np.int16)
    label[0, 0, 0] = value
    with pytest.raises(InvalidImageError, match=str(value)):
        brats.label_volumes(label)


def test_label_volumes_rejects_bad_shapes_and_spacing():
    with pytest.raises(InvalidImageError, match="3-D"):
        brats.label_volumes(np.zeros((4, 4), np.uint8))
    with pytest.raises(InvalidImageError, match="spacing"):
        brats.label_volumes(np.zeros((4, 4, 4), np.uint8), (1.0, 0.0, 1.0))


# --------------------------------------------------------------------------- summarize_subjects

def _write_subject(root, name, *, shape=(12, 10, 8), spacing=(1.0, 1.0, 2.0), bad=False):
    """A subject with a brain box [2:9, 3:8, 1:7] and a known tumour, stored LPS."""
    folder = root / "MICCAI_BraTS2020_TrainingData" / name
    folder.mkdir(parents=True)
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    for index, sequence in enumerate(brats.SEQUENCES):
        array = np.zeros(shape, np.int16)
        array[2:9, 3:8, 1:7] = 100 + 10 * index
        array[4, 4, 4] = 300  # a little structure inside the brain
        if bad and sequence == "t2":
            array = array[:, :, :-1]
        write_nifti(Volume(array, affine), folder / f"{name}_{sequence}.nii.gz")
    label = np.zeros(shape, np.uint8)
    label[4:6, 4:6, 2:4] = 2   # 8 voxels
    label[4, 4, 2] = 4         # 1 voxel (replaces one oedema voxel)
    write_nifti(Volume(label, affine), folder / f"{name}_seg.nii.gz")


def test_summarize_subjects_reports_each_subject_and_goes_on_after_errors(tmp_path):
    _write_subject(tmp_path, "BraTS20_Training_001")
    _write_subject(tmp_path, "BraTS20_Training_002", bad=True)
    subjects = brats.find_subjects(tmp_path)
    summary = brats.summarize_subjects(subjects, n_jobs=1, progress=False)
    assert summary.subject.tolist() == ["BraTS20_Training_001", "BraTS20_Training_002"]
    good = summary.iloc[0]
    assert good.error is None
    assert good["shape"] == "12x10x8" and good.axcodes == "RAS"
    assert (good.spacing_x_mm, good.spacing_y_mm, good.spacing_z_mm) == (1.0, 1.0, 2.0)
    assert (good.box_x, good.box_y, good.box_z) == (7, 5, 6)
    assert (good.constant_x, good.constant_y, good.constant_z) == (12 - 7, 10 - 5, 8 - 6)
    assert (good.slices_x, good.slices_y, good.slices_z) == (12, 10, 8)
    assert good.brain_ml == pytest.approx(7 * 5 * 6 * 2 / 1000)
    assert good.wt_ml == pytest.approx(8 * 2 / 1000)
    assert good.et_ml == pytest.approx(2 / 1000)
    assert good.tc_ml == pytest.approx(2 / 1000)
    assert good.label2_ml == pytest.approx(7 * 2 / 1000)
    failed = summary.iloc[1]
    assert "InvalidImageError" in failed.error and "_t2" in failed.error
    assert np.isnan(failed.wt_ml)


def test_summarize_subjects_in_parallel_matches_serial(tmp_path):
    for index in (1, 2):
        _write_subject(tmp_path, f"BraTS20_Training_00{index}")
    subjects = brats.find_subjects(tmp_path)
    serial = brats.summarize_subjects(subjects, n_jobs=1, progress=False)
    parallel = brats.summarize_subjects(subjects, n_jobs=2, progress=False)
    assert serial.equals(parallel)
