"""Synthetic BraTS phantoms: layout, contrasts, labels, reproducibility."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medimg.io import read_nifti
from medimg.synthetic.brats import make_brats, synthesize_subject


def test_subject_contrasts_and_labels():
    subject = synthesize_subject((48, 48, 40), seed=1)
    t1, t2, flair = (subject.images[k].astype(float) for k in ("t1", "t2", "flair"))
    csf, gm, wm = (subject.tissue == c for c in (1, 2, 3))
    assert np.median(t1[wm]) > np.median(t1[gm]) > np.median(t1[csf])
    assert np.median(t2[csf]) > np.median(t2[gm])
    assert np.median(flair[csf]) < np.median(flair[gm])
    assert set(np.unique(subject.label)) <= {0, 1, 2, 4} and (subject.label == 2).any()
    if subject.grade == "HGG":
        t1ce = subject.images["t1ce"].astype(float)
        assert np.median(t1ce[subject.label == 4]) > np.median(t1ce[wm])
    assert np.all(subject.images["t1"][subject.tissue == 0] == 0)  # skull-stripped
    field = subject.bias_fields["t1"]
    assert field.min() < 0.95 and field.max() > 1.05


def test_seed_reproducible_and_subjects_differ():
    a = synthesize_subject((32, 32, 24), seed=4)
    b = synthesize_subject((32, 32, 24), seed=4)
    c = synthesize_subject((32, 32, 24), seed=5)
    assert np.array_equal(a.images["t1"], b.images["t1"])
    assert not np.array_equal(a.label, c.label)


def test_make_brats_layout(tmp_path):
    root = make_brats(tmp_path, 2, seed=0, shape=(32, 32, 24), n_jobs=1, progress=False)
    train = root / "MICCAI_BraTS2020_TrainingData"
    names = sorted(p.name for p in (train / "BraTS20_Training_002").iterdir())
    assert names == [f"BraTS20_Training_002_{k}.nii.gz" for k in
                     ("flair", "seg", "t1", "t1ce", "t2")]
    table = pd.read_csv(train / "name_mapping.csv")
    assert list(table["BraTS_2020_subject_ID"]) == ["BraTS20_Training_001",
                                                    "BraTS20_Training_002"]
    volume = read_nifti(train / "BraTS20_Training_001" / "BraTS20_Training_001_t1.nii.gz",
                        canonical=False)
    assert volume.array.dtype == np.int16 and volume.shape == (32, 32, 24)
    assert volume.axcodes == ("L", "P", "S") and volume.spacing == (1.0, 1.0, 1.0)
