"""medimg.datasets.rsna, issue-5 part: features, patient split, the preprocessed cache
(one interpolation, CLAHE, resumable, failures counted) and the tf.data pipeline."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

from medimg.datasets import rsna
from medimg.errors import ConfigError, InvalidImageError, LayoutError
from medimg.intensity import clahe
from medimg.spatial import resize

tf = pytest.importorskip("tensorflow")
pydicom = pytest.importorskip("pydicom")


# --------------------------------------------------------------------------- features
def test_features_buckets_and_defaults():
    table = pd.DataFrame({
        "age_years": pd.array([0, 19, 20, 59, 60, 80, 95, None, 148, -3], dtype="Int64"),
        "view_position": ["AP", "PA", "pa", "LL", None, "AP", "AP", "PA", "PA", "AP"],
        "sex": ["M", "F", "F", "O", "M", None, "F", "M", "F", "M"],
    })
    out = rsna.features(table)
    assert out.age_bucket.astype(object).where(out.age_bucket.notna(), None).tolist() == [
        "0-20", "0-20", "20-40", "40-60", "60-80", "80+", "80+", None, None, None]
    assert out.attrs["defaults"] == {"age_unknown": 3, "age_impossible": 2,
                                     "view_unknown": 2, "sex_unknown": 2}
    matrix = out[list(rsna.FEATURE_COLUMNS)].to_numpy()
    assert matrix.dtype == np.float32
    # each of the three one-hot groups sums to exactly one per row
    assert np.all(matrix[:, :6].sum(1) == 1) and np.all(matrix[:, 6:9].sum(1) == 1)
    assert np.all(matrix[:, 9:].sum(1) == 1)
    assert out.loc[2, "view_PA"] == 1  # case-insensitive
    assert out.loc[3, "view_unknown"] == 1 and out.loc[3, "sex_unknown"] == 1


def test_features_missing_column():
    with pytest.raises(LayoutError, match="age_years"):
        rsna.features(pd.DataFrame({"sex": ["F"], "view_position": ["AP"]}))


# --------------------------------------------------------------------------- split
def _patients(n, positive_rate=0.25, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"patientId": [f"p{i:04d}" for i in range(n)],
                         "Target": (rng.random(n) < positive_rate).astype("int8")})


def test_split_is_by_patient_and_stratified():
    table = _patients(1000)
    out = rsna.split(table, val_fraction=0.15, test_fraction=0.2, seed=3)
    assert out.patientId.is_unique and set(out.split) == {"train", "val", "test"}
    sizes = out.split.value_counts()
    assert sizes["test"] == pytest.approx(200, abs=2) and sizes["val"] == pytest.approx(150, abs=2)
    rates = out.groupby("split", observed=True).Target.mean()
    assert rates.max() - rates.min() < 0.01  # stratified: same positive rate everywhere
    again = rsna.split(table, val_fraction=0.15, test_fraction=0.2, seed=3)
    assert again.split.tolist() == out.split.tolist()
    other = rsna.split(table, val_fraction=0.15, test_fraction=0.2, seed=4)
    assert other.split.tolist() != out.split.tolist()


def test_split_small_sets_keep_both_classes_in_test():
    out = rsna.split(_patients(24, 0.25, seed=1), val_fraction=0.15, test_fraction=0.2)
    for part in ("train", "val", "test"):
        assert set(out.Target[out.split == part]) == {0, 1}


def test_split_refuses_duplicate_patients_and_bad_fractions():
    table = _patients(10)
    with pytest.raises(LayoutError, match="more than one row"):
        rsna.split(pd.concat([table, table.iloc[:2]]))
    with pytest.raises(ConfigError):
        rsna.split(table, val_fraction=0.6, test_fraction=0.5)


# --------------------------------------------------------------------------- preprocessing
def test_preprocess_is_one_resize_then_clahe(rng):
    pixels = rng.integers(0, 256, (512, 512)).astype(np.float32)
    flags: list[str] = []
    out = rsna.preprocess_image(pixels, (0.15, 0.15), image_shape=(64, 64), flags=flags)
    expected = clahe(resize(pixels.astype(np.uint8), (64, 64)))
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.uint8 and flags == []


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
def rsna_root(tmp_path_factory):
    from medimg.synthetic.rsna import make_rsna

    root = tmp_path_factory.mktemp("rsna")
    make_rsna(root, 16, seed=5, image_size=128, draw_size=64, n_jobs=1, progress=False)
    return root


@pytest.fixture(scope="module")
def table(rsna_root):
    from medimg.io import dicom_metadata

    patients = rsna.patients(rsna.load_labels(rsna_root))
    meta = dicom_metadata(patients.path, n_jobs=1, progress=False)
    return rsna.split(rsna.feature_table(patients, meta), val_fraction=0.2,
                      test_fraction=0.2, seed=0)


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
    root_copy = tmp_path / "data"
    paths = table.path.tolist()
    shutil.copytree(str(pd.Series(paths).str.rsplit("/", n=1).str[0].iloc[0]),
                    root_copy / "images")
    local = table.assign(path=[str(root_copy / "images" / p.rsplit("/", 1)[1]) for p in paths])
    _break(root_copy / "images" / local.path[0].rsplit("/", 1)[1], "truncated")
    _break(root_copy / "images" / local.path[1].rsplit("/", 1)[1], "16bit_nonsquare")
    _break(root_copy / "images" / local.path[2].rsplit("/", 1)[1], "no_spacing")
    _break(root_copy / "images" / local.path[3].rsplit("/", 1)[1], "zero_spacing")

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
    from medimg.io import dicom_pixels

    row = cache.rows([local.patientId[4]])[0]
    expected = rsna.preprocess_image(dicom_pixels(local.path[4]),
                                     (0.15, 0.15), image_shape=(32, 32))
    np.testing.assert_array_equal(cache.images[row], expected)

    # Second call: nothing rebuilt, the failed file is retried (and fails again).
    again = rsna.build_cache(local, tmp_path / "cache", image_shape=(32, 32), n_jobs=1,
                             progress=False)
    assert again.counts["built"] == 0 and again.counts["reused"] == len(local) - 1
    np.testing.assert_array_equal(np.asarray(again.images), np.asarray(cache.images))


def test_cache_resumes_from_items(table, tmp_path):
    first = rsna.build_cache(table.iloc[:5], tmp_path, image_shape=(32, 32), n_jobs=1,
                             progress=False)
    # Simulate an interrupted build: one finished item file, no gathered array yet.
    items = first.directory / "items"
    items.mkdir()
    np.savez(items / f"{table.patientId.iloc[6]}.npz",
             image=np.full((32, 32), 7, np.uint8), flags=np.array(""),
             source=np.array(rsna._source_stamp(table.path.iloc[6])))
    full = rsna.build_cache(table, tmp_path, image_shape=(32, 32), n_jobs=1, progress=False)
    assert full.counts["built"] == len(table) - 6  # 5 from the array, 1 from the item
    assert full.counts["images"] == len(table)
    assert np.all(full.images[full.rows([table.patientId.iloc[6]])[0]] == 7)


def _local_copy(rows, local_dir):
    """Copy the rows' DICOM files into ``local_dir``; return the rows with their new paths."""
    local_dir.mkdir()
    local = rows.copy()
    for path in local.path:
        shutil.copy(path, local_dir)
    local["path"] = [str(local_dir / path.rsplit("/", 1)[1]) for path in local.path]
    return local


def test_cache_rebuilds_changed_files(table, tmp_path):
    import os

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


# --------------------------------------------------------------------------- tf.data
def test_dataset_batches(table, tmp_path):
    cache = rsna.build_cache(table, tmp_path, image_shape=(32, 32), n_jobs=1, progress=False)
    train = table[table.split == "train"]
    ds = rsna.dataset(cache, train, batch_size=4, shuffle=False)
    (image, feats), target = next(iter(ds))
    assert image.shape == (4, 32, 32, 1) and image.dtype == tf.float32
    assert feats.shape == (4, len(rsna.FEATURE_COLUMNS)) and target.shape == (4,)
    first = cache.images[cache.rows([train.patientId.iloc[0]])[0]]
    np.testing.assert_allclose(image[0, ..., 0].numpy(), first / 255.0, atol=1e-6)
    np.testing.assert_array_equal(target.numpy(), train.Target.iloc[:4].to_numpy())
    np.testing.assert_array_equal(feats.numpy(),
                                  train[list(rsna.FEATURE_COLUMNS)].iloc[:4].to_numpy())
    assert sum(int(t.shape[0]) for _, t in ds) == len(train)


def test_dataset_shuffles_each_epoch_and_augments(table, tmp_path):
    cache = rsna.build_cache(table, tmp_path, image_shape=(32, 32), n_jobs=1, progress=False)
    ds = rsna.dataset(cache, table, batch_size=64, shuffle=True, seed=1)
    (epoch1, _), target1 = next(iter(ds))
    (epoch2, _), _ = next(iter(ds))
    assert sorted(target1.numpy()) == sorted(table.Target.astype(np.float32))
    means1 = tf.reduce_mean(epoch1, axis=[1, 2, 3]).numpy()
    means2 = tf.reduce_mean(epoch2, axis=[1, 2, 3]).numpy()
    assert sorted(means1) == pytest.approx(sorted(means2))  # same patients ...
    assert not np.allclose(means1, means2)  # ... in a new order each epoch
    plain = rsna.dataset(cache, table, batch_size=64, shuffle=False)
    augmented = rsna.dataset(cache, table, batch_size=64, shuffle=False, augment=True, seed=1)
    (a, _), _ = next(iter(plain))
    (b, _), _ = next(iter(augmented))
    (c, _), _ = next(iter(augmented))
    assert a.shape == b.shape and float(tf.reduce_max(b)) <= 1.0 and float(tf.reduce_min(b)) >= 0
    assert 0.005 < float(tf.reduce_mean(tf.abs(a - b))) < 0.2  # small changes
    assert not np.allclose(b.numpy(), c.numpy())  # new draws every epoch


def test_dataset_leaves_out_failed_patients(table, tmp_path):
    cache = rsna.build_cache(table.iloc[:-2], tmp_path, image_shape=(32, 32), n_jobs=1,
                             progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = rsna.dataset(cache, table, batch_size=64, shuffle=False)
    assert any("2 patient(s)" in str(w.message) for w in caught)
    assert sum(int(t.shape[0]) for _, t in ds) == len(table) - 2
    with pytest.raises(LayoutError, match="missing column"):
        rsna.dataset(cache, table.drop(columns=["view_AP"]))


def test_cache_drops_rows_of_deleted_files_only(table, tmp_path):
    local_dir = tmp_path / "images"
    local = _local_copy(table.iloc[:4], local_dir)
    rsna.build_cache(local, tmp_path / "c", image_shape=(32, 32), n_jobs=1, progress=False)
    (local_dir / local.path.iloc[3].rsplit("/", 1)[1]).unlink()  # patient 3's file is gone
    subset = rsna.build_cache(local.iloc[:1], tmp_path / "c", image_shape=(32, 32), n_jobs=1,
                              progress=False)
    assert subset.counts["images"] == 1 and subset.counts["built"] == 0
    kept = set(subset.index.patientId)
    assert kept == set(local.patientId.iloc[:3])  # 1 and 2 kept (files unchanged), 3 dropped
    assert subset.images.shape[0] == 3


def test_clahe_in_the_pipeline_equals_clahe_in_the_cache(table, tmp_path):
    """GPU-style pipeline (resize cached, CLAHE per batch in tf.data) = cached CLAHE."""
    with_clahe = rsna.build_cache(table, tmp_path, image_shape=(64, 64), n_jobs=1,
                                  progress=False)
    plain = rsna.build_cache(table, tmp_path, image_shape=(64, 64), clip_limit=None, n_jobs=1,
                             progress=False)
    assert plain.directory != with_clahe.directory
    a = rsna.dataset(with_clahe, table, batch_size=64, shuffle=False)
    b = rsna.dataset(plain, table, batch_size=64, shuffle=False, clahe=(4.0, (8, 8)))
    c = rsna.dataset(plain, table, batch_size=64, shuffle=False)
    (ia, _), _ = next(iter(a))
    (ib, _), _ = next(iter(b))
    (ic, _), _ = next(iter(c))
    assert float(tf.reduce_max(tf.abs(ia - ib))) <= 1.0 / 255 + 1e-6
    assert float(tf.reduce_max(tf.abs(ia - ic))) > 10.0 / 255  # CLAHE does change pixels
