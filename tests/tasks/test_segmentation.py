"""medimg.tasks.segmentation: plan, preprocessing, patches, prediction on each case's own
grid, evaluation, and the command line on a phantom data set nobody hand-labelled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from medimg.config import load_config
from medimg.datasets import msd
from medimg.errors import ConfigError, InvalidImageError, MedimgError
from medimg.synthetic.msd import make_msd
from medimg.tasks import segmentation as seg


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return make_msd(tmp_path_factory.mktemp("phantom"), seed=11, n_cases=5, n_test=1,
                    shape=(32, 32, 10))


@pytest.fixture(scope="module")
def prints(phantom):
    cases = msd.find_cases(phantom)
    return seg.fingerprint(cases[cases.label.notna()].assign().pipe(_keep_attrs, cases),
                           n_jobs=1, progress=False)


def _keep_attrs(frame, source):
    frame.attrs.update(source.attrs)
    return frame


def _oracle_dataset(root, phantom, *, name="noNorm"):
    """A copy of the phantom whose one channel is the label itself (values 1, 11, 21),
    so a model that reads the label from the image predicts perfectly: every error is
    then the pipeline's geometry, not learning."""
    folder = root / "Dataset901_Oracle"
    for sub in ("imagesTr", "labelsTr"):
        (folder / sub).mkdir(parents=True)
    for label in sorted((phantom / "labelsTr").glob("*.nii.gz")):
        img = nib.load(label)
        values = np.asarray(img.dataobj).astype(np.float32)
        case = label.name.replace(".nii.gz", "")
        nib.save(nib.Nifti1Image(values * 10 + 1, img.affine),
                 folder / "imagesTr" / f"{case}_0000.nii.gz")
        nib.save(nib.Nifti1Image(values.astype(np.uint8), img.affine),
                 folder / "labelsTr" / label.name)
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": name}, "labels": {"background": 0, "PZ": 1, "TZ": 2},
        "file_ending": ".nii.gz", "numTraining": 5}))
    return folder


def _oracle_model(plan):
    """Softmax 'network' reading the class from the intensity (x = 10 * value + 1)."""
    values = np.asarray(plan.class_values)

    def predict(batch):
        value = np.rint((batch[..., 0] - 1) / 10)
        onehot = (value[..., None] == values).astype(np.float32)
        return onehot

    return predict


# --------------------------------------------------------------------------- plan

def test_fingerprint_reads_every_case_in_canonical_order(prints, phantom):
    assert len(prints) == 5
    assert prints["spacing"].map(len).eq(3).all()
    for row in prints.itertuples():
        assert row.spacing[2] > 2 * row.spacing[0]  # the phantom is anisotropic
    assert set(prints["axcodes"]) > {"RAS"}  # stored in several orientations


def test_plan_uses_the_median_spacing_and_the_anisotropy_rule(prints):
    plan = seg.make_plan(prints, max_patch_voxels=4096, base_filters=4, max_depth=3)
    spacings = np.asarray(prints["spacing"].tolist())
    np.testing.assert_allclose(plan.target_spacing[:2], np.median(spacings, axis=0)[:2])
    assert plan.target_spacing[2] <= np.median(spacings[:, 2]) + 1e-9
    assert plan.target_spacing[2] >= max(plan.target_spacing[:2])
    assert all(p % 2 ** (plan.depth - 1) == 0 for p in plan.patch_shape)
    assert np.prod(plan.patch_shape) <= 4096
    assert plan.activation == "softmax" and plan.outputs == ["background", "PZ", "TZ"]
    assert [n["scheme"] for n in plan.normalization] == ["zscore", "zscore"]


def test_plan_respects_the_memory_budget(prints):
    small = seg.make_plan(prints, memory_budget_mb=5, base_filters=8)
    large = seg.make_plan(prints, memory_budget_mb=500, base_filters=8)
    assert np.prod(small.patch_shape) < np.prod(large.patch_shape)
    assert seg.estimate_memory_mb(small.patch_shape, depth=small.depth, base_filters=8,
                                  batch_size=2, n_channels=2) <= 5 or max(small.patch_shape) <= 8


def test_explicit_patch_and_bad_settings(prints):
    plan = seg.make_plan(prints, patch_shape=[16, 16, 8], max_depth=4)
    # depth 3 would leave 8 / 2**2 = 2 voxels at the bottom; 2 keeps at least 4
    assert plan.patch_shape == (16, 16, 8) and plan.depth == 2
    with pytest.raises(ConfigError, match="3 sizes"):
        seg.make_plan(prints, patch_shape=[16, 16])
    with pytest.raises(ConfigError, match="dimensionality"):
        seg.make_plan(prints, dimensionality="4d")
    with pytest.raises(ConfigError, match="slice_axis"):
        seg.make_plan(prints, dimensionality="2d", slice_axis="oblique")
    with pytest.raises(ConfigError, match="positive"):
        seg.make_plan(prints, target_spacing=[1, 0, 1])


def test_two_d_plan_slices_across_the_coarse_axis(prints):
    plan = seg.make_plan(prints, dimensionality="2d", max_patch_voxels=1024, base_filters=4)
    assert plan.slice_axis == 2 and len(plan.patch_shape) == 2


def test_a_2d_data_set_given_to_a_3d_plan_is_refused(prints):
    flat = prints.copy()
    flat["shape"] = [[s[0], s[1], 1] for s in prints["shape"]]
    flat.attrs.update(prints.attrs)
    with pytest.raises(InvalidImageError, match="2d"):
        seg.make_plan(flat)


def test_plan_round_trips_through_json(prints, tmp_path):
    plan = seg.make_plan(prints, max_patch_voxels=4096)
    path = plan.save(tmp_path / "plan.json")
    again = seg.Plan.load(tmp_path)
    assert again == plan and path.is_file()
    bad = json.loads(path.read_text())
    bad["version"] = 99
    path.write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="version"):
        seg.Plan.load(path)


def test_ct_channels_get_data_set_statistics(tmp_path, phantom):
    folder = _oracle_dataset(tmp_path, phantom, name="CT")
    cases = msd.find_cases(folder)
    prints = seg.fingerprint(cases, n_jobs=1, progress=False)
    plan = seg.make_plan(prints)
    entry = plan.normalization[0]
    assert entry["scheme"] == "ct"
    # foreground voxels hold 11 or 21: the clip range and mean come from them alone
    assert 11 - 1e-6 <= entry["low"] <= entry["high"] <= 21 + 1e-6
    assert 11 < entry["mean"] < 21


# --------------------------------------------------------------------------- geometry

@pytest.mark.parametrize("spacing", [None, (0.9, 0.9, 2.0)])
def test_prediction_goes_back_to_each_case_own_grid(tmp_path, phantom, spacing):
    """A perfect model must give back the truth on the file's own grid, whatever the
    storage orientation; with resampling, nearly (only label borders may move)."""
    folder = _oracle_dataset(tmp_path, phantom)
    cases = msd.find_cases(folder)
    prints = seg.fingerprint(cases, n_jobs=1, progress=False)
    described = cases.attrs["dataset"]
    for row in cases.to_dict("records"):
        image, _ = msd.load_case(row, described)
        # None: the plan's spacing is the case's own (no interpolation: exact)
        plan = seg.make_plan(prints, patch_shape=[16, 16, 8], max_depth=2,
                             target_spacing=spacing or image.spacing, crop_to_nonzero=True)
        model = _oracle_model(plan)
        predicted = seg.to_source_grid(seg.predict_case(model, plan, image, overlap=0.25))
        truth = nib.load(row["label"])
        assert predicted.shape == truth.shape
        np.testing.assert_allclose(predicted.affine, truth.affine)
        truth_values = np.asarray(truth.dataobj)
        if spacing is None:
            np.testing.assert_array_equal(predicted.array, truth_values)
        else:
            for value in (1, 2):
                a, b = predicted.array == value, truth_values == value
                assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.85


def test_regions_are_painted_in_order():
    plan = seg.Plan(dataset={"name": "x", "channel_names": ["MR"], "labels": {}},
                    dimensionality="3d", slice_axis=None, target_spacing=(1, 1, 1),
                    crop_to_nonzero=False, use_nonzero_mask=False,
                    normalization=[{"channel": "MR", "scheme": "none"}], bias_correction=False,
                    n4_shrink=4, n4_iterations=[1], class_values=[0, 1, 2, 4],
                    outputs=["WT", "TC", "ET"], target_table=[[0] * 3] * 4,
                    activation="sigmoid", regions_class_order=[2, 1, 4], patch_shape=(4, 4, 4),
                    depth=1, base_filters=2, batch_size=1)
    probabilities = np.zeros((1, 1, 4, 3), np.float32)
    probabilities[0, 0, 1] = [0.9, 0.1, 0.1]   # WT only -> oedema 2
    probabilities[0, 0, 2] = [0.9, 0.8, 0.1]   # WT and TC -> core 1
    probabilities[0, 0, 3] = [0.9, 0.8, 0.7]   # all three -> enhancing 4
    labels = seg.probabilities_to_labels(probabilities, plan)
    assert labels[0, 0].tolist() == [0, 2, 1, 4]


# --------------------------------------------------------------------------- cache + patches

@pytest.fixture(scope="module")
def prepared(phantom, tmp_path_factory, prints):
    cases = msd.find_cases(phantom)
    labelled = cases[cases.label.notna()]
    labelled.attrs.update(cases.attrs)
    plan = seg.make_plan(prints, patch_shape=[16, 16, 8], max_depth=2, base_filters=4)
    root = tmp_path_factory.mktemp("cache")
    manifest = seg.preprocess(labelled, plan, root, n_jobs=1, progress=False)
    return plan, manifest, root, labelled


def test_preprocess_caches_and_resumes(prepared):
    plan, manifest, root, labelled = prepared
    assert manifest["status"].tolist() == ["ok"] * len(labelled)
    again = seg.preprocess(labelled, plan, root, n_jobs=1, progress=False)
    assert again["status"].tolist() == ["cached"] * len(labelled)
    image, label, attrs = seg.read_case(manifest["path"].iloc[0])
    assert image.dtype == np.float32 and image.shape[-1] == 2
    assert label.dtype == np.uint8 and set(np.unique(label)) <= {0, 1, 2}
    # the grid keeps the case's extent exactly, so the spacing is extent / round(voxels):
    # within half a voxel of the plan's over ~10 slices
    np.testing.assert_allclose(attrs["spacing"], plan.target_spacing, rtol=0.06)
    # a changed setting is another cache folder: nothing stale is reused
    other = seg.make_plan(prepared[0] and _prints_of(labelled), patch_shape=[16, 16, 8],
                          max_depth=2, target_spacing=[1.0, 1.0, 3.0])
    assert seg.cache_dir_for(root, other) != seg.cache_dir_for(root, plan)


def _prints_of(labelled):
    return seg.fingerprint(labelled, n_jobs=1, progress=False)


def test_patch_dataset_is_deterministic_and_padded(prepared):
    import tensorflow as tf

    plan, manifest, _, _ = prepared
    cached = seg.cached_cases(manifest)
    first = seg.patch_dataset(cached, plan, patches_per_case=4, batch_size=2, seed=3)
    second = seg.patch_dataset(cached, plan, patches_per_case=4, batch_size=2, seed=3)
    a = [x.numpy() for x, _ in first.take(3)]
    b = [x.numpy() for x, _ in second.take(3)]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    images, targets = next(iter(first))
    assert images.shape == (2, 16, 16, 8, 2) and targets.shape == (2, 16, 16, 8, 3)
    np.testing.assert_allclose(tf.reduce_sum(targets, -1).numpy(), 1.0)  # one-hot
    assert int(first.cardinality()) == len(cached) * 4 // 2
    # a patch larger than the volume is padded, not refused
    big = seg.Plan.from_dict({**plan.to_dict(), "patch_shape": [64, 64, 32]})
    reader = seg.CaseReader(cached["path"], big)
    image, label = reader.sample(0, seed=1)
    assert image.shape == (64, 64, 32, 2) and label.shape == (64, 64, 32)
    assert (image == 0).any()


def test_foreground_oversampling_and_the_background_rule(prepared):
    plan, manifest, _, _ = prepared
    cached = seg.cached_cases(manifest)
    always = seg.CaseReader(cached["path"], plan, foreground_fraction=1.0)
    assert all((always.sample(i % len(cached), seed=i)[1] > 0).any() for i in range(20))
    ruled = seg.CaseReader(cached["path"], plan, max_background=0.9)
    for i in range(20):
        _, label = ruled.sample(ruled.usable[i % len(ruled.usable)], seed=i)
        assert (label == 0).mean() <= 0.9
    with pytest.raises(ConfigError):
        seg.CaseReader(cached["path"], plan, foreground_fraction=1.5)


# --------------------------------------------------------------------------- evaluation

def test_score_case_conventions():
    truth = np.zeros((8, 8, 8), np.uint8)
    truth[2:5, 2:5, 2:5] = 1
    prediction = truth.copy()
    rows = {r["label"]: r for r in seg.score_case(prediction, truth, {"A": (1,), "B": (2,)})}
    assert rows["A"]["dice"] == 1.0 and rows["A"]["hd95_mm"] == 0.0
    assert rows["B"]["dice"] == 1.0 and np.isnan(rows["B"]["hd95_mm"])  # empty vs empty
    prediction[:] = 0
    rows = {r["label"]: r for r in seg.score_case(prediction, truth, {"A": (1,)})}
    assert rows["A"]["dice"] == 0.0
    with pytest.raises(InvalidImageError):
        seg.score_case(prediction[:-1], truth, {"A": (1,)})


def test_summary_reports_cases_with_the_label_apart():
    scores = pd.DataFrame({"case": list("abcd"), "label": ["ET"] * 4,
                           "dice": [1.0, 1.0, 0.4, 0.6], "hd95_mm": [np.nan, np.nan, 5.0, 3.0],
                           "truth_voxels": [0, 0, 10, 20]})
    summary = seg.summarize(scores).loc["ET"]
    assert summary.dice == pytest.approx(0.75)
    assert summary.n_with_label == 2 and summary.dice_present == pytest.approx(0.5)
    assert summary.dice_low <= summary.dice <= summary.dice_high
    assert summary.hd95_median_mm == pytest.approx(4.0)
    interval = seg.mean_with_ci([0.5])
    assert interval["n"] == 1 and np.isnan(interval["low"])


# --------------------------------------------------------------------------- end to end

def _cli(*args, cwd=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "medimg.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=600)


@pytest.mark.slow
def test_train_predict_evaluate_from_the_command_line(phantom, tmp_path):
    out = tmp_path / "run"
    done = _cli("train", "segmentation", "--data", str(phantom), "--out", str(out),
                "--profile", "smoke")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "model.keras").is_file() and (out / "plan.json").is_file()
    assert "test Dice PZ" in done.stdout
    cases = msd.find_cases(phantom)
    test_row = cases[cases.split == "test"].iloc[0]
    target = tmp_path / "pred.nii.gz"
    done = _cli("predict", "segmentation", "--model", str(out / "model.keras"), "--image",
                *test_row["images"], "--out", str(target))
    assert done.returncode == 0, done.stderr[-2000:]
    written, source = nib.load(target), nib.load(test_row["images"][0])
    assert written.shape == source.shape
    np.testing.assert_allclose(written.affine, source.affine)
    assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1, 2}
    done = _cli("evaluate", "segmentation", "--predictions", str(out / "predictions"),
                "--data", str(phantom))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "dice" in done.stdout
    # bad inputs: one line each, no traceback
    for args, expected in [
        (("predict", "segmentation", "--model", str(tmp_path / "none.keras"), "--image",
          *test_row["images"], "--out", str(target)), "no such model file"),
        (("predict", "segmentation", "--model", str(out / "model.keras"), "--image",
          test_row["images"][0], test_row["images"][0], test_row["images"][0], "--out",
          str(target)), "3 image files given"),
        (("train", "segmentation", "--data", str(tmp_path), "--profile", "smoke"),
         "no dataset.json"),
    ]:
        done = _cli(*args)
        assert done.returncode != 0
        lines = [line for line in done.stderr.strip().splitlines() if line]
        assert len(lines) == 1 and lines[0].startswith("medimg: error:"), done.stderr[-1500:]
        assert expected in lines[0]


def test_prepare_from_the_command_line_reports_the_cache_and_resumes(phantom, tmp_path,
                                                                     capsys):
    from medimg.cli import main

    args = ["prepare", "segmentation", "--data", str(phantom), "--out", str(tmp_path),
            "--profile", "smoke"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert (tmp_path / "plan.json").is_file()
    cache_line = first.splitlines()[0]  # "<cache folder>: 4 ok" (or cached, by an earlier test)
    folder, counts = cache_line.rsplit(": ", 1)
    assert Path(folder).is_dir() and counts in ("4 ok", "4 cached"), first
    assert "patch (voxels)" in first and "target spacing (mm)" in first  # the plan's summary
    assert main(args) == 0  # a rerun finds every case in the cache
    assert capsys.readouterr().out.splitlines()[0] == f"{folder}: 4 cached"


def test_run_refuses_a_classification_config():
    cfg = load_config("rsna", "smoke")
    with pytest.raises(ConfigError, match="not segmentation"):
        seg.run(cfg)


def test_fingerprint_names_a_broken_case(tmp_path, phantom):
    import shutil

    folder = tmp_path / phantom.name
    shutil.copytree(phantom, folder)
    (folder / "imagesTr" / "prostate_002_0000.nii.gz").write_bytes(b"not a nifti")
    cases = msd.find_cases(folder)
    with pytest.raises(MedimgError, match="prostate_002"):
        seg.fingerprint(cases, n_jobs=1, progress=False)


# --------------------------------------------------------------------------- pipeline (issue 12)

def _batches(ds, n):
    return [tuple(part.numpy() for part in batch) for batch in ds.take(n)]


def test_patch_dataset_is_deterministic_epoch_after_epoch(prepared):
    plan, manifest, _, _ = prepared
    cached = seg.cached_cases(manifest)
    kwargs = {"patches_per_case": 2, "batch_size": 2, "seed": 5, "augment": True}
    first = seg.patch_dataset(cached, plan, **kwargs)
    second = seg.patch_dataset(cached, plan, **kwargs)
    epochs_a = [_batches(first, 5) for _ in range(2)]
    epochs_b = [_batches(second, 5) for _ in range(2)]
    for epoch_a, epoch_b in zip(epochs_a, epochs_b, strict=True):
        for (xa, ya), (xb, yb) in zip(epoch_a, epoch_b, strict=True):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    # a new epoch draws new patches; another seed draws others
    assert not np.array_equal(epochs_a[0][0][0], epochs_a[1][0][0])
    other = seg.patch_dataset(cached, plan, **{**kwargs, "seed": 6})
    assert not np.array_equal(_batches(other, 1)[0][0], epochs_a[0][0][0])
    # targets are the plan's 0/1 table in uint8
    images, targets = epochs_a[0][0]
    assert images.dtype == np.float32 and targets.dtype == np.uint8
    assert set(np.unique(targets)) <= {0, 1}
    # validation: the same patches every epoch, re-read (nothing cached in memory)
    val = seg.patch_dataset(cached, plan, patches_per_case=2, batch_size=2, shuffle=False)
    for (xa, _), (xb, _) in zip(_batches(val, 5), _batches(val, 5), strict=True):
        np.testing.assert_array_equal(xa, xb)


def test_shards_split_the_epoch_and_the_global_batch(prepared):
    import tensorflow as tf

    plan, manifest, _, _ = prepared
    paths = list(seg.cached_cases(manifest)["path"])
    one = seg.patch_dataset(paths, plan, patches_per_case=4, batch_size=1, seed=2)
    whole = [x for x, _ in _batches(one, 20)]
    fn = seg.patch_dataset_fn(paths, plan, patches_per_case=4, batch_size=2, seed=2)
    shards = [fn(tf.distribute.InputContext(2, k, 2)) for k in range(2)]
    assert [int(s.cardinality()) for s in shards] == [len(whole) // 2] * 2
    for k, shard in enumerate(shards):
        images = [x for x, _ in _batches(shard, 20)]
        assert all(x.shape[0] == 1 for x in images)  # per-replica batch = 2 / 2 replicas
        for j, x in enumerate(images):  # shard k holds patches k, k + 2, k + 4 ...
            np.testing.assert_array_equal(x, whole[k + 2 * j])
    with pytest.raises(ConfigError, match="global batch"):
        fn(tf.distribute.InputContext(1, 0, 3))


def test_allowed_starts_are_stored_and_reused(prepared, monkeypatch):
    plan, manifest, _, _ = prepared
    paths = list(seg.cached_cases(manifest)["path"])
    reader = seg.CaseReader(paths, plan, max_background=0.9)
    folder = os.path.dirname(paths[0])
    stored = sorted(os.listdir(os.path.join(folder, "sampling")))
    assert len(stored) == len(paths) and all(name.endswith(".npy") for name in stored)
    ruled = [reader.sample(reader.usable[i % len(reader.usable)], seed=i) for i in range(12)]
    # a later reader (a later run) reads them: the label is not even opened again
    import medimg.tasks.segmentation.data as data

    def refuse(*args, **kwargs):
        raise AssertionError("allowed starts recomputed")

    monkeypatch.setattr(data, "allowed_start_indices", refuse)
    again = seg.CaseReader(paths, plan, max_background=0.9)
    assert again.n_allowed == reader.n_allowed
    for i, (_, label) in enumerate(ruled):
        _, label_again = again.sample(again.usable[i % len(again.usable)], seed=i)
        np.testing.assert_array_equal(label, label_again)
        assert (label == 0).mean() <= 0.9
    assert seg.sampling_indexes(paths, plan, 0.9, n_jobs=1) == reader.n_allowed


def test_reads_match_the_stored_arrays_in_every_layout(prepared, tmp_path):
    """Contiguous (mapped file) and chunked (h5py) reads give the same patch, padding
    included, for 3-D plans and 2-D plans across each axis."""
    plan, manifest, _, _ = prepared
    path = seg.cached_cases(manifest)["path"].iloc[0]
    image, label, _ = seg.read_case(path)
    for axis, patch in ((None, [16, 16, 8]), (0, [16, 8]), (2, [16, 16])):
        variant = seg.Plan.from_dict({**plan.to_dict(), "dimensionality": "3d" if axis is None
                                      else "2d", "slice_axis": axis, "patch_shape": patch})
        reader = seg.CaseReader([path], variant)
        rng = np.random.default_rng(axis or 0)
        for _ in range(4):
            start = reader.start(0, rng)
            got_image, got_label = reader.read(0, start)
            stop = start + np.asarray(reader.patch)
            want_image = np.zeros((*reader.patch, image.shape[-1]), np.float32)
            want_label = np.zeros(reader.patch, np.uint8)
            src = tuple(slice(max(0, a), min(s, b))
                        for a, b, s in zip(start, stop, label.shape, strict=True))
            dst = tuple(slice(s.start - a, s.stop - a) for s, a in zip(src, start, strict=True))
            want_image[dst], want_label[dst] = image[src], label[src]
            np.testing.assert_array_equal(got_image, want_image)
            np.testing.assert_array_equal(got_label, want_label)
        ds = seg.patch_dataset([path], variant, patches_per_case=2, batch_size=2)
        x, y = next(iter(ds))
        assert x.shape == (2, *patch, plan.n_channels) and y.shape == (2, *patch, plan.n_outputs)


def test_cases_are_stored_for_patch_reads(prepared):
    import h5py

    _, manifest, _, _ = prepared
    with h5py.File(seg.cached_cases(manifest)["path"].iloc[0]) as h5:
        for name in ("image", "label"):  # contiguous, uncompressed: read by mapping
            assert h5[name].chunks is None and h5[name].compression is None
            assert h5[name].id.get_offset() is not None


def test_reader_keeps_few_cases_mapped_and_reads_large_patches(prepared, monkeypatch):
    """Patches large enough to be copied by several threads match the stored arrays;
    reading more cases than stay mapped, and reading after close(), still match."""
    from medimg import _parallel
    from medimg.tasks.segmentation import data

    plan, manifest, _, _ = prepared
    paths = seg.cached_cases(manifest)["path"].tolist()
    stored = [seg.read_case(p)[:2] for p in paths]
    shape = np.min([label.shape for _, label in stored], axis=0)
    monkeypatch.setattr(_parallel, "SPLIT_COPY_BYTES", 1024)  # these small cases share too
    monkeypatch.setattr(_parallel, "COPY", _parallel.CopyHelpers(2))
    patch = [int(s) - 2 for s in shape]
    variant = seg.Plan.from_dict({**plan.to_dict(), "patch_shape": patch})
    reader = seg.CaseReader(paths, variant)
    assert len(paths) > data._MAPPED_CASES
    for _ in range(2):  # the second round re-maps after close()
        for index, (image, label) in enumerate(stored):
            got_image, got_label = reader.read(index, (1, 2, 0))
            box = (slice(1, 1 + patch[0]), slice(2, 2 + patch[1]), slice(0, patch[2]))
            np.testing.assert_array_equal(got_image, image[box])
            np.testing.assert_array_equal(got_label, label[box])
            assert len(reader._mapped) <= data._MAPPED_CASES
        reader.close()
        assert len(reader._mapped) == 0


def test_a_case_file_cut_short_after_planning_is_named(prepared, tmp_path):
    """A cached case truncated under a running reader (a full disk, a half-copied cache)
    gives a LayoutError naming the file, not a crash (a mapping past the end of a file
    would raise SIGBUS)."""
    import shutil

    from medimg.errors import LayoutError

    plan, manifest, _, _ = prepared
    source = seg.cached_cases(manifest)["path"].iloc[0]
    path = tmp_path / "case.h5"
    shutil.copy(source, path)
    reader = seg.CaseReader([path], plan)
    with open(path, "r+b") as handle:
        handle.truncate(os.path.getsize(path) // 2)
    with pytest.raises(LayoutError, match="case.h5"):
        reader.read(0, (0, 0, 0))


@pytest.mark.slow
def test_mixed_precision_training_converges_and_xla_steps_run(prepared):
    """GPU switches exercised on the CPU: mixed_float16 on the 2-D network (TensorFlow's
    CPU kernels have no float16 3-D pooling; GPUs and XLA do) and an XLA step of the 3-D
    network."""
    import keras

    plan, manifest, _, _ = prepared
    cached = seg.cached_cases(manifest)
    slices = seg.Plan.from_dict({**plan.to_dict(), "dimensionality": "2d", "slice_axis": 2,
                                 "patch_shape": [16, 16]})
    ds = seg.patch_dataset(cached, slices, patches_per_case=8, batch_size=4, seed=1,
                           foreground_fraction=1.0)
    keras.utils.set_random_seed(0)
    model = seg.build_model(slices, mixed_precision=True)
    seg.compile_model(model, slices, learning_rate=1e-2)
    assert keras.mixed_precision.dtype_policy().name == "float32"  # the global policy kept
    assert model.dtype_policy.name == "mixed_float16" and model.output.dtype == "float32"
    assert type(model.optimizer).__name__ == "LossScaleOptimizer"
    assert all(w.dtype == "float32" for w in model.trainable_weights)
    history = model.fit(ds, epochs=8, verbose=0, shuffle=False)  # the dataset shuffles
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.8 * losses[0]
    # XLA: a jit-compiled step gives the plain compiled step's loss from the same weights
    volumes = seg.patch_dataset(cached, plan, patches_per_case=2, batch_size=2, seed=1)
    x, y = next(iter(volumes))
    keras.utils.set_random_seed(0)
    plain = seg.compile_model(seg.build_model(plan, batch_norm=False), plan)
    jitted = seg.compile_model(seg.build_model(plan, batch_norm=False), plan, xla=True)
    jitted.set_weights(plain.get_weights())
    assert jitted.jit_compile is True
    first = np.ravel(plain.train_on_batch(x, y))[0]
    second = np.ravel(jitted.train_on_batch(x, y))[0]
    assert np.isfinite(second) and second == pytest.approx(first, rel=1e-4)


def test_a_damaged_case_file_is_named(prepared, tmp_path):
    plan, manifest, _, _ = prepared
    path = seg.cached_cases(manifest)["path"].iloc[0]
    broken = tmp_path / "broken.h5"
    broken.write_bytes(open(path, "rb").read()[:4096])  # truncated
    with pytest.raises(MedimgError, match="broken.h5"):
        seg.CaseReader([broken], plan)
    empty = tmp_path / "empty.h5"
    import h5py

    with h5py.File(empty, "w") as h5:
        h5["label"] = np.zeros((4, 4, 4), np.uint8)
    with pytest.raises(MedimgError, match="empty.h5"):
        seg.CaseReader([empty], plan)


def test_in_plane_rotation_is_exact_at_right_angles_and_keeps_targets_binary():
    import tensorflow as tf

    from medimg.tasks.segmentation.data import _augment, rotate_in_plane

    rng = np.random.default_rng(0)
    volume = rng.random((6, 6, 3, 2)).astype(np.float32)
    same = rotate_in_plane(tf, tf.constant(volume), tf.constant(0.0), interpolation="BILINEAR")
    np.testing.assert_array_equal(same.numpy(), volume)
    quarter = rotate_in_plane(tf, tf.constant(volume), tf.constant(np.pi / 2, tf.float32),
                              interpolation="NEAREST")
    np.testing.assert_array_equal(quarter.numpy(), np.rot90(volume, 1, axes=(0, 1)))
    target = (rng.random((8, 8, 4, 3)) > 0.7).astype(np.uint8)
    image = rng.random((8, 8, 4, 2)).astype(np.float32)
    seed = tf.constant([3, 4], tf.int64)
    a_image, a_target = _augment(tf, tf.constant(image), tf.constant(target), seed, 3)
    b_image, b_target = _augment(tf, tf.constant(image), tf.constant(target), seed, 3)
    np.testing.assert_array_equal(a_image.numpy(), b_image.numpy())  # seeded
    np.testing.assert_array_equal(a_target.numpy(), b_target.numpy())
    assert a_target.dtype == tf.uint8 and set(np.unique(a_target.numpy())) <= {0, 1}
    changed = [not np.array_equal(_augment(tf, tf.constant(image), tf.constant(target),
                                           tf.constant([s, 1], tf.int64), 3)[1].numpy(), target)
               for s in range(8)]
    assert any(changed)
