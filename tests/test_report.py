"""medimg.report: recording figures, the key conventions and the table's rendering."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medimg import report


@pytest.fixture
def results_file(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    monkeypatch.setenv(report.RESULTS_ENV, str(target))
    return target


def test_headline_is_stored_beside_the_figures(results_file):
    stored = report.record("nb", test_auc=np.float64(0.84), test_auc_low=0.76,
                           test_auc_high=0.91, n_test=np.int64(60), headline=["test_auc"])
    assert stored == {"test_auc": 0.84, "test_auc_low": 0.76, "test_auc_high": 0.91,
                      "n_test": 60}
    on_disk = json.loads(results_file.read_text())
    assert on_disk["nb"][report.HEADLINE_KEY] == [["test_auc"]]
    # a later call may name figures recorded earlier under the same group
    report.record("nb", baseline_auc=0.7, headline=["test_auc", ("baseline_auc", "n_test")])
    on_disk = json.loads(results_file.read_text())
    assert on_disk["nb"][report.HEADLINE_KEY] == [["test_auc"], ["baseline_auc", "n_test"]]
    assert on_disk["nb"]["baseline_auc"] == 0.7


def test_headline_naming_an_unrecorded_key_is_refused(results_file):
    with pytest.raises(KeyError, match="test_dice"):
        report.record("nb", test_auc=0.8, headline=["test_dice"])
    with pytest.raises(KeyError, match="n_missing"):
        report.record("nb", test_auc=0.8, headline=[("test_auc", "n_missing")])
    assert not results_file.exists()  # nothing written by a refused call
    with pytest.raises(TypeError, match="headline entry"):
        report.record("nb", test_auc=0.8, headline=[("test_auc", "n_test", "x")])


def test_headline_checked_without_a_runner_too(monkeypatch):
    monkeypatch.delenv(report.RESULTS_ENV, raising=False)
    assert report.record("nb", x=1, headline=["x"]) == {"x": 1}
    with pytest.raises(KeyError):
        report.record("nb", x=1, headline=["y"])


@pytest.mark.parametrize(("key", "label"), [
    ("test_auc", "test AUC"),
    ("test_dice_wt", "test Dice WT"),
    ("baseline_dice_et", "baseline Dice ET"),
    ("auc_gain", "AUC gain"),
    ("ct_lung_hu", "CT lung"),
    ("test_hd95_wt_mm", "test HD95 WT"),
    ("metadata_files_per_s", "metadata files"),
    ("train_seconds", "train"),
])
def test_labels_from_keys(key, label):
    assert report.figure_label(key) == label


def test_format_figure():
    assert report.format_figure(0.8412, 0.7612, 0.9134, n=60) == "0.84 (0.76-0.91), n=60"
    # a bound below zero is joined by "to", not by a hyphen that reads as a minus
    assert report.format_figure(0.05, -0.02, 0.12) == "0.05 (-0.02 to 0.12)"
    assert report.format_figure(-850.4, unit="HU") == "-850 HU"
    assert report.format_figure(12.345, 10.01, 14.9, unit="mL") == "12.3 (10.0-14.9) mL"
    assert report.format_figure(1234, n=None) == "1,234"
    assert report.format_figure(None) == "n/a"
    assert report.format_figure("synthetic") == "synthetic"
    assert report.format_figure(52.0, unit="/s") == "52.0/s"


def test_headline_figures_follow_the_conventions():
    figures = {"data": "synthetic", "n_test": 60, "n_train": 180,
               "test_auc": 0.84, "test_auc_low": 0.76, "test_auc_high": 0.91,
               "baseline_auc": 0.72, "baseline_auc_low": 0.61, "baseline_auc_high": 0.82,
               "auc_gain": 0.12, "auc_gain_low": 0.03, "auc_gain_high": 0.21,
               "train_auc": 0.95, "train_seconds": 97.3, "n_test_ap": 31,
               "test_auc_ap": 0.8, "test_auc_ap_low": 0.7, "test_auc_ap_high": 0.9}
    rows = report.headline_figures(
        figures, ["test_auc", "baseline_auc", "auc_gain", "train_seconds",
                  ("test_auc_ap", "n_test_ap"), "not_recorded"])
    assert rows == [("test AUC", "0.84 (0.76-0.91), n=60"),
                    ("baseline AUC", "0.72 (0.61-0.82), n=60"),
                    ("AUC gain", "0.12 (0.03-0.21), n=60"),
                    ("train", "97.3 s"),  # no interval: no n unless named
                    ("test AUC AP", "0.80 (0.70-0.90), n=31")]
    assert report.headline_figures(figures, [("train_auc", "n_train")]) == [
        ("train AUC", "0.95, n=180")]


def test_default_headline_prefers_test_intervals():
    figures = {"validation_auc": 0.9, "validation_auc_low": 0.8, "validation_auc_high": 0.95,
               "baseline_auc": 0.7, "baseline_auc_low": 0.6, "baseline_auc_high": 0.8,
               "test_auc": 0.84, "test_auc_low": 0.76, "test_auc_high": 0.91,
               "n_test": 60, "epochs": 10}
    labels = [label for label, _ in report.headline_figures(figures)]
    assert labels == ["test AUC", "baseline AUC", "validation AUC"]
    # the list recorded by the notebook wins over the default
    figures[report.HEADLINE_KEY] = [["epochs"]]
    assert report.headline_figures(figures) == [("epochs", "10")]


def test_results_keep_the_recording_order(results_file):
    report.record("nb", test_dice_wt=0.9, test_dice_wt_low=0.8, test_dice_wt_high=0.95,
                  test_dice_tc=0.7, test_dice_tc_low=0.6, test_dice_tc_high=0.8)
    stored = report.load_results(results_file)["nb"]
    assert list(stored) == ["test_dice_wt", "test_dice_wt_low", "test_dice_wt_high",
                            "test_dice_tc", "test_dice_tc_low", "test_dice_tc_high"]
    assert [label for label, _ in report.headline_figures(stored)] == ["test Dice WT",
                                                                      "test Dice TC"]
