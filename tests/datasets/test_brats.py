"""BraTS discovery, loading and preprocessing (issue 4): find_subjects on the BraTS 2020
layout (nonstandard and ambiguous names), load_subject checks, preprocess into the HDF5
cache (contents, attributes, label 4 -> 3, empty slices dropped, resumable, atomic,
manifest, bad subjects recorded while the batch goes on), uncrop, and
``medimg prepare brats``."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medimg.datasets import brats
from medimg.errors import DecodeError, InvalidImageError, LayoutError
from medimg.io import Volume, read_nifti, write_nifti

SHAPE = (32, 32, 24)
TRAIN = "MICCAI_BraTS2020_TrainingData"
VALID = "MICCAI_BraTS2020_ValidationData"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from medimg.synthetic.brats import make_brats

    root = tmp_path_factory.mktemp("brats_source")
    make_brats(root, 3, seed=11, shape=SHAPE, n_validation=1, n_jobs=1, progress=False)
    return root


@pytest.fixture
def root(source, tmp_path):
    """A private copy of the synthetic data set (tests may damage it)."""
    return Path(shutil.copytree(source, tmp_path / "raw"))


def _file(root, index, role, split="Training"):
    name = f"BraTS20_{split}_{index:03d}"
    folder = Path(root) / f"MICCAI_BraTS2020_{split}Data" / name
    return folder / f"{name}_{role}.nii.gz"


def _rewrite(path, array, affine=None):
    """Replace a file's voxels (and optionally its affine), on disk order."""
    img = nib.load(str(path))
    nib.save(nib.Nifti1Image(array, img.affine if affine is None else affine), str(path))


# --------------------------------------------------------------------------- discovery

def test_find_subjects_training_and_validation(source):
    table = brats.find_subjects(source)
    assert list(table.columns) == ["subject", "split", "flair", "t1", "t1ce", "t2", "seg",
                                   "grade", "note", "problem"]
    assert list(table.subject) == [f"BraTS20_Training_00{i}" for i in (1, 2, 3)] + [
        "BraTS20_Validation_001"]
    assert list(table.split) == ["training"] * 3 + ["validation"]
    train = table[table.split == "training"]
    for row in train.itertuples():
        for role in ("flair", "t1", "t1ce", "t2", "seg"):
            assert getattr(row, role) == str(_file(source, int(row.subject[-3:]), role))
    assert table.loc[3, "seg"] is None and table.loc[3, "flair"].endswith("_flair.nii.gz")
    assert table.problem.isna().all() and table.note.isna().all()
    assert set(train.grade) <= {"HGG", "LGG"}
    # root may also be the training folder itself
    inner = brats.find_subjects(source / TRAIN)
    assert list(inner.subject) == list(train.subject)


def test_find_subjects_nii_and_nonstandard_names(root):
    # .nii next to .nii.gz
    t1 = _file(root, 1, "t1")
    nib.save(nib.load(str(t1)), str(t1.with_name(t1.name.replace(".nii.gz", ".nii"))))
    t1.unlink()
    # a known alias and BraTS 2020's own oddity (subject 355's seg "W39_1998.09.19_Segm.nii")
    t1ce = _file(root, 2, "t1ce")
    t1ce.rename(t1ce.with_name("BraTS20_Training_002_T1Gd.nii.gz"))
    seg = _file(root, 3, "seg")
    seg.rename(seg.with_name("W39_1998.09.19_Segm.nii.gz"))
    flair = _file(root, 3, "flair")
    flair.rename(flair.with_name("scan_x.nii.gz"))  # the only unmatched file
    table = brats.find_subjects(root).set_index("subject")
    assert table.loc["BraTS20_Training_001", "t1"].endswith("BraTS20_Training_001_t1.nii")
    assert table.loc["BraTS20_Training_002", "t1ce"].endswith("_T1Gd.nii.gz")
    assert "nonstandard" in table.loc["BraTS20_Training_002", "note"]
    assert table.loc["BraTS20_Training_003", "seg"].endswith("W39_1998.09.19_Segm.nii.gz")
    assert table.loc["BraTS20_Training_003", "flair"].endswith("scan_x.nii.gz")
    assert "scan_x.nii.gz" in table.loc["BraTS20_Training_003", "note"]
    assert table.problem.isna().all()
    image, label, _ = brats.load_subject(table.reset_index().iloc[2])
    assert image.shape == (*SHAPE, 4) and label is not None


def test_find_subjects_reports_ambiguous_and_missing_files(root):
    flair = _file(root, 1, "flair")
    shutil.copy(flair, flair.with_name("BraTS20_Training_001_FLAIR.nii"))
    seg = _file(root, 2, "seg")
    seg.rename(seg.with_name("unknown_a.nii.gz"))
    shutil.copy(_file(root, 2, "t2"), seg.with_name("unknown_b.nii.gz"))
    _file(root, 3, "t1").unlink()
    table = brats.find_subjects(root).set_index("subject")
    problem = table.loc["BraTS20_Training_001", "problem"]
    assert "2 files could be flair" in problem and "_FLAIR.nii" in problem
    problem = table.loc["BraTS20_Training_002", "problem"]
    assert "missing seg" in problem and "unknown_a.nii.gz" in problem
    assert "unknown_b.nii.gz" in problem
    assert table.loc["BraTS20_Training_003", "problem"] == "missing t1"
    with pytest.raises(LayoutError, match="BraTS20_Training_001.*flair"):
        brats.find_subjects(root, strict=True)
    with pytest.raises(LayoutError, match="flair") as info:
        brats.load_subject(table.reset_index().iloc[0])
    assert "BraTS20_Training_001" in str(info.value)


def test_find_subjects_bad_root(tmp_path):
    with pytest.raises(LayoutError, match="not found"):
        brats.find_subjects(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LayoutError):
        brats.find_subjects(tmp_path / "empty")


# --------------------------------------------------------------------------- loading

def test_load_subject_shapes_orientation_and_values(source):
    row = brats.find_subjects(source).iloc[0]
    image, label, affine = brats.load_subject(row)
    assert image.shape == (*SHAPE, 4) and image.dtype == np.float32
    assert label.shape == SHAPE and label.dtype == np.uint8
    assert set(np.unique(label).tolist()) <= {0, 1, 2, 4}
    assert nib.aff2axcodes(affine) == ("R", "A", "S")
    for c, sequence in enumerate(brats.SEQUENCES):
        np.testing.assert_array_equal(image[..., c], read_nifti(row[sequence]).array)
    # the files are stored LPS: the canonical array is the disk array flipped in x and y
    disk = np.asarray(nib.load(row["seg"]).dataobj)
    np.testing.assert_array_equal(label, disk[::-1, ::-1, :])
    _, no_label, _ = brats.load_subject(brats.find_subjects(source).iloc[3])
    assert no_label is None


def test_load_subject_shape_and_affine_mismatch_name_the_files(root):
    t2 = _file(root, 1, "t2")
    data = np.asarray(nib.load(str(t2)).dataobj)
    _rewrite(t2, data[:, :, :-1])
    seg = _file(root, 2, "seg")
    moved = nib.load(str(seg)).affine.copy()
    moved[:3, 3] += 5.0
    _rewrite(seg, np.asarray(nib.load(str(seg)).dataobj), moved)
    table = brats.find_subjects(root)
    with pytest.raises(InvalidImageError, match="shape") as info:
        brats.load_subject(table.iloc[0])
    assert t2.name in str(info.value) and "_flair.nii.gz" in str(info.value)
    with pytest.raises(InvalidImageError, match="affine") as info:
        brats.load_subject(table.iloc[1])
    assert seg.name in str(info.value) and "_flair.nii.gz" in str(info.value)


def test_load_subject_bad_values_name_the_file(root):
    seg = _file(root, 1, "seg")
    label = np.asarray(nib.load(str(seg)).dataobj).copy()
    label[0, 0, 0] = 3
    _rewrite(seg, label)
    flair = _file(root, 2, "flair")
    data = np.asarray(nib.load(str(flair)).dataobj).astype(np.float32)
    data[5, 5, 5] = np.nan
    _rewrite(flair, data)
    t1 = _file(root, 3, "t1")
    t1.write_bytes(t1.read_bytes()[:300])
    table = brats.find_subjects(root)
    with pytest.raises(InvalidImageError, match=r"label values \[3\]") as info:
        brats.load_subject(table.iloc[0])
    assert seg.name in str(info.value)
    with pytest.raises(InvalidImageError, match="NaN") as info:
        brats.load_subject(table.iloc[1])
    assert flair.name in str(info.value)
    with pytest.raises(DecodeError, match=t1.name):
        brats.load_subject(table.iloc[2])


# --------------------------------------------------------------------------- preprocess

@pytest.fixture(scope="module")
def cache(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("brats_cache")
    manifest = brats.preprocess(source, out, n_jobs=1, progress=False)
    return out, manifest


def _constant_loop(image, axis):
    return [i for i in range(image.shape[axis])
            if all(np.ptp(np.take(image[..., c], i, axis=axis)) == 0 for c in range(4))]


def test_preprocess_hdf5_contents_and_attributes(source, cache):
    out, manifest = cache
    assert list(manifest.status) == ["ok"] * 4
    assert list(manifest.columns) == ["subject", "split", "status", "seconds", "error", "path",
                                      "shape"]
    assert (manifest.seconds > 0).all() and manifest.error.isna().all()
    on_disk = pd.read_csv(out / "manifest.csv")
    assert list(on_disk["item"]) == list(manifest.subject)  # the cache rule names items
    assert list(on_disk.status) == ["ok"] * 4
    table = brats.find_subjects(source)
    for row in table.itertuples():
        path = out / f"{row.subject}.h5"
        image, label, attrs = brats.read_h5(path)
        raw, raw_label, affine = brats.load_subject(table.iloc[row.Index])
        box = np.asarray(attrs["crop_box"])
        window = tuple(slice(a, b) for a, b in box)
        assert image.dtype == np.float32 and image.shape == (*(box[:, 1] - box[:, 0]), 4)
        assert manifest.set_index("subject").loc[row.subject, "shape"] == "x".join(
            map(str, image.shape))
        np.testing.assert_allclose(attrs["affine"], affine)
        np.testing.assert_array_equal(attrs["original_shape"], SHAPE)
        np.testing.assert_allclose(attrs["cropped_affine"][:3, 3],
                                   (affine @ np.r_[box[:, 0], 1.0])[:3])
        np.testing.assert_allclose(attrs["spacing"], (1.0, 1.0, 1.0))
        assert attrs["subject"] == row.subject and attrs["n4"]
        assert attrs["split"] == row.split and attrs["source_axcodes"] == "LPS"
        assert list(attrs["sequences"]) == list(brats.SEQUENCES)
        assert attrs["layout_version"] == brats.LAYOUT_VERSION
        # the crop drops exactly the constant slices at the borders, found from the data
        for axis in range(3):
            constant = _constant_loop(raw, axis)
            kept = [i for i in range(SHAPE[axis]) if i not in constant]
            assert (box[axis, 0], box[axis, 1]) == (kept[0], kept[-1] + 1)
        assert box[:, 0].sum() + (np.array(SHAPE) - box[:, 1]).sum() > 0  # something dropped
        # N4 changed the brain but kept the background at 0
        brain = (raw[window] > 0).any(-1)
        assert np.all(image[~brain] == 0)
        assert not np.allclose(image[brain], raw[window][brain], rtol=0.01)
        if raw_label is None:
            assert label is None and not attrs["has_label"]
            continue
        assert label.dtype == np.uint8 and attrs["has_label"]
        assert set(np.unique(label).tolist()) <= {0, 1, 2, 3}
        expected = np.where(raw_label == 4, 3, raw_label)[window]
        np.testing.assert_array_equal(label, expected)
        assert (raw_label > 0).sum() == (label > 0).sum()  # no tumour voxel cropped away
        with h5py.File(path) as h5:
            for name in ("image", "label"):
                assert h5[name].compression == "gzip" and h5[name].chunks is not None
                assert h5[name].shuffle
    assert sorted(p.name for p in out.iterdir() if p.name != ".lock") == sorted(
        [*(f"{s}.h5" for s in table.subject), "manifest.csv"])  # no temporary files left


def test_preprocess_without_n4_stores_the_cropped_input(source, tmp_path):
    table = brats.find_subjects(source).iloc[:1]
    brats.preprocess(table, tmp_path, n_jobs=1, n4=False, progress=False)
    image, _, attrs = brats.read_h5(tmp_path / f"{table.subject[0]}.h5")
    raw, _, _ = brats.load_subject(table.iloc[0])
    box = attrs["crop_box"]
    np.testing.assert_array_equal(image, raw[tuple(slice(a, b) for a, b in box)])
    assert not attrs["n4"]


def test_uncrop_puts_a_prediction_back_on_the_original_grid(source, cache, tmp_path):
    out, _ = cache
    table = brats.find_subjects(source)
    _, label, attrs = brats.read_h5(out / f"{table.subject[0]}.h5")
    full = brats.uncrop(label, attrs, brats_labels=True)
    _, raw_label, affine = brats.load_subject(table.iloc[0])
    assert full.shape == SHAPE
    np.testing.assert_array_equal(full.array, raw_label)
    np.testing.assert_allclose(full.affine, affine)
    # written as NIfTI, it overlays the source segmentation voxel for voxel
    written = write_nifti(full, tmp_path / "prediction.nii.gz")
    np.testing.assert_array_equal(read_nifti(written).array, read_nifti(table.seg[0]).array)
    probabilities = np.ones((*label.shape, 2), np.float32)
    placed = brats.uncrop(probabilities, attrs, fill=-1)
    assert placed.shape == (*SHAPE, 2) and (placed.array == -1).any()
    with pytest.raises(InvalidImageError, match="cropped shape"):
        brats.uncrop(label[1:], attrs)


def _mtimes(folder):
    return {p.name: p.stat().st_mtime_ns for p in Path(folder).glob("*.h5")}


def test_preprocess_is_resumable_and_redoes_nothing(source, tmp_path):
    out = tmp_path / "cache"
    first = brats.preprocess(source, out, n_jobs=1, n4=False, progress=False)
    assert (first.status == "ok").all()
    before = _mtimes(out)
    time.sleep(0.01)
    again = brats.preprocess(source, out, n_jobs=1, n4=False, progress=False)
    assert (again.status == "cached").all()
    assert _mtimes(out) == before
    # the earlier run's seconds and shapes are kept for cached subjects, run after run
    np.testing.assert_allclose(again.seconds, first.seconds)
    assert list(again["shape"]) == list(first["shape"])
    once_more = brats.preprocess(source, out, n_jobs=1, n4=False, progress=False)
    np.testing.assert_allclose(once_more.seconds, first.seconds)
    assert list(once_more["shape"]) == list(first["shape"])
    # a lost file is redone, and only it
    victim = f"{first.subject[1]}.h5"
    (out / victim).unlink()
    third = brats.preprocess(source, out, n_jobs=1, n4=False, progress=False)
    assert list(third.status) == ["cached", "ok", "cached", "cached"]
    after = _mtimes(out)
    assert {k: v for k, v in after.items() if k != victim} == {
        k: v for k, v in before.items() if k != victim}
    forced = brats.preprocess(source, out, n_jobs=1, n4=False, overwrite=True, progress=False)
    assert (forced.status == "ok").all()


def test_preprocess_interrupted_write_leaves_no_file(source, tmp_path, monkeypatch):
    out = tmp_path / "cache"
    table = brats.find_subjects(source).iloc[:2]
    real = brats._write_h5
    calls = []

    def dies_midway(target, *args, **kwargs):
        calls.append(target)
        if len(calls) == 1:
            from medimg._fsutil import atomic_path

            with atomic_path(target) as tmp:
                tmp.write_bytes(b"half an HDF5 file")
                raise OSError("power cut")
        return real(target, *args, **kwargs)

    monkeypatch.setattr(brats, "_write_h5", dies_midway)
    manifest = brats.preprocess(table, out, n_jobs=1, n4=False, progress=False)
    assert list(manifest.status) == ["error", "ok"]
    assert "power cut" in manifest.error[0] and table.subject[0] in manifest.error[0]
    assert sorted(p.name for p in out.iterdir() if p.name != ".lock") == ["BraTS20_Training_002.h5", "manifest.csv"]
    monkeypatch.setattr(brats, "_write_h5", real)
    rerun = brats.preprocess(table, out, n_jobs=1, n4=False, progress=False)
    assert list(rerun.status) == ["ok", "cached"]
    brats.read_h5(out / "BraTS20_Training_001.h5")


def _damage(root):
    """Subject 1: label value 5; 2: NaN voxels; 3: truncated t2; 4 (new): missing t1;
    5 (new): seg of another shape; 6 (new): fine."""
    seg = _file(root, 1, "seg")
    label = np.asarray(nib.load(str(seg)).dataobj).copy()
    label[label == 2] = 5
    _rewrite(seg, label)
    flair = _file(root, 2, "flair")
    data = np.asarray(nib.load(str(flair)).dataobj).astype(np.float32)
    data[10:12, 10:12, 10] = np.nan
    _rewrite(flair, data)
    t2 = _file(root, 3, "t2")
    t2.write_bytes(t2.read_bytes()[: t2.stat().st_size // 2])
    train = Path(root) / TRAIN
    for index in (4, 5, 6):
        folder = train / f"BraTS20_Training_00{index}"
        shutil.copytree(train / "BraTS20_Training_001", folder)
        for path in folder.iterdir():
            path.rename(folder / path.name.replace("_001_", f"_00{index}_"))
    _file(root, 6, "seg").unlink()
    shutil.copy(_file(root, 2, "seg"), _file(root, 6, "seg"))  # a valid label
    _file(root, 4, "t1").unlink()
    shutil.copy(_file(root, 2, "seg"), _file(root, 4, "seg"))
    seg5 = _file(root, 5, "seg")
    _rewrite(seg5, np.zeros((SHAPE[0], SHAPE[1], SHAPE[2] - 2), np.uint8))
    return {
        "BraTS20_Training_001": ("_seg.nii.gz", "label values [5]"),
        "BraTS20_Training_002": ("_flair.nii.gz", "NaN"),
        "BraTS20_Training_003": ("_t2.nii.gz", "truncated"),
        "BraTS20_Training_004": ("BraTS20_Training_004", "missing t1"),
        "BraTS20_Training_005": ("_seg.nii.gz", "shape"),
    }


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_preprocess_records_bad_subjects_and_goes_on(root, tmp_path, n_jobs):
    expected = _damage(root)
    out = tmp_path / "cache"
    manifest = brats.preprocess(root, out, n_jobs=n_jobs, n4=False, progress=False)
    rows = manifest.set_index("subject")
    for subject, (file_part, reason) in expected.items():
        assert rows.loc[subject, "status"] == "error", subject
        error = rows.loc[subject, "error"]
        assert subject in error and file_part in error and reason in error, error
        assert not (out / f"{subject}.h5").exists()
    assert rows.loc["BraTS20_Training_006", "status"] == "ok"
    assert rows.loc["BraTS20_Validation_001", "status"] == "ok"
    on_disk = pd.read_csv(out / "manifest.csv").set_index("item")
    assert (on_disk.status == rows.status).all()
    assert on_disk.loc["BraTS20_Training_002", "error"] == rows.loc["BraTS20_Training_002",
                                                                   "error"]
    # fix one subject: the rerun does it, skips the finished ones, still reports the rest
    good = np.asarray(nib.load(str(_file(root, 6, "seg"))).dataobj)
    shutil.copy(_file(root, 6, "seg"), _file(root, 1, "seg"))
    assert good.shape == SHAPE
    finished = _mtimes(out)
    rerun = brats.preprocess(root, out, n_jobs=n_jobs, n4=False, progress=False)
    status = rerun.set_index("subject").status
    assert status["BraTS20_Training_001"] == "ok"
    assert status["BraTS20_Training_006"] == status["BraTS20_Validation_001"] == "cached"
    assert (status[[s for s in expected if s != "BraTS20_Training_001"]] == "error").all()
    now = _mtimes(out)
    assert all(now[name] == mtime for name, mtime in finished.items())


def test_preprocess_empty_root_is_a_layout_error(tmp_path):
    (tmp_path / TRAIN).mkdir()
    with pytest.raises(LayoutError):
        brats.preprocess(tmp_path, tmp_path / "out", n_jobs=1, progress=False)


# --------------------------------------------------------------------------- layouts

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


# --------------------------------------------------------------------------- notebook 02 helpers

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
