"""medimg.tasks.spine: the VerSe adapter (case table, targets, refusal of oblique scans,
release splits), the HU-threshold baseline, levels in anatomical order, the generic 2-D
pipeline on VerSe (geometry of whole-scan prediction, a smoke run) and ``medimg
prepare/train/predict verse``."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medimg.config import load_config
from medimg.datasets import verse
from medimg.errors import ConfigError, InvalidImageError, LayoutError
from medimg.io import read_nifti
from medimg.synthetic.verse import make_verse
from medimg.tasks import segmentation, spine
from tests.helpers import save_nifti

FOV = (70.0, 80.0, 90.0)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = tmp_path_factory.mktemp("verse-spine")
    make_verse(path, 4, seed=5, fov_mm=FOV, n_unlabelled=1)
    return path


@pytest.fixture(scope="module")
def cases(root):
    return spine.find_cases(root)


def _scan(base, name, ct, mask, affine, *, release="dataset-verse19training", codes=1):
    save_nifti(base / release / "rawdata" / name / f"{name}_ct.nii.gz", ct, affine, codes=codes)
    if mask is not None:
        save_nifti(base / release / "derivatives" / name / f"{name}_seg-vert_msk.nii.gz", mask,
              affine, codes=codes)


def _rotation(degrees):
    theta = np.radians(degrees)
    affine = np.eye(4)
    affine[1:3, 1:3] = [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]
    return affine


# --- the case table -------------------------------------------------------------------


def test_find_cases_is_a_generic_case_table(root, cases):
    subjects = verse.find_subjects(root)
    assert list(cases.case) == list(subjects.scan)
    assert {"case", "images", "label", "split", "packed", "subject"} <= set(cases.columns)
    assert all(images == [ct] for images, ct in zip(cases.images, subjects.ct_path,
                                                    strict=True))
    unlabelled = cases[cases.label.isna()]
    assert len(unlabelled) == 1 and unlabelled.label.iloc[0] is None
    assert set(cases.split.dropna()) == {"training", "validation", "test"}
    description = cases.attrs["dataset"]
    assert description.channel_names == ("CT",) and description.regions
    assert description.foreground == {"spine": tuple(range(1, 29))}
    assert description.regions_class_order == (1,)
    assert cases.attrs["refused"] == {}


def test_vertebrae_target_names_levels_in_anatomical_order():
    described = spine.description(target="vertebrae")
    assert not described.regions
    names = list(described.foreground)
    assert names[names.index("T12") + 1] == "T13" and names[names.index("T13") + 1] == "L1"
    assert described.labels["T13"] == (28,) and described.label_values == tuple(range(29))
    with pytest.raises(ConfigError, match="target"):
        spine.description(target="discs")


def test_level_names_sort_by_anatomy():
    assert spine.level_names([20, 28, 19, 0, 25, 24]) == ["T12", "T13", "L1", "L5", "L6"]
    assert spine.level_names([1, 7, 8]) == ["C1", "C7", "T1"]
    with pytest.raises(InvalidImageError, match=r"\[41\]"):
        spine.level_names([41])


def test_oblique_scans_are_refused_all_listed(tmp_path):
    ct = np.zeros((4, 5, 6), np.int16)
    mask = np.zeros((4, 5, 6), np.uint8)
    _scan(tmp_path, "sub-ok1", ct, mask, np.eye(4))
    _scan(tmp_path, "sub-tilt1", ct, mask, _rotation(40))
    _scan(tmp_path, "sub-tilt2", ct, mask, _rotation(35))
    _scan(tmp_path, "sub-nohdr", ct, mask, np.eye(4), codes=0)
    with pytest.raises(InvalidImageError) as error:
        spine.find_cases(tmp_path, max_oblique_deg=30)
    message = str(error.value)
    assert "3 scan(s)" in message
    assert "sub-tilt1: voxel axes 40 degrees" in message and "sub-tilt2: voxel axes 35" in message
    assert "sub-nohdr: orientation unknown" in message and "sub-ok1" not in message
    # a looser limit keeps the tilted scans; skipping drops the refused ones, with a warning
    with pytest.warns(UserWarning, match="skipping 1 scan"):
        assert len(spine.find_cases(tmp_path, max_oblique_deg=45, skip_refused=True)) == 3
    with pytest.warns(UserWarning, match="sub-tilt1"):
        kept = spine.find_cases(tmp_path, max_oblique_deg=30, skip_refused=True)
    assert list(kept.case) == ["sub-ok1"]
    assert set(kept.attrs["refused"]) == {"sub-tilt1", "sub-tilt2", "sub-nohdr"}


def test_check_scan(tmp_path):
    ok = save_nifti(tmp_path / "a_ct.nii.gz", np.zeros((3, 3, 3), np.int16), np.eye(4))
    spine.check_scan(ok)
    tilted = save_nifti(tmp_path / "b_ct.nii.gz", np.zeros((3, 3, 3), np.int16), _rotation(40))
    with pytest.raises(InvalidImageError, match=r"b_ct\.nii\.gz: .*40 degrees oblique"):
        spine.check_scan(tilted)
    spine.check_scan(tilted, max_oblique_deg=45)
    with pytest.raises(InvalidImageError, match="no such file"):
        spine.check_scan(tmp_path / "missing.nii.gz")


# --- splits ---------------------------------------------------------------------------


def test_release_folders_are_the_split(cases):
    table = spine.release_split(cases)
    assert table.attrs["split_source"] == "VerSe release folders"
    assert len(table) == 4  # the unlabelled scan is left out
    expected = table.release_split.map({"training": "train", "validation": "validation",
                                        "test": "test"})
    assert (table.split.astype(str) == expected).all()
    assert list(table.split.cat.categories) == ["train", "validation", "test"]
    # the generic split_cases uses the hook (and the config's settings)
    cfg = load_config("verse", "smoke")
    generic = segmentation.split_cases(cases, cfg, adapter=spine.adapter_for(cfg))
    assert list(generic.split) == list(table.split)


def test_split_by_subject_without_release_folders():
    rows = [{"case": f"sub-{s}_dir-{d}", "subject": f"sub-{s}", "split": None,
             "label": f"m{s}{d}.nii.gz", "images": [f"c{s}{d}.nii.gz"], "packed": False}
            for s in range(10) for d in ("ax", "sag")]
    table = spine.release_split(pd.DataFrame(rows), validation_fraction=0.2, test_fraction=0.2,
                                seed=3)
    assert table.attrs["split_source"].startswith("by subject")
    assert table.groupby("subject").split.nunique().max() == 1
    counts = table.drop_duplicates("subject").split.value_counts()
    assert counts["train"] == 6 and counts["validation"] == 2 and counts["test"] == 2
    # folders that do not hold all three parts are not a split either
    rows[0]["split"] = "training"
    assert spine.release_split(pd.DataFrame(rows)).attrs["split_source"].startswith("by subject")
    # nor when asked not to use them
    for row in rows:
        row["split"] = ["training", "validation", "test"][int(row["subject"][4:]) % 3]
    assert spine.release_split(pd.DataFrame(rows)).attrs["split_source"] == \
        "VerSe release folders"
    assert spine.release_split(pd.DataFrame(rows), use_release_splits=False) \
        .attrs["split_source"].startswith("by subject")


# --- the baseline ---------------------------------------------------------------------


def _threshold_scan(base, name, release, bone_hu, rng):
    """Soft tissue ~40 HU, vessels ~220 HU, spine ``bone_hu``: the best threshold lies
    between the vessels and the spine (every number chosen so the answer is known)."""
    ct = rng.normal(40, 10, (20, 20, 20))
    mask = np.zeros(ct.shape, np.uint8)
    mask[5:15, 5:15, 5:15] = 20
    ct[mask > 0] = rng.normal(bone_hu, 15, int((mask > 0).sum()))
    ct[0:4, 0:4, :] = rng.normal(220, 5, (4, 4, 20))
    _scan(base, name, np.rint(ct).astype(np.int16), mask, np.eye(4), release=release)


def test_hu_threshold_is_fitted_on_training_scans_only(tmp_path, rng):
    for i in range(3):
        _threshold_scan(tmp_path, f"sub-t{i}", "dataset-verse19training", 500, rng)
    _threshold_scan(tmp_path, "sub-v0", "dataset-verse19validation", 500, rng)
    # the test scan's spine is osteoporotic: a threshold fitted on it would be far lower
    _threshold_scan(tmp_path, "sub-x0", "dataset-verse19test", 150, rng)
    table = spine.release_split(spine.find_cases(tmp_path))
    train, test = table[table.split == "train"], table[table.split == "test"]
    fit = spine.fit_hu_threshold(train)
    assert 230 <= fit["threshold_hu"] <= 450 and fit["n_scans"] == 3  # vessels < t < spine
    assert fit["train_dice"] > 0.99
    curve = fit["curve"]
    assert curve.dice.max() == pytest.approx(fit["train_dice"])
    assert curve.threshold_hu[curve.dice.idxmax()] == fit["threshold_hu"]
    scores = spine.hu_threshold_scores(test, fit["threshold_hu"])
    assert list(scores.case) == ["sub-x0"] and scores.dice.iloc[0] < 0.05
    # the Dice from histograms is the Dice of the mask
    ct = nib.load(train.images.iloc[0][0]).get_fdata()
    truth = nib.load(train.label.iloc[0]).get_fdata() > 0
    predicted = ct >= fit["threshold_hu"]
    direct = 2 * (predicted & truth).sum() / (predicted.sum() + truth.sum())
    again = spine.hu_threshold_scores(train.head(1), fit["threshold_hu"]).dice.iloc[0]
    assert again == pytest.approx(direct)
    with pytest.raises(ConfigError):
        spine.fit_hu_threshold(train, thresholds_hu=[300, 200])


def test_compare_with_baseline_writes_what_the_numbers_say():
    model = pd.DataFrame({"case": list("abcdef"), "dice": [0.9, 0.88, 0.91, 0.87, 0.9, 0.92]})
    weak = pd.DataFrame({"case": list("abcdef"), "dice": [0.6, 0.65, 0.7, 0.55, 0.6, 0.62]})
    result = spine.compare_with_baseline(model, weak)
    assert result["n"] == 6 and result["difference"]["low"] > 0
    assert result["sentence"].startswith("On the same 6 test scans, the U-Net beats the HU "
                                         "threshold")
    assert "+0.2" in result["sentence"]
    strong = weak.assign(dice=model.dice + 0.05)
    assert "does worse than" in spine.compare_with_baseline(model, strong)["sentence"]
    one = spine.compare_with_baseline(model.head(1), weak.head(1))
    assert "too few scans for an interval" in one["sentence"]
    with pytest.raises(LayoutError):
        spine.compare_with_baseline(model, weak.assign(case=list("uvwxyz")))


def test_level_recall(tmp_path):
    mask = np.zeros((6, 6, 6), np.uint8)
    mask[0:2] = 19   # T12
    mask[2:4] = 28   # T13
    mask[4:6] = 20   # L1
    predicted = np.zeros_like(mask)
    predicted[0:2] = 1
    predicted[2, :, :3] = 1  # a quarter of T13
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    _scan(tmp_path / "data", "sub-r1", np.zeros_like(mask, np.int16), mask, affine)
    save_nifti(tmp_path / "pred" / "sub-r1.nii.gz", predicted, affine)
    table = spine.find_cases(tmp_path / "data")
    recall = spine.level_recall(tmp_path / "pred", table)
    assert list(recall.columns) == ["T12", "T13", "L1"]
    assert recall.loc["sub-r1"].tolist() == [1.0, 0.25, 0.0]
    with pytest.raises(LayoutError, match="no prediction"):
        spine.level_recall(tmp_path / "elsewhere", table)


# --- the generic 2-D pipeline on VerSe ------------------------------------------------


class BoneModel:
    """A stand-in network: "spine" wherever the (de-normalised) CT exceeds 300.5 HU."""

    def __init__(self, plan):
        entry = plan.normalization[0]
        self.cut = (300.5 - entry["mean"]) / entry["std"]

    def predict_on_batch(self, x):
        return (np.asarray(x) > self.cut).astype(np.float32)


def test_whole_scan_prediction_is_on_the_files_grid(tmp_path, rng):
    """No resampling (1 mm scan, 1 mm plan): the written mask is exactly the rule applied
    to the file's own voxels, in the file's orientation (LPS) and with its affine."""
    ct = rng.integers(-1000, 1500, (9, 10, 11)).astype(np.int16)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])  # LPS on disk
    affine[:3, 3] = [4, 5, 6]
    _scan(tmp_path / "data", "sub-p01", ct, (ct > 200).astype(np.uint8) * 20, affine)
    table = spine.find_cases(tmp_path / "data")
    prints = segmentation.fingerprint(table, n_jobs=1, progress=False)
    plan = segmentation.make_plan(prints, dimensionality="2d", slice_axis="sagittal",
                                  target_spacing=[1.0, 1.0, 1.0], crop_to_nonzero=False,
                                  patch_shape=[8, 8], max_depth=2)
    assert plan.slice_axis == 0 and plan.normalization[0]["low"] < 300 < \
        plan.normalization[0]["high"]
    out = tmp_path / "sub-p01_pred.nii.gz"
    segmentation.predict_files(BoneModel(plan), plan, table.images.iloc[0], out)
    written = nib.load(str(out))
    assert written.shape == ct.shape
    np.testing.assert_allclose(written.affine, affine)
    np.testing.assert_array_equal(np.asarray(written.dataobj), (ct > 300).astype(np.uint8))


@pytest.fixture(scope="module")
def trained(root, tmp_path_factory):
    """One smoke run of the whole pipeline (prepare, train, predict, score) on VerSe."""
    tmp = tmp_path_factory.mktemp("verse-run")
    cfg = load_config("verse", "smoke", overrides={
        "preprocess": {"cache_dir": str(tmp / "cache")},
        "plan": {"patch_shape": [16, 16], "max_depth": 2},
        "sampling": {"patches_per_case": 8}, "train": {"epochs": 1, "batch_size": 8},
        "n_jobs": 1})
    result = segmentation.run(cfg, data=root, out=tmp / "out", adapter=spine.adapter_for(cfg),
                              progress=False, verbose=0)
    return result


@pytest.mark.slow
def test_smoke_run_on_synthetic_verse(trained, cases):
    plan = trained["plan"]
    assert plan.dimensionality == "2d" and plan.slice_axis == 0
    assert plan.outputs == ["spine"] and plan.activation == "sigmoid"
    assert plan.normalization[0]["scheme"] == "ct"
    assert trained["model_path"].is_file() and trained["plan_path"].is_file()
    assert len(trained["history"]) == 1 and np.isfinite(trained["history"].loss).all()
    table = trained["cases"]
    assert table.attrs["split_source"] == "VerSe release folders"
    test = table[table.split == "test"]
    # only the test scans are predicted and scored, each on its own grid
    assert set(trained["scores"].case) == set(test.case)
    assert trained["scores"].dice.between(0, 1).all()
    for row in test.itertuples():
        written = read_nifti(trained["out"] / "predictions" / f"{row.case}.nii.gz",
                             canonical=False)
        source = read_nifti(row.images[0], canonical=False)
        assert written.shape == source.shape
        np.testing.assert_allclose(written.affine, source.affine, atol=1e-5)
        assert set(np.unique(written.array)) <= {0, 1}
    summary = trained["summary"]
    assert summary.loc["spine", "n_cases"] == len(test)


# --- the command line -------------------------------------------------------------------


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.slow
def test_predict_verse_writes_on_the_cts_grid(trained, cases, tmp_path, capsys):
    from medimg.cli import main

    row = cases[cases.label.isna()].iloc[0]  # the unlabelled scan: never seen
    out = tmp_path / "mask.nii.gz"
    assert main(["predict", "verse", "--model", str(trained["model_path"]), "--scan",
                 row.images[0], "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    written = nib.load(str(out))
    source = nib.load(row.images[0])
    assert written.shape == source.shape
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-5)
    assert nib.aff2axcodes(written.affine) == nib.aff2axcodes(source.affine)


def test_predict_verse_errors_are_one_line(root, tmp_path, capsys):
    from medimg.cli import main

    scan = str(next(root.rglob("*_ct.nii.gz")))
    missing = tmp_path / "none" / "model.keras"
    assert main(["predict", "verse", "--model", str(missing), "--scan", scan, "--out",
                 str(tmp_path / "m.nii.gz")]) == 2
    line = _error_line(capsys)
    assert line.startswith(f"medimg: error: {missing}: ") and "no such model file" in line
    # a file that is not a Keras model, with a plan beside it
    folder = tmp_path / "garbage"
    folder.mkdir()
    (folder / "model.keras").write_text("not a model")
    _tiny_plan(spine.find_cases(root)).save(folder / "plan.json")
    assert main(["predict", "verse", "--model", str(folder / "model.keras"), "--scan", scan,
                 "--out", str(tmp_path / "m.nii.gz")]) == 2
    line = _error_line(capsys)
    assert line.startswith(f"medimg: error: {folder / 'model.keras'}: cannot load")
    # a model without its plan
    (folder / "plan.json").unlink()
    assert main(["predict", "verse", "--model", str(folder / "model.keras"), "--scan", scan,
                 "--out", str(tmp_path / "m.nii.gz")]) == 2
    assert "plan.json" in _error_line(capsys)
    # a scan that cannot be sliced is refused before any model is read
    tilted = save_nifti(tmp_path / "tilted_ct.nii.gz", np.zeros((3, 3, 3), np.int16), _rotation(40))
    assert main(["predict", "verse", "--model", str(missing), "--scan", str(tilted), "--out",
                 str(tmp_path / "m.nii.gz")]) == 2
    assert _error_line(capsys).startswith(f"medimg: error: {tilted}: cannot be cut")
    assert main(["predict", "verse", "--model", str(missing), "--scan", scan, "--out",
                 str(tmp_path / "m.png")]) == 2
    assert "--out must end in .nii" in _error_line(capsys)


def _tiny_plan(table):
    labelled = table[table.label.notna()].head(1)
    labelled.attrs.update(table.attrs)
    prints = segmentation.fingerprint(labelled, n_jobs=1, progress=False)
    return segmentation.make_plan(prints, dimensionality="2d", slice_axis="sagittal",
                                  target_spacing=[2.0, 2.0, 2.0], patch_shape=[16, 16],
                                  max_depth=2, base_filters=4)


def test_predict_verse_refuses_a_model_of_another_data_set(root, tmp_path, capsys):
    import keras

    from medimg.cli import main

    table = spine.find_cases(root)
    plan = _tiny_plan(table)
    values = plan.to_dict()
    values["dataset"] = {**values["dataset"], "name": "Prostate", "layout": "nnunet"}
    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "plan.json").write_text(json.dumps(values))
    model = segmentation.build_model(plan)
    model.save(folder / "model.keras")
    keras.backend.clear_session()
    scan = table.images.iloc[0][0]
    assert main(["predict", "verse", "--model", str(folder / "model.keras"), "--scan", scan,
                 "--out", str(tmp_path / "m.nii.gz")]) == 2
    line = _error_line(capsys)
    assert line.startswith(f"medimg: error: {folder / 'model.keras'}: ")
    assert "'Prostate'" in line and "not on VerSe" in line


def test_verse_verbs_are_registered():
    from medimg.cli import VERB_MODULES, build_parser

    assert "medimg.cli.spine" in VERB_MODULES and "medimg.commands" not in VERB_MODULES
    parser = build_parser()
    for verb in ("prepare", "train", "predict"):
        with pytest.raises(SystemExit) as done:
            parser.parse_args([verb, "verse", "-h"])
        assert done.value.code == 0


def test_vertebrae_target_plans_one_class_per_label(root, tmp_path):
    table = spine.find_cases(root, target="vertebrae")
    labelled = table[table.label.notna()].head(2)
    labelled.attrs.update(table.attrs)
    prints = segmentation.fingerprint(labelled, n_jobs=1, progress=False)
    plan = segmentation.make_plan(prints, dimensionality="2d", slice_axis="sagittal",
                                  target_spacing=[2.0, 2.0, 2.0], patch_shape=[16, 16],
                                  max_depth=2)
    assert plan.activation == "softmax" and plan.class_values == list(range(29))
    assert plan.outputs[28] == "T13" and plan.outputs[0] == "background"
    manifest = segmentation.preprocess(labelled, plan, tmp_path, n_jobs=1, progress=False)
    assert (manifest.status == "ok").all()
    _, codes, _ = segmentation.read_case(segmentation.cached_cases(manifest).path.iloc[0])
    truth = read_nifti(labelled.label.iloc[0])
    # class code k is VerSe label k: the levels survive preprocessing
    assert set(np.unique(codes)) <= set(np.unique(truth.array))
