"""medimg.synthetic.verse: VerSe-like CT phantoms in the VerSe 2019/2020 layouts."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medimg.synthetic.verse import make_verse

FOV = (70.0, 80.0, 100.0)  # small volumes: fast tests


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("verse")
    make_verse(root, 5, seed=3, fov_mm=FOV, n_unlabelled=1)
    return root


def _cts(root):
    return sorted(p for p in root.rglob("*_ct.nii.gz"))


def _mask_of(ct):
    return ct.parent.parent.parent / "derivatives" / ct.parent.name / ct.name.replace(
        "_ct.nii.gz", "_seg-vert_msk.nii.gz")


def test_layouts_of_both_releases(tree):
    names = {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()}
    assert "dataset-verse19training/rawdata/sub-verse000/sub-verse000_ct.nii.gz" in names
    assert ("dataset-verse19training/derivatives/sub-verse000/"
            "sub-verse000_seg-vert_msk.nii.gz") in names
    assert ("dataset-verse19training/derivatives/sub-verse000/"
            "sub-verse000_seg-subreg_ctd.json") in names
    assert "dataset-01training/rawdata/sub-gl001/sub-gl001_dir-ax_ct.nii.gz" in names
    assert any("_dir-sag_ct" in n for n in names)
    # 5 labelled + 1 unlabelled scan; the unlabelled one has no derivatives
    assert len(_cts(tree)) == 6
    unlabelled = [c for c in _cts(tree) if not _mask_of(c).exists()]
    assert len(unlabelled) == 1 and "test" in unlabelled[0].parts[-4]
    assert not [n for n in names if ".tmp" in n]


def test_hounsfield_tissues_and_labels(tree):
    any_air = False
    for ct_path in _cts(tree):
        ct = np.asarray(nib.load(ct_path).dataobj)
        assert ct.dtype == np.int16
        assert ct.min() >= -1024
        # fat, soft tissue and bone in every scan; air (lung, gas, outside) where in view
        for low, high in ((-160, -40), (0, 90), (250, 3000)):
            assert np.count_nonzero((ct >= low) & (ct <= high)) > 50, (ct_path.name, low)
        any_air |= np.count_nonzero(ct <= -800) > 50
        mask_path = _mask_of(ct_path)
        if not mask_path.exists():
            continue
        mask = np.asarray(nib.load(mask_path).dataobj)
        labels = set(np.unique(mask).tolist()) - {0}
        assert labels and labels <= set(range(1, 26)) | {28}
        # the labelled vertebrae are the bone: far denser than the rest on average
        spine = mask > 0
        assert np.median(ct[spine]) > np.median(ct[~spine & (ct > -200)]) + 80
    assert any_air


def test_a_hu_threshold_does_not_segment_the_spine(tree):
    """Osteoporotic cores, contrast-filled vessels, ribs and plaques overlap the vertebrae's
    HU range: no single threshold gives a good segmentation (the old box phantoms gave
    Dice 0.999 at 150 HU)."""
    from medimg.metrics import dice

    best = []
    for ct_path in _cts(tree):
        mask_path = _mask_of(ct_path)
        if not mask_path.exists():
            continue
        ct = np.asarray(nib.load(ct_path).dataobj)
        spine = np.asarray(nib.load(mask_path).dataobj) > 0
        best.append(max(float(dice(spine, ct > t)) for t in range(50, 701, 25)))
    assert np.mean(best) < 0.9, best


def test_spacings_and_orientations_differ(tree):
    axcodes, spacings = set(), set()
    for ct_path in _cts(tree):
        img = nib.load(ct_path)
        axcodes.add("".join(nib.aff2axcodes(img.affine)))
        spacings.add(tuple(np.round(img.header.get_zooms(), 2)))
        mask_path = _mask_of(ct_path)
        if mask_path.exists():
            m = nib.load(mask_path)
            assert m.shape == img.shape
            np.testing.assert_allclose(m.affine, img.affine)
    assert len(axcodes) >= 3
    assert len(spacings) >= 4


def test_centroids_in_verse_format(tree):
    ct_path = _cts(tree)[0]
    mask_img = nib.load(_mask_of(ct_path))
    mask = np.asarray(mask_img.dataobj)
    ctd_path = _mask_of(ct_path).with_name(ct_path.name.replace("_ct.nii.gz",
                                                                "_seg-subreg_ctd.json"))
    entries = json.loads(ctd_path.read_text())
    assert entries[0] == {"direction": list(nib.aff2axcodes(mask_img.affine))}
    labels = [e["label"] for e in entries[1:]]
    assert sorted(labels) == sorted(set(np.unique(mask).tolist()) - {0})
    for e in entries[1:]:
        idx = np.argwhere(mask == e["label"])
        lo, hi = idx.min(axis=0), idx.max(axis=0)
        assert np.all([lo[i] <= (e["X"], e["Y"], e["Z"])[i] <= hi[i] for i in range(3)])


def test_vertebrae_follow_anatomical_order(tree):
    from medimg.io import read_nifti

    for ct_path in _cts(tree):
        if not _mask_of(ct_path).exists():
            continue
        mask = read_nifti(_mask_of(ct_path)).array  # canonical RAS: z runs up
        labels = [v for v in np.unique(mask) if v]
        heights = {v: np.argwhere(mask == v)[:, 2].mean() for v in labels}
        order = sorted(labels, key=lambda v: -heights[v])  # top to bottom
        rank = [19.5 if v == 28 else v for v in order]  # T13 sits between T12 and L1
        assert rank == sorted(rank)


def test_seed_reproducible(tmp_path):
    make_verse(tmp_path / "a", 1, seed=7, fov_mm=FOV)
    make_verse(tmp_path / "b", 1, seed=7, fov_mm=FOV)
    make_verse(tmp_path / "c", 1, seed=8, fov_mm=FOV)
    a, b, c = (np.asarray(nib.load(_cts(tmp_path / n)[0]).dataobj) for n in "abc")
    np.testing.assert_array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="n_subjects"):
        make_verse(tmp_path, 0, seed=0)
    with pytest.raises(ValueError, match="fov_mm"):
        make_verse(tmp_path, 1, seed=0, fov_mm=(10.0, 10.0))
