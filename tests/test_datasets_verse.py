"""medimg.datasets.verse: discovery, orientation, bad inputs, splits, slice cache, tf.data."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medimg.datasets import verse
from medimg.errors import ConfigError, InvalidImageError, LayoutError
from medimg.io import Volume
from medimg.synthetic.verse import make_verse

FOV = (100.0, 70.0, 90.0)  # wider than the spine: some slices show none


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = tmp_path_factory.mktemp("verse")
    make_verse(path, 5, seed=1, fov_mm=FOV, n_unlabelled=1)
    return path


@pytest.fixture(scope="module")
def subjects(root):
    return verse.find_subjects(root)


def _save(path, array, affine, *, codes=1):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(array, affine)
    img.set_sform(affine, code=codes)
    img.set_qform(affine, code=codes)
    nib.save(img, str(path))
    return path


def _scan(tmp_path, name="sub-x01", *, ct=None, mask=None, affine=None, mask_affine=None):
    """A one-scan VerSe 2019 tree; returns its find_subjects row."""
    rng = np.random.default_rng(0)
    affine = np.diag([1.0, 1.0, 2.0, 1.0]) if affine is None else affine
    ct = rng.integers(-1000, 1500, (6, 7, 8)).astype(np.int16) if ct is None else ct
    mask = np.zeros(ct.shape, np.uint8) if mask is None else mask
    base = tmp_path / "dataset-verse19training"
    _save(base / "rawdata" / name / f"{name}_ct.nii.gz", ct, affine)
    _save(base / "derivatives" / name / f"{name}_seg-vert_msk.nii.gz", mask,
          affine if mask_affine is None else mask_affine)
    return verse.find_subjects(tmp_path).iloc[0]


# --- discovery -------------------------------------------------------------------------


def test_find_subjects_both_releases(subjects):
    assert len(subjects) == 6
    assert set(subjects.release) == {"2019", "2020"}
    assert set(subjects.split) == {"training", "validation", "test"}
    row = subjects.set_index("scan").loc["sub-gl001_dir-ax"]
    assert row.subject == "sub-gl001" and row.direction == "ax" and row.release == "2020"
    assert row.mask_path.endswith(
        "dataset-01training/derivatives/sub-gl001/sub-gl001_dir-ax_seg-vert_msk.nii.gz")
    assert row.centroids_path.endswith("sub-gl001_dir-ax_seg-subreg_ctd.json")
    assert "sag" in set(subjects.direction)
    old = subjects.set_index("scan").loc["sub-verse000"]
    assert old.release == "2019" and old.split == "training" and old.direction is None
    # the CT without mask is listed, without mask
    unlabelled = subjects[~subjects.has_mask]
    assert len(unlabelled) == 1 and unlabelled.mask_path.iloc[0] is None
    assert unlabelled.centroids_path.iloc[0] is None
    assert verse.scan_table(subjects).n_vertebrae.tolist().count(0) == 1


def test_find_subjects_real_layout_names(tmp_path):
    affine = np.eye(4)
    data = np.zeros((2, 2, 2), np.int16)
    raw = tmp_path / "dataset-02validation" / "rawdata" / "sub-gl090"
    der = tmp_path / "dataset-02validation" / "derivatives" / "sub-gl090"
    _save(raw / "sub-gl090_dir-sag_ct.nii.gz", data, affine)
    _save(raw / "sub-gl090_dir-ax_ct.nii.gz", data, affine)
    _save(der / "sub-gl090_dir-ax_seg-vert_msk.nii.gz", data.astype(np.uint8), affine)
    (der / "sub-gl090_dir-ax_seg-subreg_ctd.json").write_text('[{"direction": ["P","I","R"]}]')
    df = verse.find_subjects(tmp_path)
    assert list(df.scan) == ["sub-gl090_dir-ax", "sub-gl090_dir-sag"]
    assert list(df.has_mask) == [True, False]
    assert list(df.split) == ["validation", "validation"]
    assert list(df.subject) == ["sub-gl090", "sub-gl090"]


def test_find_subjects_errors(tmp_path):
    with pytest.raises(LayoutError, match="not a directory"):
        verse.find_subjects(tmp_path / "missing")
    with pytest.raises(LayoutError, match="no CT scans"):
        verse.find_subjects(tmp_path)
    _save(tmp_path / "a" / "rawdata" / "sub-1" / "sub-1_ct.nii.gz", np.zeros((2, 2, 2)), np.eye(4))
    _save(tmp_path / "b" / "rawdata" / "sub-1" / "sub-1_ct.nii.gz", np.zeros((2, 2, 2)), np.eye(4))
    with pytest.raises(LayoutError, match="found twice"):
        verse.find_subjects(tmp_path)


def test_read_centroids(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps([{"direction": ["P", "I", "R"]},
                                {"label": 20, "X": 1.5, "Y": 2, "Z": 3},
                                {"label": 28, "X": "NaN", "Y": 2, "Z": 3}]))
    df = verse.read_centroids(path)
    assert df.attrs["direction"] == ("P", "I", "R")
    assert list(df.label) == [20] and list(df.name) == ["L1"] and df.X.iloc[0] == 1.5
    path.write_text("{not json")
    with pytest.raises(LayoutError, match=r"c\.json"):
        verse.read_centroids(path)


def test_vertebra_names():
    assert verse.VERTEBRA_NAMES[1] == "C1" and verse.VERTEBRA_NAMES[8] == "T1"
    assert verse.VERTEBRA_NAMES[19] == "T12" and verse.VERTEBRA_NAMES[20] == "L1"
    assert verse.VERTEBRA_NAMES[25] == "L6" and verse.VERTEBRA_NAMES[28] == "T13"


# --- orientation -----------------------------------------------------------------------


def test_reorient_any_orientation_gives_the_same_slices(tmp_path, rng):
    """One RAS volume stored in four orientations loads identically for slicing."""
    ras = rng.normal(size=(5, 6, 7)).astype(np.float32)
    affine = np.diag([1.5, 1.0, 2.0, 1.0])
    affine[:3, 3] = [10, -20, 30]
    loaded = []
    for codes in ("RAS", "LPS", "PIR", "ASL"):
        ornt = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"),
                                               nib.orientations.axcodes2ornt(codes))
        array = nib.orientations.apply_orientation(ras, ornt)
        disk_affine = affine @ nib.orientations.inv_ornt_aff(ornt, ras.shape)
        assert "".join(nib.aff2axcodes(disk_affine)) == codes
        path = _save(tmp_path / codes / "sub-a_ct.nii.gz", array, disk_affine)
        ct, mask = verse.load_scan(str(path))
        assert mask is None
        assert ct.axcodes == ("R", "I", "A")
        loaded.append(ct)
    for ct in loaded[1:]:
        np.testing.assert_allclose(ct.array, loaded[0].array)
        np.testing.assert_allclose(ct.affine, loaded[0].affine)
    # sagittal slice i is the RAS plane x = i, rows superior->inferior, cols P->A
    np.testing.assert_allclose(loaded[0].array[2], ras[2].T[::-1])
    # and back onto the file's own grid
    back = verse._to_source(loaded[2].array, loaded[2].meta)
    on_disk = np.asarray(nib.load(tmp_path / "PIR" / "sub-a_ct.nii.gz").dataobj)
    np.testing.assert_allclose(back, on_disk)
    np.testing.assert_allclose(loaded[2].meta["source_affine"],
                               nib.load(tmp_path / "PIR" / "sub-a_ct.nii.gz").affine)


def test_to_source_round_trip(rng):
    vol = Volume(rng.normal(size=(3, 4, 5)), np.diag([-1.0, -2.0, 3.0, 1.0]))  # LPS
    out = verse.reorient(vol, "PIR")
    assert out.axcodes == ("P", "I", "R")
    np.testing.assert_array_equal(verse._to_source(out.array, out.meta), vol.array)
    # world position of a voxel is preserved
    ijk = np.array([1, 2, 3, 1.0])
    idx = np.round(np.linalg.inv(out.affine) @ (vol.affine @ ijk)).astype(int)[:3]
    assert out.array[tuple(idx)] == vol.array[1, 2, 3]


def test_reorient_refuses_bad_orientations(rng):
    vol = Volume(np.zeros((3, 3, 3)), np.eye(4), {"path": "sub-x_ct.nii.gz"})
    with pytest.raises(ConfigError, match="RRS"):
        verse.reorient(vol, "RRS")
    theta = np.radians(40)
    rot = np.eye(4)
    rot[:2, :2] = [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]
    with pytest.raises(InvalidImageError, match="sub-gl007.*40 degrees oblique"):
        verse.reorient(Volume(np.zeros((3, 3, 3)), rot), "RAS", max_oblique_deg=30,
                       name="sub-gl007")
    assert verse.reorient(Volume(np.zeros((3, 3, 3)), rot), "RAS", max_oblique_deg=45).shape


# --- bad inputs: each error names the scan ----------------------------------------------


def test_mask_shape_mismatch(tmp_path):
    ct = np.zeros((6, 7, 8), np.int16)
    _save(tmp_path / "r" / "rawdata" / "sub-bad1" / "sub-bad1_ct.nii.gz", ct, np.eye(4))
    _save(tmp_path / "r" / "derivatives" / "sub-bad1" / "sub-bad1_seg-vert_msk.nii.gz",
          np.zeros((6, 7, 9), np.uint8), np.eye(4))
    row = verse.find_subjects(tmp_path).iloc[0]
    with pytest.raises(InvalidImageError, match=r"sub-bad1.*mask shape \(6, 7, 9\) differs"):
        verse.load_scan(row)


def test_mask_affine_mismatch(tmp_path):
    shifted = np.diag([1.0, 1.0, 2.0, 1.0])
    shifted[0, 3] = 5.0
    row = _scan(tmp_path, "sub-bad2", mask_affine=shifted)
    with pytest.raises(InvalidImageError, match="sub-bad2.*affine differs"):
        verse.load_scan(row)


def test_mask_labels_outside_verse(tmp_path):
    mask = np.zeros((6, 7, 8), np.uint8)
    mask[1, 1, 1] = 20
    mask[2, 2, 2] = 41  # a subregion code, not a vertebra
    row = _scan(tmp_path, "sub-bad3", mask=mask)
    with pytest.raises(InvalidImageError, match=r"sub-bad3.*labels \[41\] are outside"):
        verse.load_scan(row)


def test_orientation_unknown(tmp_path):
    path = _save(tmp_path / "sub-bad4_ct.nii.gz", np.zeros((3, 3, 3), np.int16), np.eye(4),
                 codes=0)
    with pytest.raises(InvalidImageError, match="sub-bad4.*cannot be brought to RIA"):
        verse.load_scan(str(path))


def test_oblique_scan(tmp_path):
    theta = np.radians(45)
    affine = np.eye(4)
    affine[1:3, 1:3] = [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]
    row = _scan(tmp_path, "sub-bad5", affine=affine)
    with pytest.raises(InvalidImageError, match="sub-bad5.*oblique"):
        verse.load_scan(row)


def test_cache_names_failed_scans(tmp_path):
    mask = np.zeros((6, 7, 8), np.uint8)
    mask[0, 0, 0] = 99
    row = _scan(tmp_path / "data", "sub-bad6", mask=mask)
    with pytest.raises(InvalidImageError, match="1 of 1 scans.*sub-bad6.*99"):
        verse.build_slice_cache(pd.DataFrame([row]), tmp_path / "cache", n_jobs=1,
                                progress=False)
    with pytest.warns(UserWarning, match="sub-bad6"):
        index = verse.build_slice_cache(pd.DataFrame([row]), tmp_path / "cache", n_jobs=1,
                                        progress=False, on_error="skip")
    assert len(index) == 0


# --- splits ----------------------------------------------------------------------------


def test_split_uses_release_folders(subjects):
    folds = verse.split_subjects(subjects)
    mapping = {"training": "train", "validation": "validation", "test": "test"}
    labelled = folds[folds.has_mask]
    assert (labelled.fold == labelled.split.map(mapping)).all()
    assert (folds[~folds.has_mask].fold == "unlabelled").all()


def test_split_random_is_by_subject():
    rows = [{"scan": f"sub-{s}_dir-{d}", "subject": f"sub-{s}", "split": None, "has_mask": True}
            for s in range(10) for d in ("ax", "sag")]
    folds = verse.split_subjects(pd.DataFrame(rows), validation_fraction=0.2,
                                 test_fraction=0.2, seed=3)
    assert folds.groupby("subject").fold.nunique().max() == 1
    counts = folds.drop_duplicates("subject").fold.value_counts()
    assert counts["train"] == 6 and counts["validation"] == 2 and counts["test"] == 2
    again = verse.split_subjects(pd.DataFrame(rows), seed=3)
    assert list(again.fold) == list(folds.fold)


# --- slice cache -------------------------------------------------------------------------


def test_slice_cache_contents_and_resume(subjects, tmp_path):
    labelled = subjects[subjects.has_mask].head(2)
    index = verse.build_slice_cache(labelled, tmp_path, spacing_mm=2.0, n_jobs=1,
                                    progress=False)
    assert len(index) == 2
    row = index.iloc[0]
    images, labels = np.load(row.image_path), np.load(row.label_path)
    assert images.dtype == np.int16 and labels.dtype == np.uint8
    assert images.shape == labels.shape == (row.n_slices, row.height, row.width)
    # slices follow the scan reoriented for sagittal slicing, resampled to 2 mm
    ct, mask = verse.load_scan(labelled.iloc[0])
    assert row.n_slices == ct.shape[0]
    assert row.height == round(ct.shape[1] * ct.spacing[1] / 2.0)
    assert set(np.unique(labels)) <= set(np.unique(mask.array))
    assert row.n_foreground_slices == int(np.count_nonzero(mask.array.any(axis=(1, 2))))
    # resume: nothing is rewritten on a second call
    mtimes = [os.stat(p).st_mtime_ns for p in index.image_path]
    again = verse.build_slice_cache(labelled, tmp_path, spacing_mm=2.0, n_jobs=1,
                                    progress=False)
    assert [os.stat(p).st_mtime_ns for p in again.image_path] == mtimes
    assert not list(tmp_path.rglob("*.tmp*"))
    # a different spacing is a different cache
    other = verse.build_slice_cache(labelled.head(1), tmp_path, spacing_mm=3.0, n_jobs=1,
                                    progress=False)
    assert other.iloc[0].height < row.height


@pytest.mark.parametrize("n", [1, 129, 300])
def test_resize_stack_matches_slice_by_slice(n, rng):
    import cv2

    stack = rng.normal(size=(n, 13, 9)).astype(np.float32)
    out = verse._resize_stack(stack, (20, 7), nearest=False)
    assert out.shape == (n, 20, 7)
    for i in (0, n // 2, n - 1):
        np.testing.assert_allclose(out[i], cv2.resize(stack[i], (7, 20)), atol=1e-5)
    labels = rng.integers(0, 29, (n, 13, 9)).astype(np.uint8)
    out = verse._resize_stack(labels, (26, 18), nearest=True)
    assert set(np.unique(out)) <= set(np.unique(labels))


def test_crop_pads_with_air():
    image = np.arange(12, dtype=np.int16).reshape(3, 4)
    label = np.ones((3, 4), np.uint8)
    out_i, out_l = verse._crop(image, label, -1, 2, (4, 3))
    assert out_i.shape == (4, 3)
    np.testing.assert_array_equal(out_i[1:, :2], image[:, 2:])
    assert (out_i[0] == -1024).all() and (out_i[:, 2] == -1024).all()
    assert out_l.sum() == 6
    assert verse._start(10.0, 4, 20) == 8 and verse._start(1.0, 4, 20) == 0
    assert verse._start(19.0, 4, 20) == 16 and verse._start(5.0, 6, 4) == -1


# --- tf.data ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("verse-cache")


def test_slice_dataset_binary(subjects, cache):
    train = subjects[subjects.split == "training"]
    ds = verse.slice_dataset(train, cache, spacing_mm=2.0, slice_shape=(32, 24), batch_size=4,
                             training=True, background_fraction=0.5, seed=0, n_jobs=1,
                             progress=False)
    index = verse.build_slice_cache(train, cache, spacing_mm=2.0, n_jobs=1, progress=False)
    n_fg = int(index.n_foreground_slices.sum())
    n_bg = int(index.n_slices.sum()) - n_fg
    n_items = n_fg + min(n_bg, round(0.5 * n_fg))
    assert n_bg > 0
    assert len(ds) == -(-n_items // 4)
    seen = 0
    for image, target in ds:
        assert image.shape[1:] == (32, 24, 1) and target.shape[1:] == (32, 24, 1)
        assert image.dtype.name == "float32" and target.dtype.name == "float32"
        x = image.numpy()
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert set(np.unique(target.numpy())) <= {0.0, 1.0}
        seen += image.shape[0]
    assert seen == n_items


def test_slice_dataset_validation_is_deterministic_and_windowed(subjects, cache):
    val = subjects[subjects.split == "validation"]
    kwargs = dict(spacing_mm=2.0, slice_shape=(32, 24), batch_size=8, training=False,
                  background_fraction=0.0, n_jobs=1, progress=False)
    ds = verse.slice_dataset(val, cache, **kwargs)
    first = [(x.numpy(), y.numpy()) for x, y in ds]
    second = [(x.numpy(), y.numpy()) for x, y in ds]
    for (a, b), (c, d) in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    # every slice shows spine (no background slices) and is the bone window of the HU
    assert all(y.reshape(len(y), -1).max(axis=1).min() == 1.0 for _, y in first)
    index = verse.build_slice_cache(val, cache, spacing_mm=2.0, n_jobs=1, progress=False)
    entry = index.iloc[0].entry
    i = next(k for k, n in enumerate(entry["foreground_pixels"]) if n)
    hu = np.load(index.iloc[0].image_path)[i]
    c = entry["foreground_centres"][i]
    top = verse._start(c[0], 32, entry["height"])
    left = verse._start(c[1], 24, entry["width"])
    crop, _ = verse._crop(hu, hu.astype(np.uint8), top, left, (32, 24))
    expected = np.clip((crop.astype(np.float32) - (400 - 900)) / 1800, 0, 1)
    np.testing.assert_allclose(first[0][0][0, ..., 0], expected, atol=1e-6)


def test_slice_dataset_vertebrae_targets(subjects, cache):
    val = subjects[subjects.split == "validation"]
    ds = verse.slice_dataset(val, cache, spacing_mm=2.0, slice_shape=(32, 24), batch_size=8,
                             target="vertebrae", training=False, n_jobs=1, progress=False)
    _, target = next(iter(ds))
    y = target.numpy()
    assert y.shape[-1] == verse.N_VERTEBRA_CLASSES
    np.testing.assert_allclose(y.sum(axis=-1), 1.0)
    present = set(np.nonzero(y.reshape(-1, y.shape[-1]).sum(axis=0))[0].tolist()) - {0}
    assert present and present <= set(range(1, 29))


def test_slice_dataset_settings_errors(subjects, cache):
    with pytest.raises(ConfigError, match="plane"):
        verse.slice_dataset(subjects, cache, plane="oblique")
    with pytest.raises(ConfigError, match="target"):
        verse.slice_dataset(subjects, cache, target="ribs")
    with pytest.raises(LayoutError, match="no scan with a vertebra mask"):
        verse.slice_dataset(subjects[~subjects.has_mask], cache)
