"""BraTS discovery, loading checks and the resumable HDF5 preprocessing."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medimg.datasets import brats
from medimg.errors import DecodeError, InvalidImageError, LayoutError
from medimg.io import Volume, read_nifti, write_nifti
from medimg.synthetic.brats import make_brats

SHAPE = (32, 32, 24)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("brats")
    make_brats(root, 3, seed=0, shape=SHAPE, n_validation=1, n_jobs=1, progress=False)
    return root


def _copy(dataset: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(dataset, target)
    return target


def test_find_subjects_layout(dataset):
    table = brats.find_subjects(dataset)
    assert list(table["subject"]) == ["BraTS20_Training_001", "BraTS20_Training_002",
                                      "BraTS20_Training_003", "BraTS20_Validation_001"]
    assert list(table["split"]) == ["training"] * 3 + ["validation"]
    assert table["problem"].isna().all()
    assert table.loc[3, "seg"] is None
    assert set(table["grade"].dropna()) <= {"HGG", "LGG"}
    assert all(Path(p).name.endswith("_t1ce.nii.gz") for p in table["t1ce"])


def test_nonstandard_name_is_resolved(dataset, tmp_path):
    root = _copy(dataset, tmp_path)
    folder = root / "MICCAI_BraTS2020_TrainingData" / "BraTS20_Training_002"
    (folder / "BraTS20_Training_002_seg.nii.gz").rename(folder / "W39_1998.09.19_Segm.nii.gz")
    row = brats.find_subjects(root).set_index("subject").loc["BraTS20_Training_002"]
    assert row["seg"].endswith("W39_1998.09.19_Segm.nii.gz")
    assert "nonstandard" in row["note"]


def test_ambiguous_and_missing_files_are_reported(dataset, tmp_path):
    root = _copy(dataset, tmp_path)
    folder = root / "MICCAI_BraTS2020_TrainingData" / "BraTS20_Training_001"
    (folder / "BraTS20_Training_001_t2.nii.gz").rename(folder / "scan_a.nii.gz")
    shutil.copy(folder / "scan_a.nii.gz", folder / "scan_b.nii.gz")
    table = brats.find_subjects(root).set_index("subject")
    problem = table.loc["BraTS20_Training_001", "problem"]
    assert "missing t2" in problem and "scan_a" in problem
    with pytest.raises(LayoutError, match="BraTS20_Training_001"):
        brats.find_subjects(root, strict=True)
    with pytest.raises(LayoutError, match="missing t2"):
        brats.load_subject(table.reset_index().iloc[0])


def test_empty_root_raises(tmp_path):
    with pytest.raises(LayoutError, match="no BraTS subject"):
        brats.find_subjects(tmp_path)


def test_load_subject(dataset):
    row = brats.find_subjects(dataset).iloc[0]
    image, label, affine = brats.load_subject(row)
    assert image.shape == (*SHAPE, 4) and image.dtype == np.float32
    assert label.shape == SHAPE and label.dtype == np.uint8
    assert set(np.unique(label)) <= {0, 1, 2, 4} and label.any()
    # Files are stored LPS like BraTS; load_subject returns canonical RAS+.
    assert np.allclose(np.diag(affine)[:3], 1.0)
    flair = read_nifti(row["flair"])
    assert np.array_equal(image[..., 0], flair.array.astype(np.float32))


def _rewrite(path: str, array: np.ndarray, affine: np.ndarray | None = None) -> None:
    volume = read_nifti(path, canonical=False)
    write_nifti(Volume(array, volume.affine if affine is None else affine), path)


@pytest.mark.parametrize("defect, message", [
    ("shape", "shape"), ("affine", "affine differs"), ("label", r"label values \[3\]"),
    ("nan", "NaN"), ("truncated", "truncated"),
])
def test_bad_subjects_name_the_file(dataset, tmp_path, defect, message):
    root = _copy(dataset, tmp_path)
    row = brats.find_subjects(root).iloc[0]
    raw = read_nifti(row["t2"], canonical=False)
    if defect == "shape":
        _rewrite(row["t2"], raw.array[:-2])
    elif defect == "affine":
        _rewrite(row["t2"], raw.array, raw.affine @ np.diag([2.0, 1.0, 1.0, 1.0]))
    elif defect == "label":
        seg = read_nifti(row["seg"], canonical=False).array.copy()
        seg[0, 0, 0] = 3
        _rewrite(row["seg"], seg)
    elif defect == "nan":
        data = raw.array.astype(np.float32)
        data[1, 1, 1] = np.nan
        _rewrite(row["t2"], data)
    else:
        blob = Path(row["t2"]).read_bytes()
        Path(row["t2"]).write_bytes(blob[: len(blob) // 2])
    expected = DecodeError if defect == "truncated" else InvalidImageError
    target = row["seg"] if defect == "label" else row["t2"]
    with pytest.raises(expected, match=message) as info:
        brats.load_subject(row)
    assert Path(target).name in str(info.value)


def test_preprocess_layout_resume_and_failures(dataset, tmp_path):
    root = _copy(dataset, tmp_path)
    out = tmp_path / "h5"
    # Break one subject: its label holds an invalid value.
    bad = brats.find_subjects(root).iloc[1]
    seg = read_nifti(bad["seg"], canonical=False).array.copy()
    seg[0, 0, 0] = 7
    _rewrite(bad["seg"], seg)

    manifest = brats.preprocess(root, out, n_jobs=1, progress=False)
    status = dict(zip(manifest["subject"], manifest["status"], strict=True))
    assert status == {"BraTS20_Training_001": "ok", "BraTS20_Training_002": "error",
                      "BraTS20_Training_003": "ok", "BraTS20_Validation_001": "ok"}
    error = manifest.set_index("subject").loc["BraTS20_Training_002", "error"]
    assert "BraTS20_Training_002_seg" in error and "[7]" in error
    on_disk = pd.read_csv(out / "manifest.csv")
    assert list(on_disk["status"]) == list(manifest["status"])
    assert not list(out.glob(".*tmp*"))  # no temporary files left behind

    image, label, attrs = brats.read_h5(out / "BraTS20_Training_001.h5")
    row = brats.find_subjects(root).iloc[0]
    raw_image, raw_label, affine = brats.load_subject(row)
    box = np.asarray(attrs["crop_box"])
    assert image.shape == (*(box[:, 1] - box[:, 0]), 4) and image.dtype == np.float32
    assert label.dtype == np.uint8 and set(np.unique(label)) <= {0, 1, 2, 3}
    assert np.array_equal(attrs["original_shape"], SHAPE)
    assert np.allclose(attrs["affine"], affine)
    assert list(attrs["sequences"]) == list(brats.SEQUENCES)
    assert attrs["source_axcodes"] == "LPS"
    # Nothing but constant slices was cut, and every tumour voxel is kept.
    window = tuple(slice(a, b) for a, b in box)
    assert (raw_label[window] > 0).sum() == (raw_label > 0).sum()
    outside = raw_image.copy()
    outside[window] = 0
    assert not outside.any()
    # 4 -> 3, and uncrop restores the original label map on the original grid.
    restored = brats.uncrop(label, attrs, brats_labels=True)
    assert np.array_equal(restored.array, raw_label)
    assert np.allclose(restored.affine, affine)
    # N4 changed the intensities but kept the background at 0.
    assert not np.allclose(image, raw_image[window])
    assert np.array_equal(image > 0, raw_image[window] > 0)
    _, val_label, val_attrs = brats.read_h5(out / "BraTS20_Validation_001.h5")
    assert val_label is None and not val_attrs["has_label"]

    # Rerun after fixing the subject: only it is redone, the rest is cached.
    _rewrite(bad["seg"], np.where(seg == 7, 0, seg).astype(seg.dtype))
    mtime = (out / "BraTS20_Training_001.h5").stat().st_mtime_ns
    again = brats.preprocess(root, out, n_jobs=1, progress=False)
    status = dict(zip(again["subject"], again["status"], strict=True))
    assert status["BraTS20_Training_002"] == "ok"
    assert {status[s] for s in status if s != "BraTS20_Training_002"} == {"cached"}
    assert (out / "BraTS20_Training_001.h5").stat().st_mtime_ns == mtime


def test_preprocess_parallel_without_n4(dataset, tmp_path):
    manifest = brats.preprocess(dataset, tmp_path / "h5", n_jobs=2, n4=False, progress=False)
    assert (manifest["status"] == "ok").all()
    image, _, attrs = brats.read_h5(tmp_path / "h5" / "BraTS20_Training_003.h5")
    row = brats.find_subjects(dataset).iloc[2]
    raw, _, _ = brats.load_subject(row)
    window = tuple(slice(a, b) for a, b in np.asarray(attrs["crop_box"]))
    assert np.array_equal(image, raw[window]) and not attrs["n4"]
