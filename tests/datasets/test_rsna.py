"""datasets.rsna: layout discovery, load_labels (one row per box), patients (one per patient)."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from medimg.datasets import rsna
from medimg.errors import LayoutError
from medimg.synthetic.rsna import make_rsna


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("rsna")
    return make_rsna(root, 16, seed=5, n_test_patients=2, image_size=128, draw_size=64,
                     n_jobs=1, progress=False)


def _copy(root, tmp_path):
    return shutil.copytree(root, tmp_path / "copy")


def test_find_layout_stage2(synthetic_root):
    layout = rsna.find_layout(synthetic_root)
    assert layout.train_images.name == "stage_2_train_images"
    assert layout.test_images.name == "stage_2_test_images"
    assert layout.labels_csv.name == "stage_2_train_labels.csv"


def test_find_layout_chapter_names(synthetic_root, tmp_path):
    root = _copy(synthetic_root, tmp_path)
    (root / "stage_2_train_images").rename(root / "Train")
    (root / "stage_2_test_images").rename(root / "Test")
    layout = rsna.find_layout(root)
    assert (layout.train_images.name, layout.test_images.name) == ("Train", "Test")
    table = rsna.patients(rsna.load_labels(root))
    assert all("/Train/" in p for p in table.path)


def test_find_layout_missing_parts(tmp_path):
    with pytest.raises(LayoutError, match="does not exist"):
        rsna.find_layout(tmp_path / "absent")
    (tmp_path / "stage_2_train_images").mkdir()
    with pytest.raises(LayoutError, match="stage_2_train_labels.csv") as info:
        rsna.find_layout(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_load_labels_one_row_per_box(synthetic_root):
    labels = rsna.load_labels(synthetic_root)
    raw = pd.read_csv(synthetic_root / "stage_2_train_labels.csv")
    assert len(labels) == len(raw)
    assert list(labels.columns) == ["patientId", "class", "Target", "x", "y", "width", "height"]
    assert str(labels["Target"].dtype) == "int8"
    assert list(labels["class"].cat.categories) == list(rsna.CLASSES)
    positives = labels[labels.Target == 1]
    assert (positives["class"] == "Lung Opacity").all()
    assert positives[["x", "y", "width", "height"]].notna().all().all()
    assert labels[labels.Target == 0][["x", "y", "width", "height"]].isna().all().all()


def test_patients_one_row_each_with_paths(synthetic_root):
    labels = rsna.load_labels(synthetic_root)
    table = rsna.patients(labels)
    assert table.patientId.is_unique
    assert len(table) == 16
    assert set(table.columns) == {"patientId", "class", "Target", "n_boxes", "path"}
    counts = labels.dropna(subset=["x"]).groupby("patientId").size()
    merged = table.set_index("patientId")
    for pid, n in counts.items():
        assert merged.loc[pid, "n_boxes"] == n
    assert (merged.loc[merged.Target == 0, "n_boxes"] == 0).all()
    assert all(p.endswith(f"{pid}.dcm") for p, pid in zip(table.path, table.patientId,
                                                            strict=True))


def test_target_class_disagreement_is_a_layout_error(synthetic_root, tmp_path):
    root = _copy(synthetic_root, tmp_path)
    classes = pd.read_csv(root / "stage_2_detailed_class_info.csv")
    negative = classes.index[classes["class"] == "Normal"][0]
    classes.loc[negative, "class"] = "Lung Opacity"
    classes.to_csv(root / "stage_2_detailed_class_info.csv", index=False)
    with pytest.raises(LayoutError, match="Target and class disagree") as info:
        rsna.load_labels(root)
    assert "stage_2_train_labels.csv" in str(info.value)


def test_unknown_class_is_a_layout_error(synthetic_root, tmp_path):
    root = _copy(synthetic_root, tmp_path)
    classes = pd.read_csv(root / "stage_2_detailed_class_info.csv")
    classes.loc[0, "class"] = "Pneumonia"
    classes.to_csv(root / "stage_2_detailed_class_info.csv", index=False)
    with pytest.raises(LayoutError, match="unknown class"):
        rsna.load_labels(root)


def test_positive_without_box_is_a_layout_error(synthetic_root, tmp_path):
    root = _copy(synthetic_root, tmp_path)
    boxes = pd.read_csv(root / "stage_2_train_labels.csv")
    boxes.loc[boxes.index[boxes.Target == 1][0], "width"] = None
    boxes.to_csv(root / "stage_2_train_labels.csv", index=False)
    with pytest.raises(LayoutError, match="without a complete box"):
        rsna.load_labels(root)


def test_missing_image_is_a_layout_error_naming_the_file(synthetic_root, tmp_path):
    root = _copy(synthetic_root, tmp_path)
    labels = rsna.load_labels(root)
    victim = root / "stage_2_train_images" / f"{labels.patientId[0]}.dcm"
    victim.unlink()
    with pytest.raises(LayoutError, match="no image") as info:
        rsna.patients(labels)
    assert victim.name in str(info.value)


def test_patient_without_class_row_is_a_layout_error(synthetic_root, tmp_path):
    root = _copy(synthetic_root, tmp_path)
    classes = pd.read_csv(root / "stage_2_detailed_class_info.csv")
    first = classes.patientId[0]
    classes[classes.patientId != first].to_csv(root / "stage_2_detailed_class_info.csv",
                                               index=False)
    with pytest.raises(LayoutError, match="no row in stage_2_detailed_class_info.csv"):
        rsna.load_labels(root)
