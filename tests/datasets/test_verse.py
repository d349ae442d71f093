"""medimg.datasets.verse: discovery, centroids, the label table, loading in one orientation
(medimg.spatial.reorient), header geometry, bad inputs."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medimg.datasets import verse
from medimg.errors import InvalidImageError, LayoutError
from medimg.synthetic.verse import make_verse
from tests.helpers import save_nifti

FOV = (100.0, 70.0, 90.0)  # wider than the spine: some slices show none


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = tmp_path_factory.mktemp("verse")
    make_verse(path, 5, seed=1, fov_mm=FOV, n_unlabelled=1)
    return path


@pytest.fixture(scope="module")
def subjects(root):
    return verse.find_subjects(root)


def _scan(tmp_path, name="sub-x01", *, ct=None, mask=None, affine=None, mask_affine=None):
    """A one-scan VerSe 2019 tree; returns its find_subjects row."""
    rng = np.random.default_rng(0)
    affine = np.diag([1.0, 1.0, 2.0, 1.0]) if affine is None else affine
    ct = rng.integers(-1000, 1500, (6, 7, 8)).astype(np.int16) if ct is None else ct
    mask = np.zeros(ct.shape, np.uint8) if mask is None else mask
    base = tmp_path / "dataset-verse19training"
    save_nifti(base / "rawdata" / name / f"{name}_ct.nii.gz", ct, affine)
    save_nifti(base / "derivatives" / name / f"{name}_seg-vert_msk.nii.gz", mask,
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
    save_nifti(raw / "sub-gl090_dir-sag_ct.nii.gz", data, affine)
    save_nifti(raw / "sub-gl090_dir-ax_ct.nii.gz", data, affine)
    save_nifti(der / "sub-gl090_dir-ax_seg-vert_msk.nii.gz", data.astype(np.uint8), affine)
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
    save_nifti(tmp_path / "a" / "rawdata" / "sub-1" / "sub-1_ct.nii.gz", np.zeros((2, 2, 2)), np.eye(4))
    save_nifti(tmp_path / "b" / "rawdata" / "sub-1" / "sub-1_ct.nii.gz", np.zeros((2, 2, 2)), np.eye(4))
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


def test_vertebra_names_and_anatomical_order():
    assert verse.VERTEBRA_NAMES[1] == "C1" and verse.VERTEBRA_NAMES[8] == "T1"
    assert verse.VERTEBRA_NAMES[19] == "T12" and verse.VERTEBRA_NAMES[20] == "L1"
    assert verse.VERTEBRA_NAMES[25] == "L6" and verse.VERTEBRA_NAMES[28] == "T13"
    names = [verse.VERTEBRA_NAMES[v] for v in verse.VERTEBRA_ORDER]
    # T13 (label 28) between T12 and L1, L6 (25) after L5: anatomy, not label number
    assert names[names.index("T12") + 1] == "T13" and names[names.index("T13") + 1] == "L1"
    assert names[names.index("L5") + 1] == "L6"
    assert names[0] == "C1" and names[-2:] == ["S", "Cocc"]
    assert sorted(verse.VERTEBRA_ORDER) == sorted(verse.VERTEBRA_NAMES)


def test_viz_keeps_the_same_label_table():
    from medimg import viz

    assert viz.VERTEBRA_NAMES == verse.VERTEBRA_NAMES
    assert tuple(viz.VERTEBRA_ORDER) == verse.VERTEBRA_ORDER


# --- orientation -----------------------------------------------------------------------


def test_load_scan_any_orientation_gives_the_same_slices(tmp_path, rng):
    """One RAS volume stored in four orientations loads identically for slicing, and
    medimg.spatial.reorient takes it back onto each file's own grid."""
    from medimg.spatial import reorient

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
        path = save_nifti(tmp_path / codes / "sub-a_ct.nii.gz", array, disk_affine)
        ct, mask = verse.load_scan(str(path))
        assert mask is None
        assert ct.axcodes == ("R", "I", "A")
        assert ct.meta["scan"] == "sub-a"
        np.testing.assert_allclose(ct.meta["source_affine"], disk_affine)
        assert ct.meta["source_shape"] == array.shape
        # back onto the file's own grid, voxel for voxel
        back = reorient(ct, codes)
        np.testing.assert_allclose(back.array, array)
        np.testing.assert_allclose(back.affine, disk_affine)
        loaded.append(ct)
    for ct in loaded[1:]:
        np.testing.assert_allclose(ct.array, loaded[0].array)
        np.testing.assert_allclose(ct.affine, loaded[0].affine)
    # sagittal slice i is the RAS plane x = i, rows superior->inferior, cols P->A
    np.testing.assert_allclose(loaded[0].array[2], ras[2].T[::-1])
    ras_again, _ = verse.load_scan(str(tmp_path / "PIR" / "sub-a_ct.nii.gz"), orientation="RAS")
    np.testing.assert_allclose(ras_again.array, ras)


def test_load_scan_mask_follows_the_ct(subjects):
    row = subjects[subjects.has_mask].iloc[0]
    ct, mask = verse.load_scan(row)
    assert mask.shape == ct.shape and mask.array.dtype == np.uint8
    np.testing.assert_allclose(mask.affine, ct.affine)
    disk = np.asarray(nib.load(row.mask_path).dataobj)
    assert np.count_nonzero(mask.array) == np.count_nonzero(disk)
    assert set(np.unique(mask.array)) == set(np.unique(disk))


def test_obliquity_and_scan_table(subjects):
    assert verse.obliquity_deg(np.diag([-1.0, 2.0, 3.0, 1.0])) == 0.0
    theta = np.radians(40)
    rot = np.eye(4)
    rot[:2, :2] = [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]
    assert verse.obliquity_deg(rot) == pytest.approx(40.0)
    geometry = verse.scan_table(subjects)
    assert list(geometry.scan) == list(subjects.scan)
    assert (geometry.oblique_deg == 0).all() and geometry.orientation_known.all()
    row = geometry.set_index("scan").loc["sub-gl001_dir-ax"]
    img = nib.load(subjects.set_index("scan").loc["sub-gl001_dir-ax", "ct_path"])
    assert row["shape"] == img.shape and row.axcodes == "".join(nib.aff2axcodes(img.affine))
    # the level range is read in anatomical order from the centroid file
    first, last = row.vertebrae.split("-")
    order = [verse.VERTEBRA_NAMES[v] for v in verse.VERTEBRA_ORDER]
    assert order.index(first) <= order.index(last)
    assert row.n_vertebrae == order.index(last) - order.index(first) + 1


# --- bad inputs: each error names the scan ----------------------------------------------


def test_mask_shape_mismatch(tmp_path):
    ct = np.zeros((6, 7, 8), np.int16)
    save_nifti(tmp_path / "r" / "rawdata" / "sub-bad1" / "sub-bad1_ct.nii.gz", ct, np.eye(4))
    save_nifti(tmp_path / "r" / "derivatives" / "sub-bad1" / "sub-bad1_seg-vert_msk.nii.gz",
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
    path = save_nifti(tmp_path / "sub-bad4_ct.nii.gz", np.zeros((3, 3, 3), np.int16), np.eye(4),
                 codes=0)
    with pytest.raises(InvalidImageError, match="sub-bad4.*orientation unknown"):
        verse.load_scan(str(path))


def test_oblique_scan(tmp_path):
    theta = np.radians(45)
    affine = np.eye(4)
    affine[1:3, 1:3] = [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]
    row = _scan(tmp_path, "sub-bad5", affine=affine)
    with pytest.raises(InvalidImageError, match="sub-bad5.*oblique"):
        verse.load_scan(row)
