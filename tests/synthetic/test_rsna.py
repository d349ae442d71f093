"""synthetic.make_rsna: the Kaggle layout, real-looking JPEG DICOMs, class mix, boxes that
mark visible opacities, determinism, resume."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pydicom
import pytest

from medimg.datasets import rsna
from medimg.io import dicom_metadata, dicom_pixels
from medimg.synthetic.rsna import CLASSES, make_rsna, render_chest


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_rsna(tmp_path_factory.mktemp("rsna"), 40, seed=11, n_test_patients=3,
                     image_size=256, draw_size=64, n_jobs=1, progress=False)


def test_layout_and_csvs(root):
    names = sorted(p.name for p in root.iterdir())
    assert names == ["stage_2_detailed_class_info.csv", "stage_2_sample_submission.csv",
                     "stage_2_test_images", "stage_2_train_images",
                     "stage_2_train_labels.csv"]
    assert len(list((root / "stage_2_train_images").glob("*.dcm"))) == 40
    assert len(list((root / "stage_2_test_images").glob("*.dcm"))) == 3
    boxes = pd.read_csv(root / "stage_2_train_labels.csv")
    classes = pd.read_csv(root / "stage_2_detailed_class_info.csv")
    assert list(boxes.columns) == ["patientId", "x", "y", "width", "height", "Target"]
    assert len(boxes) == len(classes)  # one row per box in both, as in the real files
    assert (boxes.patientId == classes.patientId).all()


def test_class_mix_and_boxes_per_patient(root):
    table = rsna.patients(rsna.load_labels(root))
    counts = table["class"].value_counts()
    assert counts["Lung Opacity"] == round(0.23 * 40)
    assert counts["No Lung Opacity / Not Normal"] == round(0.44 * 40)
    assert counts["Normal"] == 40 - counts.sum() + counts["Normal"]
    positives = table[table.Target == 1]
    assert positives.n_boxes.between(1, 4).all()
    assert (table[table.Target == 0].n_boxes == 0).all()


def test_dicom_fields_mirror_the_real_files(root):
    path = next((root / "stage_2_train_images").glob("*.dcm"))
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"  # JPEG Baseline
    assert ds.Modality == "CR" and ds.BodyPartExamined == "CHEST"
    assert ds.PhotometricInterpretation == "MONOCHROME2"
    assert (ds.BitsAllocated, ds.BitsStored, ds.SamplesPerPixel) == (8, 8, 1)
    assert ds.ViewPosition in ("AP", "PA") and ds.PatientSex in ("M", "F")
    assert 0.139 <= float(ds.PixelSpacing[0]) <= 0.171
    assert ds.PatientID == path.stem
    # the encapsulated stream decodes with pydicom + pylibjpeg
    ds.pixel_array_options(decoding_plugin="pylibjpeg")
    pixels = ds.pixel_array
    assert pixels.shape == (256, 256) and pixels.dtype == np.uint8
    assert pixels.std() > 10


def test_metadata_shows_impossible_ages_and_both_views(root):
    paths = sorted((root / "stage_2_train_images").glob("*.dcm"))
    paths += sorted((root / "stage_2_test_images").glob("*.dcm"))
    table = dicom_metadata(paths, n_jobs=1, progress=False)
    assert table.error.isna().all()
    assert table.issues.str.contains("impossible age").sum() >= 1
    assert set(table.view_position.dropna()) == {"AP", "PA"}
    assert table.age_years.dropna().between(1, 92).all()


def test_full_size_image_is_1024():
    image, boxes = render_chest(3, label="Lung Opacity", view="AP", n_boxes=2)
    assert image.shape == (1024, 1024) and image.dtype == np.uint8
    assert len(boxes) == 2


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_opacities_are_visible_where_the_boxes_are(seed):
    # Lung Opacity and Normal share the anatomy of a seed; the boxes must be brighter
    sick, boxes = render_chest(seed, label="Lung Opacity", view="PA", n_boxes=2, size=256,
                               draw_size=128)
    healthy, none = render_chest(seed, label="Normal", view="PA", size=256, draw_size=128)
    assert none == []
    for x, y, w, h in boxes:
        assert 0 <= x and 0 <= y and x + w <= 256 and y + h <= 256 and w > 10 and h > 10
        region = (slice(int(y), int(y + h)), slice(int(x), int(x + w)))
        assert sick[region].mean() - healthy[region].mean() > 8
    outside = np.ones(sick.shape, bool)
    for x, y, w, h in boxes:
        outside[int(y):int(y + h), int(x):int(x + w)] = False
    assert abs(sick[outside].mean() - healthy[outside].mean()) < 4


def test_same_seed_same_data_whatever_n_jobs(tmp_path):
    a = make_rsna(tmp_path / "a", 6, seed=2, n_test_patients=0, image_size=128, draw_size=64,
                  n_jobs=1, progress=False)
    b = make_rsna(tmp_path / "b", 6, seed=2, n_test_patients=0, image_size=128, draw_size=64,
                  n_jobs=2, progress=False)
    for name in ("stage_2_train_labels.csv", "stage_2_detailed_class_info.csv"):
        assert (a / name).read_text() == (b / name).read_text()
    for path in (a / "stage_2_train_images").glob("*.dcm"):
        other = b / "stage_2_train_images" / path.name
        np.testing.assert_array_equal(dicom_pixels(path), dicom_pixels(other))


def test_rerun_keeps_finished_files(tmp_path):
    root = make_rsna(tmp_path / "r", 4, seed=1, n_test_patients=0, image_size=128,
                     draw_size=64, n_jobs=1, progress=False)
    files = sorted((root / "stage_2_train_images").glob("*.dcm"))
    stamps = [p.stat().st_mtime_ns for p in files]
    files[0].unlink()
    make_rsna(root, 4, seed=1, n_test_patients=0, image_size=128, draw_size=64, n_jobs=1,
              progress=False)
    assert files[0].is_file()
    assert [p.stat().st_mtime_ns for p in files[1:]] == stamps[1:]


def test_classes_constant_matches_the_dataset_module():
    assert CLASSES == rsna.CLASSES


def test_config_synthetic_keys_are_make_rsna_arguments():
    import inspect

    from medimg.config import load_config

    for profile in ("smoke", "demo", "full"):
        cfg = load_config("rsna", profile)
        inspect.signature(make_rsna).bind("root", **cfg.synthetic.to_dict(), seed=cfg.seed)


def test_opacity_contrast_sets_how_visible_opacities_are(tmp_path):
    def box_excess(contrast):
        sick, boxes = render_chest(7, label="Lung Opacity", n_boxes=2, size=128, draw_size=64,
                                   opacity_contrast=contrast)
        healthy, _ = render_chest(7, label="Normal", size=128, draw_size=64)
        return np.mean([sick[int(y):int(y + h), int(x):int(x + w)].mean()
                        - healthy[int(y):int(y + h), int(x):int(x + w)].mean()
                        for x, y, w, h in boxes])

    # opacity_contrast is the share of the lung's air replaced at the peak
    assert box_excess((0.6, 0.9)) > box_excess((0.15, 0.25)) + 5
    with pytest.raises(Exception, match="opacity_contrast"):
        make_rsna(tmp_path, 2, seed=0, opacity_contrast=[0.3, 0.1], progress=False)


def test_view_position_predicts_the_label_only_partly():
    """AP films carry opacities more often (as in the real set), so metadata alone is a
    weak but real predictor: the baseline the image model must beat."""
    from sklearn.metrics import roc_auc_score

    from medimg.synthetic.rsna import _patients

    patients = _patients(3000, 0, np.random.default_rng(0))
    target = np.array([p.label == "Lung Opacity" for p in patients])
    ap = np.array([p.view == "AP" for p in patients])
    assert 0.68 < ap[target].mean() < 0.8 and 0.3 < ap[~target].mean() < 0.45
    assert 0.62 < roc_auc_score(target, ap) < 0.75


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_not_normal_findings_change_the_image_but_draw_no_box(seed):
    other, boxes = render_chest(seed, label="No Lung Opacity / Not Normal", view="AP",
                                size=256, draw_size=128)
    normal, _ = render_chest(seed, label="Normal", view="AP", size=256, draw_size=128)
    assert boxes == []
    assert np.abs(other.astype(float) - normal).max() > 15  # a visible local finding
