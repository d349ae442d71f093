"""BraTS training pipeline and whole-scan prediction (issue 6): subject splits,
tf.data patches from the HDF5 cache, the compiled 3-D U-Net, sliding-window
prediction back to NIfTI on the original grid, and clear errors on bad input."""

from __future__ import annotations

import shutil
import warnings

import h5py
import numpy as np
import pytest

from medimg.datasets import brats
from medimg.errors import ConfigError, DecodeError, InvalidImageError, LayoutError, PatchError

PATCH = (16, 16, 16)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from medimg.synthetic.brats import make_brats

    root = tmp_path_factory.mktemp("brats")
    make_brats(root / "raw", 3, seed=3, shape=(64, 64, 48), n_jobs=1, progress=False)
    manifest = brats.preprocess(root / "raw", root / "cache", n_jobs=1, n4=False,
                                progress=False)
    assert (manifest.status == "ok").all()
    return root


def test_cached_subjects_and_split_by_subject(data):
    subjects = brats.cached_subjects(data / "cache")
    assert list(subjects.subject) == [f"BraTS20_Training_00{i}" for i in (1, 2, 3)]
    split = brats.split_subjects(subjects, val_fraction=0.34, test_fraction=0.34, seed=1)
    assert sorted(s for part in split.values() for s in part) == list(subjects.subject)
    assert all(len(v) == 1 for v in split.values())
    assert split == brats.split_subjects(data / "cache", val_fraction=0.34,
                                         test_fraction=0.34, seed=1)
    many = brats.split_subjects([f"s{i}" for i in range(20)], val_fraction=0.2,
                                test_fraction=0.1, seed=0)
    assert (len(many["train"]), len(many["val"]), len(many["test"])) == (14, 4, 2)


def test_cached_subjects_empty_folder_is_a_layout_error(tmp_path):
    with pytest.raises(LayoutError, match="no preprocessed subject"):
        brats.cached_subjects(tmp_path)


def test_dataset_batches_standardised_patches_with_region_targets(data):
    subjects = brats.cached_subjects(data / "cache")
    ds = brats.dataset(subjects, patch_shape=PATCH, batch_size=2, patches_per_subject=3,
                       max_background=0.98, seed=0)
    assert int(ds.cardinality()) == 4  # 9 patches, full batches of 2
    batches = list(ds)
    assert len(batches) == 4
    images = np.concatenate([b[0].numpy() for b in batches])
    targets = np.concatenate([b[1].numpy() for b in batches])
    assert images.shape == (8, *PATCH, 4) and images.dtype == np.float32
    assert targets.shape == (8, *PATCH, 3)
    # whole tumour holds the two others, and every patch has >= 2% tumour
    assert np.all(targets[..., 0] >= targets[..., 1]) and np.all(targets[..., 1] >= targets[..., 2])
    assert np.all(targets[..., 0].reshape(8, -1).mean(1) >= 0.02 - 1e-6)
    # standardised over the brain: background (about -mean/std) is far below brain mean 0
    assert abs(float(np.median(images[targets[..., 0] > 0]))) < 5


def test_dataset_patches_are_the_standardised_volume(data):
    path = brats.cached_subjects(data / "cache").path[0]
    image, label, _ = brats.read_h5(path)
    volume = brats.standardize_volume(image)
    ds = brats.dataset([path], patch_shape=PATCH, batch_size=1, patches_per_subject=2,
                       max_background=0.98, shuffle=False, targets="classes")
    for x, y in ds:
        x, y = x.numpy()[0], y.numpy()[0]
        hits = np.argwhere(np.isclose(volume[..., 0], x[0, 0, 0, 0], atol=1e-6))
        found = [h for h in hits if all(h[i] + PATCH[i] <= volume.shape[i] for i in range(3))
                 and np.allclose(volume[h[0]:h[0] + 16, h[1]:h[1] + 16, h[2]:h[2] + 16], x,
                                 atol=1e-5)]
        assert found, "patch is not a window of the standardised volume"
        h = found[0]
        window = label[h[0]:h[0] + 16, h[1]:h[1] + 16, h[2]:h[2] + 16]
        np.testing.assert_array_equal(np.argmax(y, -1), window)  # one-hot classes


def test_validation_dataset_repeats_the_same_patches(data):
    subjects = brats.cached_subjects(data / "cache")
    ds = brats.dataset(subjects, patch_shape=PATCH, batch_size=2, patches_per_subject=2,
                       max_background=0.98, shuffle=False, seed=5)
    first = np.concatenate([x.numpy() for x, _ in ds])
    second = np.concatenate([x.numpy() for x, _ in ds])
    np.testing.assert_array_equal(first, second)
    train = brats.dataset(subjects, patch_shape=PATCH, batch_size=2, patches_per_subject=2,
                          max_background=0.98, seed=5)
    a = np.concatenate([x.numpy() for x, _ in train])
    b = np.concatenate([x.numpy() for x, _ in train])
    assert not np.array_equal(a, b)  # new patches every epoch


def test_pre_extracted_sampling_reuses_patches(data):
    subjects = brats.cached_subjects(data / "cache")
    ds = brats.dataset(subjects, patch_shape=PATCH, batch_size=3, patches_per_subject=3,
                       max_background=0.98, sampling="pre_extracted", seed=2)
    a = np.concatenate([x.numpy() for x, _ in ds])
    b = np.concatenate([x.numpy() for x, _ in ds])
    key = lambda arr: sorted(float(p.sum()) for p in arr)  # noqa: E731
    np.testing.assert_allclose(key(a), key(b), rtol=1e-5)  # same patches, reshuffled


def test_dataset_bad_inputs_name_the_subject(data, tmp_path):
    subjects = brats.cached_subjects(data / "cache")
    with pytest.raises(PatchError, match=r"BraTS20_Training_001\.h5.*larger than the volume"):
        brats.dataset(subjects, patch_shape=(128, 16, 16))
    with pytest.raises(ConfigError, match="targets"):
        brats.dataset(subjects, patch_shape=PATCH, targets="wt")
    with pytest.raises(ConfigError, match="sampling"):
        brats.dataset(subjects, patch_shape=PATCH, sampling="sometimes")
    # a subject whose cache holds NaN
    bad = tmp_path / "nan.h5"
    shutil.copy(subjects.path[0], bad)
    with h5py.File(bad, "r+") as h5:
        image = h5["image"][()]
        image[5, 6, 7, 1] = np.nan
        h5["image"][...] = image
    with pytest.raises(InvalidImageError, match=r"nan\.h5.*NaN"):
        brats.dataset([bad], patch_shape=PATCH, max_background=0.98)
    # an empty label: skipped with a warning; only empty labels: a clear error
    empty = tmp_path / "empty.h5"
    shutil.copy(subjects.path[1], empty)
    with h5py.File(empty, "r+") as h5:
        h5["label"][...] = 0
    with pytest.warns(UserWarning, match=r"skipping empty\.h5: label volume is empty"):
        ds = brats.dataset([empty, subjects.path[0]], patch_shape=PATCH, batch_size=1,
                           patches_per_subject=2, max_background=0.98)
    assert int(ds.cardinality()) == 2
    with warnings.catch_warnings(), pytest.raises(PatchError, match="no subject"):
        warnings.simplefilter("ignore")
        brats.dataset([empty], patch_shape=PATCH, max_background=0.98)
    with pytest.raises(LayoutError, match="not found"):
        brats.dataset([tmp_path / "missing.h5"], patch_shape=PATCH)


def test_probabilities_to_labels_keeps_regions_nested():
    p = np.zeros((4, 1, 1, 3), np.float32)
    p[0] = [0.9, 0.1, 0.9]  # ET without TC: not enhancing, only oedema
    p[1] = [0.9, 0.9, 0.1]
    p[2] = [0.9, 0.9, 0.9]
    p[3] = [0.1, 0.9, 0.9]  # nothing without WT
    np.testing.assert_array_equal(brats.probabilities_to_labels(p)[:, 0, 0], [2, 1, 3, 0])
    classes = np.eye(4, dtype=np.float32)[[0, 3, 1, 2]][:, None, None, :]
    np.testing.assert_array_equal(brats.probabilities_to_labels(classes, "classes")[:, 0, 0],
                                  [0, 3, 1, 2])
    with pytest.raises(InvalidImageError, match="channels"):
        brats.probabilities_to_labels(classes, "regions")


def test_build_model_and_channel_checks(tmp_path):
    model = brats.build_model(patch_shape=PATCH, depth=2, base_filters=2)
    assert model.output_shape == (None, None, None, None, 3)
    model.fit(np.zeros((1, *PATCH, 4), np.float32), np.zeros((1, *PATCH, 3), np.float32),
              verbose=0)
    assert {"dice_wt", "dice_tc", "dice_et"} <= set(model.get_metrics_result())
    softmax = brats.build_model(patch_shape=PATCH, targets="classes", depth=2, base_filters=2)
    assert softmax.output_shape[-1] == 4
    with pytest.raises(ConfigError, match=r"outputs 4 channels but targets='regions' needs 3"):
        brats.check_model(softmax, "regions")
    with pytest.raises(ConfigError, match="divisible"):
        brats.build_model(patch_shape=(18, 16, 16), depth=3)
    softmax.save(tmp_path / "m.keras")
    with pytest.raises(ConfigError, match="outputs 4"):
        brats.load_model(tmp_path / "m.keras", targets="regions")
    assert brats.load_model(tmp_path / "m.keras", targets="classes").output_shape[-1] == 4
    with pytest.raises(DecodeError, match="no such model"):
        brats.load_model(tmp_path / "none.keras")
    (tmp_path / "junk.keras").write_text("not a model")
    with pytest.raises(DecodeError, match="cannot load"):
        brats.load_model(tmp_path / "junk.keras")


def test_predict_volume_with_an_oracle_gives_dice_one(data):
    path = brats.cached_subjects(data / "cache").path[0]
    image, label, _ = brats.read_h5(path)
    standardized = brats.standardize_volume(image)
    from medimg.metrics import brats_regions, region_dice

    truth = brats_regions(label).astype(np.float32)

    def oracle(batch):
        # find each window by its content: the standardised volume is unique per voxel
        out = []
        for window in batch:
            hit = np.argwhere(np.isclose(standardized[..., 1], window[0, 0, 0, 1], atol=1e-6))
            for h in hit:
                sl = tuple(slice(a, a + s) for a, s in zip(h, window.shape[:3], strict=True))
                if standardized[sl].shape == window.shape and np.allclose(standardized[sl],
                                                                          window):
                    out.append(truth[sl])
                    break
            else:
                raise AssertionError("window not found")
        return np.stack(out)

    labels, probabilities = brats.predict_volume(oracle, image, patch_shape=(32, 32, 32),
                                                 overlap=0.25)
    assert probabilities.shape == (*label.shape, 3)
    assert region_dice(labels, label) == pytest.approx({"WT": 1.0, "TC": 1.0, "ET": 1.0})


@pytest.mark.slow
def test_predict_subject_writes_nifti_on_the_original_grid(data, tmp_path):
    from medimg.io import read_nifti

    model = brats.build_model(patch_shape=PATCH, depth=2, base_filters=2)
    model.save(tmp_path / "model.keras")
    subject = data / "raw" / "MICCAI_BraTS2020_TrainingData" / "BraTS20_Training_002"
    out = tmp_path / "pred.nii.gz"
    volume = brats.predict_subject(tmp_path / "model.keras", subject, out,
                                   patch_shape=(32, 32, 32), n4=False, progress=False)
    written = read_nifti(out)
    seg = read_nifti(subject / "BraTS20_Training_002_seg.nii.gz")
    assert written.shape == seg.shape == (64, 64, 48)
    np.testing.assert_allclose(written.affine, seg.affine)
    assert set(np.unique(written.array)) <= {0, 1, 2, 4}
    # on disk: the source file's own voxel order and affine (BraTS stores LPS)
    import nibabel as nib

    raw_written = nib.load(out)
    raw_seg = nib.load(subject / "BraTS20_Training_002_seg.nii.gz")
    np.testing.assert_allclose(raw_written.affine, raw_seg.affine)
    assert nib.aff2axcodes(raw_written.affine) == nib.aff2axcodes(raw_seg.affine)
    np.testing.assert_array_equal(np.asarray(raw_written.dataobj), volume.array)
    # from the cache too, same answer
    cached = brats.predict_subject(model, data / "cache" / "BraTS20_Training_002.h5",
                                   patch_shape=(32, 32, 32), progress=False)
    np.testing.assert_array_equal(cached.array, volume.array)
    with pytest.raises(LayoutError, match="missing flair, t1, t1ce, t2"):
        brats.predict_subject(model, tmp_path, patch_shape=(32, 32, 32))
    (tmp_path / "empty").mkdir()
    with pytest.raises(LayoutError, match="not a BraTS subject folder"):
        brats.predict_subject(model, tmp_path / "empty", patch_shape=(32, 32, 32))


@pytest.mark.slow
def test_evaluate_reports_dice_and_hd95_per_region(data):
    subjects = brats.cached_subjects(data / "cache")
    model = brats.build_model(patch_shape=PATCH, depth=2, base_filters=2)
    table = brats.evaluate(model, subjects[:1], patch_shape=(32, 32, 32), progress=False)
    assert list(table.columns) == ["subject", "seconds", "dice_wt", "dice_tc", "dice_et",
                                   "hd95_wt", "hd95_tc", "hd95_et"]
    assert 0.0 <= table.dice_wt[0] <= 1.0


@pytest.mark.slow
def test_medimg_predict_brats_command(data, tmp_path, capsys):
    from medimg.cli import main

    model = brats.build_model(patch_shape=PATCH, depth=2, base_filters=2)
    model.save(tmp_path / "model.keras")
    cached = data / "cache" / "BraTS20_Training_003.h5"
    out = tmp_path / "seg.nii.gz"
    code = main(["predict", "brats", "--model", str(tmp_path / "model.keras"), "--subject",
                 str(cached), "--out", str(out), "--profile", "smoke"])
    assert code == 0 and out.is_file()
    assert "voxels per label" in capsys.readouterr().out
    wrong = brats.build_model(patch_shape=PATCH, depth=2, base_filters=2, targets="classes")
    wrong.save(tmp_path / "wrong.keras")
    code = main(["predict", "brats", "--model", str(tmp_path / "wrong.keras"), "--subject",
                 str(cached), "--out", str(tmp_path / "x.nii.gz"), "--profile", "smoke"])
    assert code == 2
    assert "outputs 4 channels but targets='regions' needs 3" in capsys.readouterr().err


def test_mixed_precision_and_xla_switches():
    import keras

    mixed = brats.build_model(patch_shape=PATCH, depth=2, base_filters=2, mixed_precision=True,
                              xla=True)
    assert keras.mixed_precision.dtype_policy().name == "float32"  # global policy untouched
    assert mixed.layers[1].dtype_policy.name == "mixed_float16"
    assert mixed.output.dtype == "float32"
    assert mixed.jit_compile is True
    plain = brats.build_model(patch_shape=PATCH, depth=2, base_filters=2)
    assert plain.layers[1].dtype_policy.name == "float32" and not plain.jit_compile


def test_predicted_labels_land_on_the_source_voxels(data, tmp_path):
    """A perfect prediction, written back, equals the source segmentation voxel for voxel."""
    import nibabel as nib

    from medimg.io import Volume

    attrs = brats.read_h5(data / "cache" / "BraTS20_Training_001.h5")[2]
    _, label, _ = brats.read_h5(data / "cache" / "BraTS20_Training_001.h5")
    full = brats.uncrop(label, attrs, brats_labels=True)
    back = brats._reorient(full, str(attrs["source_axcodes"]))
    raw = nib.load(data / "raw" / "MICCAI_BraTS2020_TrainingData" / "BraTS20_Training_001"
                   / "BraTS20_Training_001_seg.nii.gz")
    np.testing.assert_allclose(back.affine, raw.affine)
    np.testing.assert_array_equal(back.array, np.asarray(raw.dataobj))
    assert isinstance(back, Volume)


def test_figures_of_the_chapter(data):
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from medimg import viz

    image, label, _ = brats.read_h5(data / "cache" / "BraTS20_Training_001.h5")
    fig = viz.segmentation_slices(image, label, np.zeros_like(label), n_slices=2,
                                  channel_names=brats.SEQUENCES)
    assert len(fig.axes) == 6
    assert "flair" in fig.axes[0].get_title()
    history = pd.DataFrame({"epoch": [1, 2], "loss": [0.9, 0.5], "val_loss": [1.0, 0.6],
                            "dice_wt": [0.3, 0.6], "val_dice_wt": [0.2, 0.5]})
    fig = viz.training_curves(history)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "dice_wt"]
    assert len(fig.axes[0].lines) == 2  # training and validation


@pytest.mark.slow
def test_medimg_train_brats_command(data, tmp_path, capsys):
    import shutil as _shutil

    from medimg.cli import main

    raw = tmp_path / "raw"
    _shutil.copytree(data / "raw", raw)
    code = main(["train", "brats", "--root", str(raw), "--profile", "smoke", "--epochs", "1",
                 "--out", str(tmp_path / "out")])
    assert code == 0
    out = capsys.readouterr().out
    assert "held-out Dice: WT" in out
    assert (tmp_path / "out" / "brats_unet3d.keras").is_file()
    assert (tmp_path / "raw-h5" / "manifest.csv").is_file()  # the shared cache location
