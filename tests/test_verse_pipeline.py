"""VerSe end to end: whole-scan prediction geometry, training, evaluation, NIfTI output,
overlays."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medimg.datasets import verse
from medimg.io import read_nifti
from medimg.synthetic.verse import make_verse

WINDOW = (400.0, 1800.0)


class BoneModel:
    """A stand-in for a Keras model: "spine" wherever the bone window says > 300 HU."""

    layers = ()
    output_shape = (None, None, None, 1)

    def predict_on_batch(self, x):
        threshold = (300.0 - (WINDOW[0] - WINDOW[1] / 2)) / WINDOW[1]
        return (np.asarray(x) > threshold).astype(np.float32)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = tmp_path_factory.mktemp("verse-pipeline")
    make_verse(path, 4, seed=5, fov_mm=(80.0, 90.0, 100.0), n_unlabelled=1)
    return path


def test_prediction_is_restacked_on_the_file_grid(tmp_path, rng):
    """No resampling (1 mm scan, 1 mm slices): the prediction is exactly the rule applied
    to the file's own voxels, in the file's orientation and affine."""
    ct = rng.integers(-1000, 1500, (9, 10, 11)).astype(np.int16)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])  # LPS on disk
    affine[:3, 3] = [4, 5, 6]
    path = tmp_path / "sub-p01_ct.nii.gz"
    img = nib.Nifti1Image(ct, affine)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))
    for plane in ("sagittal", "coronal", "axial"):
        prediction = verse.predict_scan(BoneModel(), str(path), plane=plane, spacing_mm=1.0,
                                        window=WINDOW)
        assert prediction.shape == ct.shape
        np.testing.assert_allclose(prediction.affine, affine)
        np.testing.assert_array_equal(prediction.array, (ct > 300).astype(np.uint8))


def test_prediction_of_resampled_scans(root):
    subjects = verse.find_subjects(root)
    for row in subjects.itertuples(index=False):
        prediction, probability = verse.predict_scan(
            BoneModel(), row._asdict(), spacing_mm=1.7, window=WINDOW,
            return_probabilities=True)
        disk = nib.load(row.ct_path)
        assert prediction.shape == disk.shape == probability.shape
        np.testing.assert_allclose(prediction.affine, disk.affine)
        bone = np.asarray(disk.dataobj) > 300
        inter = np.count_nonzero(bone & (prediction.array > 0))
        assert 2 * inter / (bone.sum() + prediction.array.astype(bool).sum()) > 0.75


def test_evaluate_scores_and_writes_nifti(root, tmp_path):
    subjects = verse.find_subjects(root)
    scores = verse.evaluate(BoneModel(), subjects, out_dir=tmp_path, spacing_mm=1.5,
                            window=WINDOW, progress=False)
    assert list(scores.scan) == list(subjects.scan)
    labelled = scores[subjects.has_mask.values]
    # bone is (nearly) all vertebra in the phantoms, so thresholding scores well
    assert labelled.dice.between(0.6, 1.0).all()
    assert scores[~subjects.has_mask.values].dice.isna().all()
    for row, score in zip(subjects.itertuples(), scores.itertuples(), strict=True):
        written = nib.load(score.prediction_path)
        ct = nib.load(row.ct_path)
        assert written.shape == ct.shape
        np.testing.assert_allclose(written.affine, ct.affine, atol=1e-5)
        assert written.get_data_dtype() == np.uint8


def test_example_slices(root):
    subjects = verse.find_subjects(root)
    row = subjects[subjects.has_mask].iloc[0]
    ct, mask = verse.load_scan(row)
    prediction = verse.predict_scan(BoneModel(), row, spacing_mm=1.5, window=WINDOW)
    views = verse.example_slices(ct, mask, prediction, n=3)
    assert len(views) == 3
    for view in views:
        assert view["image"].shape == view["truth"].shape == view["prediction"].shape
        assert view["truth"].any()
    # the reoriented prediction lines up with the truth
    pred = np.stack([v["prediction"] for v in views]) > 0
    truth = np.stack([v["truth"] for v in views]) > 0
    assert np.count_nonzero(pred & truth) > 0.6 * np.count_nonzero(truth)


def test_overlay_draws_layers():
    import matplotlib

    matplotlib.use("Agg")
    from medimg.viz import overlay

    image = np.zeros((20, 30))
    truth = np.zeros((20, 30), np.uint8)
    truth[5:10, 5:10] = 20
    fig = overlay(image, truth, truth > 0, window=(400, 1800), labels=True, title="t")
    ax = fig.axes[0]
    assert len(ax.images) == 3  # image, label fill, prediction fill
    assert ax.get_title() == "t"
    fig2 = overlay(image, truth)
    assert len(fig2.axes[0].images) == 1
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.slow
def test_train_predict_save_load(root, tmp_path):
    import keras

    subjects = verse.split_subjects(verse.find_subjects(root), seed=0)
    kwargs = dict(spacing_mm=2.0, slice_shape=(48, 48), batch_size=8, n_jobs=1,
                  progress=False)
    train = verse.slice_dataset(subjects[subjects.fold == "train"], tmp_path / "cache",
                                training=True, seed=0, **kwargs)
    val = verse.slice_dataset(subjects[subjects.fold == "validation"], tmp_path / "cache",
                              training=False, **kwargs)
    model = verse.build_model(depth=2, base_filters=4, seed=0)
    history = verse.fit(model, train, val, epochs=2, verbose=0,
                        checkpoint=tmp_path / "best.keras")
    assert list(history.epoch) == [1, 2]
    assert {"loss", "dice", "val_loss", "val_dice", "seconds"} <= set(history.columns)
    assert np.isfinite(history.loss).all()
    assert history.loss.iloc[-1] < history.loss.iloc[0]
    test = subjects[subjects.fold == "test"]
    scores = verse.evaluate(model, test, out_dir=tmp_path / "pred", spacing_mm=2.0,
                            progress=False)
    assert scores.dice.between(0, 1).all()
    restored = keras.models.load_model(tmp_path / "best.keras",
                                       custom_objects=verse.custom_objects())
    row = test.iloc[0]
    a = verse.predict_scan(restored, row, spacing_mm=2.0)
    assert a.shape == read_nifti(row.ct_path, canonical=False).shape


@pytest.mark.slow
def test_vertebra_target(root, tmp_path):
    subjects = verse.split_subjects(verse.find_subjects(root), seed=0)
    train = verse.slice_dataset(subjects[subjects.fold == "train"], tmp_path / "cache",
                                target="vertebrae", spacing_mm=2.0, slice_shape=(32, 32),
                                batch_size=8, n_jobs=1, progress=False)
    model = verse.build_model(target="vertebrae", depth=2, base_filters=4, seed=0)
    assert model.output_shape[-1] == verse.N_VERTEBRA_CLASSES
    verse.fit(model, train.take(2), epochs=1, verbose=0)
    row = subjects[subjects.fold == "test"].iloc[0]
    prediction = verse.predict_scan(model, row, spacing_mm=2.0)
    assert set(np.unique(prediction.array).tolist()) <= set(range(verse.N_VERTEBRA_CLASSES))
    scores = verse.evaluate(model, subjects[subjects.fold == "test"], spacing_mm=2.0,
                            progress=False)
    assert scores.vertebra_dice.between(0, 1).all()
