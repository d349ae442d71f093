"""datasets.rsna: layout discovery, load_labels (one row per box), patients (one per
patient), preprocess_image (one resampling, CLAHE) and the image cache (keyed on settings
and sources, resumable, failures counted)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from medimg.datasets import rsna
from medimg.errors import InvalidImageError, LayoutError
from medimg.intensity import clahe
from medimg.io import dicom_pixels
from medimg.spatial import resize
from medimg.synthetic.rsna import make_rsna

pydicom = pytest.importorskip("pydicom")


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


def test_patient_only_in_the_class_file_is_a_layout_error(synthetic_root, tmp_path):
    root = _copy(synthetic_root, tmp_path)
    labels = pd.read_csv(root / "stage_2_train_labels.csv")
    first = labels.patientId[0]
    labels[labels.patientId != first].to_csv(root / "stage_2_train_labels.csv", index=False)
    with pytest.raises(LayoutError, match="no row in stage_2_train_labels.csv") as info:
        rsna.load_labels(root)
    assert first in str(info.value)


def test_a_repeated_box_row_is_a_layout_error(synthetic_root, tmp_path):
    root = _copy(synthetic_root, tmp_path)
    labels = pd.read_csv(root / "stage_2_train_labels.csv")
    boxed = labels[labels.Target == 1].iloc[:1]
    pd.concat([labels, boxed]).to_csv(root / "stage_2_train_labels.csv", index=False)
    with pytest.raises(LayoutError, match="repeat an earlier row exactly") as info:
        rsna.load_labels(root)
    assert boxed.patientId.iloc[0] in str(info.value)


@pytest.mark.parametrize("edit, message", [
    ({"x": -5.0}, "negative x or y"),
    ({"width": 5000.0}, "past the edge"),
])
def test_boxes_outside_the_image(synthetic_root, tmp_path, edit, message):
    from medimg.io import dicom_metadata

    root = _copy(synthetic_root, tmp_path)
    labels = pd.read_csv(root / "stage_2_train_labels.csv")
    index = labels.index[labels.Target == 1][0]
    for column, value in edit.items():
        labels.loc[index, column] = value
    labels.to_csv(root / "stage_2_train_labels.csv", index=False)
    with pytest.raises(LayoutError, match=message) as info:
        table = rsna.load_labels(root)
        metadata = dicom_metadata(rsna.patients(table)["path"], n_jobs=1, progress=False)
        rsna.check_boxes(table, metadata)
    assert labels.patientId[index] in str(info.value)


def test_boxes_inside_the_image_pass(synthetic_root):
    from medimg.io import dicom_metadata

    table = rsna.load_labels(synthetic_root)
    metadata = dicom_metadata(rsna.patients(table)["path"], n_jobs=1, progress=False)
    rsna.check_boxes(table, metadata)  # raises on any box past an edge


def test_datasets_rsna_imports_no_higher_layer():
    """datasets holds layouts, tables and caches: no models, metrics, training, tasks."""
    import subprocess
    import sys

    code = ("import sys, medimg.datasets.rsna; print(sorted(m for m in ('medimg.models', "
            "'medimg.metrics', 'medimg.training', 'medimg.synthetic', 'medimg.tasks', "
            "'tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


# --------------------------------------------------------------------------- preprocessing
def test_preprocess_is_one_resize_then_clahe(rng):
    pixels = rng.integers(0, 256, (512, 512)).astype(np.float32)
    flags: list[str] = []
    out = rsna.preprocess_image(pixels, (0.15, 0.15), image_shape=(64, 64), flags=flags)
    expected = clahe(resize(pixels.astype(np.uint8), (64, 64)))
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.uint8 and flags == []


def test_preprocess_isotropic_grid_keeps_the_physical_scale(rng):
    """With spacing_mm, one pixel is that many mm whatever the film's spacing: a film of
    finer spacing covers fewer output pixels (padded), one of coarser spacing more."""
    pixels = np.full((400, 400), 200, np.float32)
    sizes = {}
    for spacing in (0.14, 0.17):
        flags: list[str] = []
        out = rsna.preprocess_image(pixels, (spacing, spacing), image_shape=(64, 64),
                                    spacing_mm=1.2, clip_limit=None, flags=flags)
        assert out.shape == (64, 64) and "letterboxed" in flags
        sizes[spacing] = int((out[32] > 0).sum())  # film width in output pixels
    assert sizes[0.14] == round(400 * 0.14 / 1.2) and sizes[0.17] == round(400 * 0.17 / 1.2)
    fitted = rsna.preprocess_image(pixels, (0.14, 0.14), image_shape=(64, 64), clip_limit=None)
    assert int((fitted[32] > 0).sum()) == 64  # spacing_mm=0 fills the frame instead


def test_preprocess_documented_defaults(rng):
    # 16-bit, non-square, anisotropic spacing, no spacing
    pixels = rng.integers(0, 4096, (300, 200)).astype(np.float32)
    flags: list[str] = []
    out = rsna.preprocess_image(pixels, None, image_shape=(64, 64), flags=flags)
    assert out.shape == (64, 64) and out.dtype == np.uint8
    assert set(flags) == {"spacing_missing", "rescaled_to_8bit", "letterboxed"}
    # letterbox: 300x200 pixels fit as 64x43, black bars left and right
    assert np.all(out[:, :5] == 0) and np.all(out[:, -5:] == 0) and out[:, 20:40].mean() > 0
    flags = []
    wide = rsna.preprocess_image(pixels, (0.2, 0.3), image_shape=(64, 64), flags=flags)
    assert wide.shape == (64, 64)  # 60 mm x 60 mm: square after spacing, no letterbox
    assert "letterboxed" not in flags
    flags = []
    rsna.preprocess_image(pixels, (0.2, 0.2), image_shape=(64, 64), spacing_mm=0.5,
                          flags=flags)
    assert "cropped" in flags  # 120 x 80 pixels at 0.5 mm do not fit into 64 x 64
    with pytest.raises(InvalidImageError, match="spacing"):
        rsna.preprocess_image(pixels, (0.0, 0.2), image_shape=(64, 64))


# --------------------------------------------------------------------------- cache
@pytest.fixture(scope="module")
def table(synthetic_root):
    return rsna.patients(rsna.load_labels(synthetic_root))


def _local_copy(rows, local_dir):
    """Copy the rows' DICOM files into ``local_dir``; return the rows with their new paths."""
    local_dir.mkdir()
    local = rows.copy()
    for path in local.path:
        shutil.copy(path, local_dir)
    local["path"] = [str(local_dir / path.rsplit("/", 1)[1]) for path in local.path]
    return local


def _break(path, how):
    """Rewrite a DICOM: truncated, or 16-bit uncompressed non-square, or no spacing."""
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return
    ds = pydicom.dcmread(path)
    if how == "16bit_nonsquare":
        from pydicom.uid import ExplicitVRLittleEndian

        image = (np.arange(96 * 64, dtype=np.uint16).reshape(96, 64) * 7) % 4096
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.Rows, ds.Columns = image.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelData = image.tobytes()
        ds["PixelData"].VR = "OW"
        ds["PixelData"].is_undefined_length = False
    elif how == "no_spacing":
        del ds.PixelSpacing
    elif how == "zero_spacing":
        ds.PixelSpacing = ["0", "0"]
    ds.save_as(path, enforce_file_format=True)


def test_cache_builds_resumes_and_counts_failures(table, tmp_path):
    local = _local_copy(table, tmp_path / "images")
    for i, how in enumerate(("truncated", "16bit_nonsquare", "no_spacing", "zero_spacing")):
        _break(tmp_path / "images" / local.path[i].rsplit("/", 1)[1], how)

    cache = rsna.build_cache(local, tmp_path / "cache", image_shape=(32, 32), n_jobs=1,
                             progress=False)
    assert cache.images.dtype == np.uint8 and cache.images.shape == (len(local) - 1, 32, 32)
    assert cache.counts["failed"] == 1 and cache.counts["built"] == len(local) - 1
    assert cache.counts["rescaled_to_8bit"] == 1 and cache.counts["letterboxed"] == 1
    assert cache.counts["spacing_missing"] == 1 and cache.counts["spacing_invalid"] == 1
    failed = cache.failed
    assert failed.patientId.tolist() == [local.patientId[0]]
    assert local.path[0] in failed.error.iloc[0]  # the error names the file
    assert not (cache.directory / "items").exists()  # gathered and cleaned up

    # The cached pixels are preprocess_image of the decoded file.
    row = cache.rows([local.patientId[4]])[0]
    expected = rsna.preprocess_image(dicom_pixels(local.path[4]),
                                     (0.15, 0.15), image_shape=(32, 32))
    np.testing.assert_array_equal(cache.images[row], expected)

    # Second call: nothing rebuilt; the failed file is retried (and fails again).
    again = rsna.build_cache(local, tmp_path / "cache", image_shape=(32, 32), n_jobs=1,
                             progress=False)
    assert again.counts["built"] == 0 and again.counts["reused"] == len(local) - 1
    assert again.counts["failed"] == 1 and again.counts["spacing_missing"] == 1
    np.testing.assert_array_equal(again.images, cache.images)
    settings = json.loads((cache.directory / "settings.json").read_text())
    assert settings["image_shape"] == [32, 32] and settings["version"] == rsna.CACHE_VERSION


def test_cache_resumes_where_a_build_stopped(table, tmp_path):
    """Images finished by an earlier (interrupted or partial) build are reused."""
    first = rsna.build_cache(table.iloc[:5], tmp_path, image_shape=(32, 32), n_jobs=1,
                             progress=False)
    full = rsna.build_cache(table, tmp_path, image_shape=(32, 32), n_jobs=1, progress=False)
    assert full.directory == first.directory
    assert full.counts["built"] == len(table) - 5 and full.counts["reused"] == 5
    assert full.counts["images"] == len(table)
    np.testing.assert_array_equal(full.images[:5], first.images)


def test_cache_rebuilds_changed_files(table, tmp_path):
    local = _local_copy(table.iloc[:4], tmp_path / "images")
    first = rsna.build_cache(local, tmp_path / "c", image_shape=(32, 32), n_jobs=1,
                             progress=False)
    before = np.asarray(first.images[first.rows([local.patientId.iloc[1]])[0]]).copy()
    # Replace patient 1's file by patient 0's image (a regenerated data set, same ID).
    shutil.copy(local.path.iloc[0], local.path.iloc[1])
    os.utime(local.path.iloc[1], ns=(1, 1))
    second = rsna.build_cache(local, tmp_path / "c", image_shape=(32, 32), n_jobs=1,
                              progress=False)
    assert second.counts["built"] == 1 and second.counts["reused"] == 3
    after = second.images[second.rows([local.patientId.iloc[1]])[0]]
    assert not np.array_equal(after, before)
    np.testing.assert_array_equal(after, second.images[second.rows([local.patientId.iloc[0]])[0]])


def test_cache_deleted_source_becomes_a_failure(table, tmp_path):
    local_dir = tmp_path / "images"
    local = _local_copy(table.iloc[:4], local_dir)
    rsna.build_cache(local, tmp_path / "c", image_shape=(32, 32), n_jobs=1, progress=False)
    (local_dir / local.path.iloc[3].rsplit("/", 1)[1]).unlink()  # patient 3's file is gone
    again = rsna.build_cache(local, tmp_path / "c", image_shape=(32, 32), n_jobs=1,
                             progress=False)
    assert again.counts == {"images": 3, "built": 0, "reused": 3, "failed": 1}
    assert again.failed.patientId.tolist() == [local.patientId.iloc[3]]
    assert again.images.shape == (3, 32, 32)


BASE = {"image_shape": (32, 32), "spacing_mm": 0.0, "clip_limit": 4.0, "tile_grid": (8, 8)}


@pytest.mark.parametrize("change", [
    {"image_shape": (32, 48)}, {"spacing_mm": 5.0}, {"spacing_mm": 5.0000001},
    {"clip_limit": 2.0}, {"clip_limit": None}, {"tile_grid": (4, 4)},
])
def test_cache_is_keyed_on_every_setting(table, tmp_path, change):
    """A change of any setting (even beyond the digits a folder name prints) builds a new
    cache; the same settings reuse it."""
    rows = table.iloc[:2]
    base = BASE if "spacing_mm" not in change or change["spacing_mm"] == 5.0 else {
        **BASE, "spacing_mm": 5.0}
    first = rsna.build_cache(rows, tmp_path, n_jobs=1, progress=False, **base)
    other = rsna.build_cache(rows, tmp_path, n_jobs=1, progress=False, **{**BASE, **change})
    assert other.directory != first.directory and other.counts["built"] == 2
    again = rsna.build_cache(rows, tmp_path, n_jobs=1, progress=False, **base)
    assert again.directory == first.directory and again.counts["built"] == 0


def test_images_for_follows_the_order_asked(table, tmp_path):
    cache = rsna.build_cache(table.iloc[:5], tmp_path, image_shape=(32, 32), n_jobs=1,
                             progress=False)
    ids = table.patientId.iloc[[3, 0, 4]].tolist()
    images = cache.images_for(ids)  # read from the files
    assert images.shape == (3, 32, 32) and images.dtype == np.uint8
    for image, pid in zip(images, ids, strict=True):
        np.testing.assert_array_equal(image, cache.images[cache.rows([pid])[0]])
    np.testing.assert_array_equal(cache.images_for(ids), images)  # from memory, the same
    with pytest.raises(LayoutError, match="1 patient") as info:
        cache.images_for([ids[0], table.patientId.iloc[7]])
    assert str(cache.directory) in str(info.value)


def test_cache_without_clahe_is_the_resized_image(table, tmp_path):
    plain = rsna.build_cache(table.iloc[:2], tmp_path, image_shape=(64, 64), clip_limit=None,
                             n_jobs=1, progress=False)
    with_clahe = rsna.build_cache(table.iloc[:2], tmp_path, image_shape=(64, 64), n_jobs=1,
                                  progress=False)
    assert plain.directory != with_clahe.directory
    np.testing.assert_array_equal(with_clahe.images[0], clahe(np.asarray(plain.images[0])))
