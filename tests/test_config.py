"""medimg.config: profiles, environment overrides and validation with clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from medimg.config import PROFILES, load_config
from medimg.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

GOOD = """\
name: toy
description: a test config
data:
  root: data/toy
  synthetic_root: data/synthetic
defaults:
  seed: 7
  n_jobs: 1
  synthetic: {}
  split: {validation_fraction: 0.2, test_fraction: 0.2}
  train: {epochs: 5, batch_size: 2, learning_rate: 0.01, patience: 0}
  learning_rate: 0.001
  epochs: 10
  augment: true
  patch_shape: [32, 32, 16]
  model: {depth: 3, base_filters: 16}
  note: null
profiles:
  smoke: {epochs: 1, model: {depth: 2}}
  demo: {learning_rate: 1}
  full: {}
"""


def write(tmp_path: Path, text: str, name: str = "toy") -> Path:
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n")
    (tmp_path / "configs").mkdir(exist_ok=True)
    path = tmp_path / "configs" / f"{name}.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["rsna", "brats", "verse", "segmentation"])
@pytest.mark.parametrize("profile", PROFILES)
def test_shipped_configs_load(name, profile):
    cfg = load_config(name, profile, config_dir=REPO / "configs")
    assert cfg.name == name and cfg.profile == profile
    assert isinstance(cfg.seed, int)
    assert "synthetic" in cfg
    assert cfg.synthetic_root.name == f"{name}-{profile}"


def test_profile_overrides_merge_deeply(tmp_path):
    path = write(tmp_path, GOOD)
    cfg = load_config(path, "smoke")
    assert cfg.epochs == 1
    assert cfg.model.depth == 2 and cfg.model.base_filters == 16
    assert cfg["model"]["base_filters"] == 16
    assert load_config(path, "full").epochs == 10
    # an int is accepted where a float is expected
    assert load_config(path, "demo").learning_rate == 1


def test_profile_from_environment(tmp_path, monkeypatch):
    path = write(tmp_path, GOOD)
    monkeypatch.setenv("MEDIMG_PROFILE", "smoke")
    assert load_config(path).profile == "smoke"
    monkeypatch.delenv("MEDIMG_PROFILE")
    assert load_config(path).profile == "demo"


def test_runtime_overrides_are_validated(tmp_path):
    path = write(tmp_path, GOOD)
    assert load_config(path, "full", overrides={"epochs": 3}).epochs == 3
    with pytest.raises(ConfigError, match="unknown key 'epoch'"):
        load_config(path, "full", overrides={"epoch": 3})


@pytest.mark.parametrize(
    ("replace", "by", "message"),
    [
        ("smoke: {epochs: 1,", "smoke: {epoch: 1,", r"unknown key 'epoch'"),
        ("smoke: {epochs: 1,", "smoke: {epochs: 'one',", r"key 'epochs' is a string .*expected an integer"),
        ("model: {depth: 2}", "model: {depth: 2.5}", r"key 'model.depth' is a number .*expected an integer"),
        ("model: {depth: 2}", "model: {width: 2}", r"unknown key 'model.width'"),
        ("model: {depth: 2}", "model: 3", r"key 'model' must be a mapping"),
        ("demo: {learning_rate: 1}", "demo: {augment: 1}", r"key 'augment' is an integer .*expected a boolean"),
        ("demo: {learning_rate: 1}", "demo: {patch_shape: 32}", r"key 'patch_shape' is an integer .*expected a list"),
        ("full: {}", "fast: {}", r"unknown profile 'fast' under 'profiles'"),
        ("description:", "descripton:", r"unknown top-level key 'descripton'"),
        ("  root: data/toy", "  rot: data/toy", r"unknown key 'data.rot'"),
        ("seed: 7", "seed: [7", r"invalid YAML at line"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, replace, by, message):
    path = write(tmp_path, GOOD.replace(replace, by))
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path, "smoke")
    assert str(path) in str(info.value)


def test_unknown_profile_and_missing_file(tmp_path, monkeypatch):
    path = write(tmp_path, GOOD)
    with pytest.raises(ConfigError, match="unknown profile 'huge'"):
        load_config(path, "huge")
    monkeypatch.setenv("MEDIMG_PROFILE", "tiny")
    with pytest.raises(ConfigError, match=r"'tiny' \(from MEDIMG_PROFILE\)"):
        load_config(path)
    with pytest.raises(ConfigError, match="config file not found") as info:
        load_config("nope", config_dir=tmp_path / "configs")
    assert "nope.yaml" in str(info.value) and "toy" in str(info.value)


def test_data_root_from_environment(tmp_path, monkeypatch):
    path = write(tmp_path, GOOD)
    cfg = load_config(path, "smoke")
    assert cfg.env_var == "MEDIMG_TOY_ROOT"
    assert cfg.data_root is None  # data/toy does not exist
    (tmp_path / "data" / "toy").mkdir(parents=True)
    (tmp_path / "data" / "toy" / "README.md").write_text("get the data")
    assert cfg.data_root is None  # a README alone is not a data set
    (tmp_path / "data" / "toy" / "images").mkdir()
    assert cfg.data_root == tmp_path / "data" / "toy"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("MEDIMG_TOY_ROOT", str(elsewhere))
    assert cfg.data_root == elsewhere
    monkeypatch.setenv("MEDIMG_TOY_ROOT", str(tmp_path / "typo"))
    with pytest.raises(ConfigError, match="MEDIMG_TOY_ROOT points to .*typo"):
        _ = cfg.data_root


def test_cli_broken_config_gives_one_clear_line(tmp_path):
    path = write(tmp_path, GOOD.replace("smoke: {epochs: 1,", "smoke: {epochs: true,"))
    proc = subprocess.run([sys.executable, "-m", "medimg.cli", "config", str(path),
                           "--profile", "smoke"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0] and "'epochs'" in lines[0] and "expected an integer" in lines[0]


@pytest.mark.parametrize("section, message", [
    ("  n_jobs: 1\n", "defaults.n_jobs"),
    ("  split: {validation_fraction: 0.2, test_fraction: 0.2}\n", "defaults.split"),
])
def test_every_config_has_the_shared_sections(tmp_path, section, message):
    path = write(tmp_path, GOOD.replace(section, ""))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_shared_section_missing_a_key(tmp_path):
    path = write(tmp_path, GOOD.replace("  train: {epochs: 5, batch_size: 2, learning_rate: "
                                        "0.01, patience: 0}", "  train: {epochs: 5}"))
    with pytest.raises(ConfigError, match="defaults.train.batch_size"):
        load_config(path)


@pytest.mark.parametrize("name", ["rsna", "brats", "verse", "segmentation"])
def test_the_repository_configs_share_the_schema(name):
    from medimg.config import REQUIRED_SECTIONS

    cfg = load_config(name, "smoke")
    for section, keys in REQUIRED_SECTIONS.items():
        assert section in cfg
        for key in keys or ():
            assert key in cfg[section]


@pytest.mark.parametrize("edit, message", [
    (("  smoke: {epochs: 1, model: {depth: 2}}", "  smoke: [1, 2]"), "profile 'smoke' must be a mapping"),
    (("  root: data/toy", "  root: 5"), "'data.root' must be a path"),
])
def test_wrong_shapes_of_profiles_and_data_are_config_errors(tmp_path, edit, message):
    path = write(tmp_path, GOOD.replace(*edit))
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)
