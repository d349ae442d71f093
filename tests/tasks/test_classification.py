"""tasks.classification: the generic image + features classifier, step by step, on arrays
(no data set): split by patient, the tf.data pipeline and augmentation, the model steps,
evaluation per patient with intervals, the baseline, the paired comparison and run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from medimg.errors import ConfigError, InvalidImageError, LayoutError
from medimg.intensity import clahe
from medimg.tasks import classification

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")


def _table(n_patients=200, images_per_patient=1, positive_rate=0.3, seed=0):
    rng = np.random.default_rng(seed)
    target = (rng.random(n_patients) < positive_rate).astype("int8")
    table = pd.DataFrame({"patientId": [f"p{i:04d}" for i in range(n_patients)],
                          "Target": target,
                          "view": np.where(rng.random(n_patients) < 0.5, "AP", "PA")})
    return table.loc[table.index.repeat(images_per_patient)].reset_index(drop=True)


# --------------------------------------------------------------------------- split
def test_split_by_patient_stratified_with_named_parts():
    table = _table(400, images_per_patient=2)
    out = classification.split(table, validation_fraction=0.15, test_fraction=0.2, seed=3)
    assert list(out.split.cat.categories) == ["train", "validation", "test"]
    assert out.groupby("patientId").split.nunique().max() == 1  # a patient stays in one part
    patients = out.drop_duplicates("patientId")
    assert patients.split.value_counts()["test"] == pytest.approx(80, abs=2)
    rates = patients.groupby("split", observed=True).Target.mean()
    assert rates.max() - rates.min() < 0.02
    again = classification.split(table, validation_fraction=0.15, test_fraction=0.2, seed=3)
    assert again.split.tolist() == out.split.tolist()


def test_split_refuses_bad_targets_and_parts_without_a_class():
    table = _table(30)
    with pytest.raises(LayoutError, match="only 0 and 1"):
        classification.split(table.assign(Target=table.Target * 2))
    with pytest.raises(LayoutError, match="no target column"):
        classification.split(table.drop(columns="Target"))
    two_positives = table.assign(Target=[1, 1] + [0] * 28)  # too few to reach every part
    with pytest.raises(LayoutError, match="AUC is undefined"):
        classification.split(two_positives, validation_fraction=0.2, test_fraction=0.2)
    with pytest.raises(ConfigError):
        classification.split(table, validation_fraction=0.6, test_fraction=0.5)


# --------------------------------------------------------------------------- tf.data
@pytest.fixture
def arrays(rng):
    n = 24
    images = rng.integers(0, 256, (n, 32, 32), dtype=np.uint8)
    features = rng.random((n, 3)).astype(np.float32)
    targets = (np.arange(n) % 3 == 0).astype(np.float32)
    return images, features, targets


def test_dataset_batches_in_row_order(arrays):
    images, features, targets = arrays
    ds = classification.make_dataset(images, features, targets, batch_size=5)
    (image, feats), target = next(iter(ds))
    assert image.shape == (5, 32, 32, 1) and image.dtype == tf.float32
    np.testing.assert_allclose(image[..., 0].numpy(), images[:5] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(feats.numpy(), features[:5])
    np.testing.assert_array_equal(target.numpy(), targets[:5])
    assert [int(t.shape[0]) for _, t in ds] == [5, 5, 5, 5, 4]
    inputs_only = next(iter(classification.make_dataset(images, features, batch_size=5)))
    assert len(inputs_only) == 1 and len(inputs_only[0]) == 2  # ((image, features),)
    floats = classification.make_dataset(images.astype(np.float32), None, targets)
    (image, feats), _ = next(iter(floats))
    assert float(tf.reduce_max(image)) > 1.0 and feats.shape == (24, 0)  # used as given


def test_dataset_shuffles_each_epoch_and_augments(arrays):
    images, features, targets = arrays
    ds = classification.make_dataset(images, features, targets, batch_size=64, shuffle=True,
                                     seed=1)
    (_, f1), t1 = next(iter(ds))
    (_, f2), _ = next(iter(ds))
    assert sorted(t1.numpy()) == sorted(targets)
    assert not np.array_equal(f1.numpy(), f2.numpy())  # a new order each epoch ...
    order = np.argsort(f1.numpy()[:, 0])
    np.testing.assert_array_equal(t1.numpy()[order], targets[np.argsort(features[:, 0])])
    plain = classification.make_dataset(images, features, targets, batch_size=64)
    augmented = classification.make_dataset(images, features, targets, batch_size=64,
                                            augment=True, seed=1)
    (a, _), _ = next(iter(plain))
    (b, fb), tb = next(iter(augmented))
    (c, _), _ = next(iter(augmented))
    assert float(tf.reduce_max(b)) <= 1.0 and float(tf.reduce_min(b)) >= 0.0
    assert 0.005 < float(tf.reduce_mean(tf.abs(a - b))) < 0.35  # changed, not replaced
    assert not np.allclose(b.numpy(), c.numpy())  # new draws every epoch
    np.testing.assert_array_equal(fb.numpy(), features)  # features and targets untouched
    np.testing.assert_array_equal(tb.numpy(), targets)


def test_augment_is_small_seeded_and_never_flips():
    image = np.zeros((1, 64, 64, 1), np.float32)
    image[0, 20:44, 8:24] = 1.0  # a bright block on the left
    a = classification.augment(image, (1, 2)).numpy()
    b = classification.augment(image, (1, 2)).numpy()
    c = classification.augment(image, (3, 4)).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    left, right = a[0, :, :32].sum(), a[0, :, 32:].sum()
    assert left > 5 * right  # still on the left: no left-right flip
    assert 0.0 <= a.min() and a.max() <= 1.0


def test_clahe_in_the_pipeline_equals_opencv(arrays):
    images, features, targets = arrays
    ds = classification.make_dataset(images, features, targets, batch_size=64,
                                     clahe=(4.0, (8, 8)))
    (image, _), _ = next(iter(ds))
    expected = clahe(images, 4.0, (8, 8)) / 255.0
    assert float(np.abs(image[..., 0].numpy() - expected).max()) <= 1.0 / 255 + 1e-6


def test_dataset_refuses_mismatched_arrays(arrays):
    images, features, targets = arrays
    with pytest.raises(InvalidImageError, match="targets"):
        classification.make_dataset(images, features, targets[:-1])
    with pytest.raises(InvalidImageError, match="feature rows"):
        classification.make_dataset(images, features[:-1], targets)
    with pytest.raises(InvalidImageError, match="NaN"):
        classification.make_dataset(images, np.full_like(features, np.nan), targets)
    with pytest.raises(InvalidImageError, match="shape"):
        classification.make_dataset(images[0], features, targets)


# --------------------------------------------------------------------------- model
def test_build_model_is_uncompiled_and_compile_model_matches_a_sigmoid(arrays):
    model = classification.build_model((32, 32, 1), 3, filters=[4, 8], dropout=0.0)
    assert not model.compiled
    assert [tuple(i.shape) for i in model.inputs] == [(None, 32, 32, 1), (None, 3)]
    classification.compile_model(model, learning_rate=0.01)
    assert model.compiled
    assert isinstance(model.loss, keras.losses.BinaryCrossentropy)
    assert not model.loss.get_config()["from_logits"]
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    with pytest.raises(ConfigError, match="unknown setting"):
        classification.build_model((32, 32, 1), 3, filterz=[4])


def test_predict_follows_the_rows(arrays):
    images, features, _ = arrays
    keras.utils.set_random_seed(0)
    model = classification.build_model((32, 32, 1), 3, filters=[4], batch_norm=False,
                                       dropout=0.0)
    scores = classification.predict(model, images, features, batch_size=7)
    direct = model([images[..., None].astype(np.float32) / 255.0, features]).numpy()
    assert scores.shape == (24,) and scores.dtype == np.float64
    np.testing.assert_allclose(scores, direct.reshape(-1), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- evaluation
def test_choose_threshold_fixed_or_youden_on_the_given_scores():
    truth, scores = [0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]
    assert classification.choose_threshold(truth, scores, 0.7) == 0.7
    assert classification.choose_threshold(truth, scores) == pytest.approx(0.3)


def test_evaluate_counts_patients_not_images():
    rng = np.random.default_rng(0)
    table = _table(120, images_per_patient=3, seed=1)
    patient_score = table.Target * 0.4 + np.repeat(rng.random(120), 3) * 0.8
    scores = patient_score + rng.normal(0, 0.01, len(table))  # images of a patient alike
    per_image = classification.evaluate(table.Target, scores, threshold=0.5, n_bootstrap=200)
    per_patient = classification.evaluate(table.Target, scores, threshold=0.5,
                                          groups=table.patientId, by=table.view,
                                          n_bootstrap=200)
    assert per_image["n"] == 360 and per_patient["n"] == 120
    patients = pd.DataFrame({"t": table.Target, "s": scores, "g": table.patientId}).groupby("g")
    assert per_patient["auc"] == pytest.approx(roc_auc_score(patients.t.max(), patients.s.mean()))
    assert per_patient["auc_low"] < per_patient["auc"] < per_patient["auc_high"]
    # three near-copies per patient are not three patients: a wider, honest interval
    assert (per_patient["auc_high"] - per_patient["auc_low"]
            > per_image["auc_high"] - per_image["auc_low"])
    _, fp, fn, tp = per_patient["confusion"].to_numpy().ravel()
    assert per_patient["sensitivity"] == tp / (tp + fn)
    assert per_patient["sensitivity_low"] < per_patient["sensitivity"] < per_patient[
        "sensitivity_high"]
    by = per_patient["by"].set_index("group")
    assert set(by.index) == {"AP", "PA"} and by.n.sum() == 120
    assert by.false_positive.sum() == fp and by.false_negative.sum() == fn


def test_compare_auc_is_paired():
    rng = np.random.default_rng(2)
    truth = np.arange(200) % 2
    good = truth + rng.normal(0, 0.6, 200)
    weak = truth + rng.normal(0, 3.0, 200)
    same = classification.compare_auc(truth, good, good, n_bootstrap=200)
    assert same["difference"] == 0 and same["low"] == 0 and same["high"] == 0
    better = classification.compare_auc(truth, good, weak, n_bootstrap=500)
    assert better["difference"] == pytest.approx(roc_auc_score(truth, good)
                                                 - roc_auc_score(truth, weak))
    assert 0 < better["low"] < better["difference"] < better["high"]
    assert better["fraction_better"] > 0.95
    assert better["auc"] == pytest.approx(roc_auc_score(truth, good))


def test_fit_baseline_uses_the_features_only():
    rng = np.random.default_rng(4)
    n = 400
    table = pd.DataFrame({"a": rng.integers(0, 2, n).astype(float), "b": rng.random(n)})
    table["Target"] = ((table.a + rng.normal(0, 0.5, n)) > 0.5).astype(int)
    model = classification.fit_baseline(table.iloc[:300], ["a", "b"])
    held_out = model.predict_proba(table.iloc[300:][["a", "b"]].astype(np.float32))[:, 1]
    assert roc_auc_score(table.Target.iloc[300:], held_out) > 0.75
    with pytest.raises(LayoutError, match="missing column"):
        classification.fit_baseline(table, ["a", "c"])
    with pytest.raises(LayoutError, match="one class"):
        classification.fit_baseline(table.assign(Target=0), ["a"])


def test_headline_names_every_part():
    truth = np.arange(40) % 2
    scores = truth * 0.3 + np.linspace(0, 0.6, 40)
    view = np.where(np.arange(40) < 20, "AP", "PA")
    test = classification.evaluate(truth, scores, threshold=0.5, by=view, n_bootstrap=50)
    figures = classification.headline(
        test, validation=test, baseline=test,
        comparison=classification.compare_auc(truth, scores, scores, n_bootstrap=50),
        counts={"train": (100, 30)})
    for key in ("test_auc", "test_auc_low", "test_auc_high", "n_test", "n_test_positive",
                "validation_auc", "n_validation", "baseline_auc", "baseline_auc_low",
                "auc_gain", "auc_gain_high", "test_sensitivity_low", "threshold",
                "test_auc_ap", "n_test_pa", "n_train", "n_train_positive"):
        assert key in figures, key
    assert figures["n_train"] == 100 and figures["auc_gain"] == 0


@pytest.mark.slow
def test_run_learns_a_toy_task(tmp_path):
    """run(): a bright square marks positives; a feature carries part of the label, so the
    baseline is better than chance and the image model better still."""
    from medimg.config import load_config

    rng = np.random.default_rng(0)
    table = _table(160, seed=5)
    n = len(table)
    images = rng.normal(90, 20, (n, 32, 32)).clip(0, 255)
    images[table.Target.to_numpy() == 1, 10:20, 10:20] += 80
    table["hint"] = np.where(rng.random(n) < 0.7, table.Target, 1 - table.Target).astype(
        np.float32)
    cfg = load_config("rsna", "smoke", overrides={
        "model": {"filters": [8, 16]}, "train": {"epochs": 8, "batch_size": 16,
                                                 "patience": 0, "learning_rate": 0.003},
        "evaluate": {"n_bootstrap": 100}})
    result = classification.run(cfg, table, images.astype(np.uint8), feature_columns=["hint"],
                                by="view", run_dir=tmp_path, verbose=0)
    f = result["figures"]
    assert f["n_test"] == (result["table"].split == "test").sum()
    assert 0.55 < f["baseline_auc"] < 0.85
    assert f["test_auc"] > 0.9 and f["auc_gain"] > 0
    assert (tmp_path / "model.keras").is_file() and (tmp_path / "history.csv").is_file()
