"""Synthetic BraTS phantoms (issues 4, 13): the BraTS 2020 layout with name_mapping.csv,
int16 at 1 mm stored LPS like the real files, label values, tissue contrasts, a bias
field for N4, determinism by seed, and tumours that are not trivially segmented
(varying compartments, soft borders, intensities overlapping normal tissue)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from medimg.synthetic.brats import make_brats, synthesize_subject

SHAPE = (32, 32, 24)
SEQUENCES = ("flair", "t1", "t1ce", "t2")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic_brats")
    make_brats(root, 2, seed=7, shape=SHAPE, n_validation=1, n_jobs=1, progress=False)
    return root


def test_make_brats_layout_and_name_mapping(dataset):
    training = dataset / "MICCAI_BraTS2020_TrainingData"
    validation = dataset / "MICCAI_BraTS2020_ValidationData"
    subjects = sorted(p.name for p in training.iterdir() if p.is_dir())
    assert subjects == ["BraTS20_Training_001", "BraTS20_Training_002"]
    for name in subjects:
        files = sorted(p.name for p in (training / name).iterdir())
        assert files == sorted(f"{name}_{s}.nii.gz" for s in (*SEQUENCES, "seg"))
    val_files = sorted(p.name for p in (validation / "BraTS20_Validation_001").iterdir())
    assert val_files == sorted(f"BraTS20_Validation_001_{s}.nii.gz" for s in SEQUENCES)
    table = pd.read_csv(training / "name_mapping.csv")
    assert table.columns[0] == "Grade" and "BraTS_2020_subject_ID" in table.columns
    assert list(table.BraTS_2020_subject_ID) == subjects
    assert set(table.Grade) <= {"HGG", "LGG"}
    assert (validation / "name_mapping.csv").is_file()


def test_make_brats_files_are_int16_1mm_lps_with_brats_labels(dataset):
    folder = dataset / "MICCAI_BraTS2020_TrainingData" / "BraTS20_Training_001"
    for sequence in SEQUENCES:
        img = nib.load(str(folder / f"BraTS20_Training_001_{sequence}.nii.gz"))
        assert img.shape == SHAPE
        assert img.get_data_dtype() == np.int16
        assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
        np.testing.assert_allclose(img.header.get_zooms(), (1.0, 1.0, 1.0))
        data = np.asarray(img.dataobj)
        assert data.min() == 0 and data.max() > 100  # skull-stripped, real signal
    seg = np.asarray(nib.load(str(folder / "BraTS20_Training_001_seg.nii.gz")).dataobj)
    values = set(np.unique(seg).tolist())
    assert values <= {0, 1, 2, 4} and {0, 2} <= values and 3 not in values
    flair = np.asarray(nib.load(str(folder / "BraTS20_Training_001_flair.nii.gz")).dataobj)
    assert np.all(flair[seg > 0] > 0)  # the tumour lies inside the brain


def test_make_brats_is_deterministic_by_seed(dataset, tmp_path):
    make_brats(tmp_path / "a", 1, seed=7, shape=SHAPE, n_jobs=1, progress=False, compress=False)
    make_brats(tmp_path / "b", 1, seed=8, shape=SHAPE, n_jobs=1, progress=False, compress=False)
    name = "BraTS20_Training_001"
    same = nib.load(str(tmp_path / "a" / "MICCAI_BraTS2020_TrainingData" / name
                        / f"{name}_t1.nii"))
    assert not (tmp_path / "a" / "MICCAI_BraTS2020_ValidationData").exists()
    first = nib.load(str(dataset / "MICCAI_BraTS2020_TrainingData" / name / f"{name}_t1.nii.gz"))
    other = nib.load(str(tmp_path / "b" / "MICCAI_BraTS2020_TrainingData" / name
                         / f"{name}_t1.nii"))
    np.testing.assert_array_equal(np.asarray(same.dataobj), np.asarray(first.dataobj))
    assert not np.array_equal(np.asarray(other.dataobj), np.asarray(first.dataobj))
    # subjects of one data set differ from each other
    second = nib.load(str(dataset / "MICCAI_BraTS2020_TrainingData" / "BraTS20_Training_002"
                          / "BraTS20_Training_002_t1.nii.gz"))
    assert not np.array_equal(np.asarray(second.dataobj), np.asarray(first.dataobj))


def test_synthesize_subject_contrasts_and_bias_field():
    subject = synthesize_subject((96, 96, 64), seed=3)  # thin rims need some resolution
    tissue, label = subject.tissue, subject.label
    csf, grey, white = tissue == 1, tissue == 2, tissue == 3
    assert csf.any() and grey.any() and white.any() and (label > 0).any()

    def mean(sequence, where):
        return float(subject.images[sequence][where].mean())

    assert mean("t1", white) > mean("t1", grey) > mean("t1", csf)
    assert mean("flair", csf) < mean("flair", grey)
    assert mean("t2", csf) > mean("t2", grey) > mean("t2", white)
    assert mean("flair", label == 2) > mean("flair", white)  # oedema bright on FLAIR
    assert mean("t2", label == 2) > mean("t2", white)  # and on T2
    assert subject.grade in ("HGG", "LGG")
    if (label == 4).any():
        assert mean("t1ce", label == 4) > mean("t1ce", white)  # enhancing rim
    for sequence in SEQUENCES:
        assert subject.images[sequence].dtype == np.int16
        assert np.all(subject.images[sequence][tissue == 0] == 0)
        field = subject.bias_fields[sequence]
        assert field.shape == (96, 96, 64) and np.all(field > 0)
        assert 0.05 < float(np.log(field).std()) < 0.5  # something for N4 to correct
    assert subject.affine[0, 0] == 1.0 and subject.label.dtype == np.uint8
    again = synthesize_subject((96, 96, 64), seed=3)
    np.testing.assert_array_equal(again.images["t2"], subject.images["t2"])
    with pytest.raises(ValueError, match="shape"):
        synthesize_subject((4, 32, 32), seed=0)


@pytest.fixture(scope="module")
def subjects():
    return [synthesize_subject((40, 40, 32), seed=seed) for seed in range(12)]


def test_tumour_compartments_vary_between_subjects(subjects):
    """Not every low-grade tumour lacks enhancement, not every high-grade one is mostly
    enhancing; high-grade tumours push the anatomy aside (mass effect)."""
    grades = [s.grade for s in subjects]
    assert {"HGG", "LGG"} <= set(grades)
    enhancing_share = []
    for s in subjects:
        core = np.isin(s.label, (1, 4)).sum()
        assert core > 0 and (s.label == 2).any()
        enhancing_share.append((s.label == 4).sum() / core)
    hgg = [e for e, g in zip(enhancing_share, grades, strict=True) if g == "HGG"]
    lgg = [e for e, g in zip(enhancing_share, grades, strict=True) if g == "LGG"]
    assert min(hgg) < 0.2 < max(hgg)  # some with little enhancing tumour
    assert max(lgg) > 0  # some low-grade tumours enhance a little
    assert all(s.meta["mass_effect_mm"] > 0 for s in subjects if s.grade == "HGG")


def test_tumour_borders_are_soft_and_intensities_overlap_normal_tissue(subjects):
    for s in subjects:
        flair = s.images["flair"].astype(float)
        whole = s.label > 0
        white = s.tissue == 3
        near = ndimage.binary_dilation(whole, iterations=2) & ~whole & white
        far = (ndimage.binary_dilation(whole, iterations=8)
               & ~ndimage.binary_dilation(whole, iterations=5) & white)
        # just outside the label the signal is still raised (a blurred edge, not a step),
        # compared with white matter a little further out (same bias field)
        assert flair[far].mean() < flair[near].mean()
    # over the subjects, a good share of tumour voxels is no brighter on FLAIR than the
    # brightest normal tissue: intensity alone does not segment the tumour
    below = [np.mean(s.images["flair"][s.label > 0]
                     < np.percentile(s.images["flair"][(s.tissue > 0) & (s.tissue < 4)], 99))
             for s in subjects]
    assert np.mean(below) > 0.1


def test_periventricular_band_is_bright_on_flair_and_t2_and_unlabelled():
    """A FLAIR look-alike of oedema along the ventricles, outside every label (a FLAIR
    threshold takes it for tumour; a network must learn to leave it out)."""
    for seed in range(3):
        s = synthesize_subject((120, 140, 100), seed=seed)
        depth = ndimage.distance_transform_edt(s.tissue > 0)
        ventricles = (s.tissue == 1) & (depth > 8)
        distance = ndimage.distance_transform_edt(~ventricles)
        white = (s.tissue == 3) & (s.label == 0)
        band = white & (distance <= 3)
        far = white & (distance > 8)
        assert band.sum() > 1000
        for sequence in ("flair", "t2"):
            image = s.images[sequence].astype(float)
            assert np.percentile(image[band], 75) > 1.15 * np.median(image[far]), (seed,
                                                                                   sequence)
