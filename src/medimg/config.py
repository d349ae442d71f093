"""YAML configurations with profiles, environment overrides and strict validation.

A config file ``configs/<name>.yaml`` has this shape::

    name: rsna
    description: RSNA Pneumonia Detection Challenge (Kaggle)
    data:
      root: data/rsna                  # the real data set, relative to the repository
      synthetic_root: data/synthetic   # where look-alike data is generated if it is absent
    defaults:                          # every setting, with its type given by its value
      seed: 42
      epochs: 10
      model: {base_filters: 16}
    profiles:                          # overrides per profile; only keys of `defaults`
      smoke: {epochs: 1}
      demo: {}
      full: {epochs: 50}

``defaults`` is the schema: a profile may only override keys that ``defaults``
holds, with a value of the same type (an int is accepted where a float is
expected; ``null`` in ``defaults`` accepts anything). Every violation raises
:class:`~medimg.errors.ConfigError` naming the file, the key and what was expected.

Every data set's config shares one skeleton (:data:`REQUIRED_SECTIONS`), so the same
words mean the same thing everywhere: ``seed`` and ``n_jobs``; ``synthetic`` (the
look-alike generator's arguments); ``split`` (``validation_fraction``,
``test_fraction``: by patient or subject, :func:`medimg.datasets.splits.split_by_group`);
``train`` (``epochs``, ``batch_size`` (global, over all devices), ``learning_rate``,
``patience`` and the rest of :func:`medimg.training.train`'s switches). Sections of
their own (``preprocess``, ``model``, ``predict``, ``eda``...) follow the task.

The profile is chosen by argument, else by ``MEDIMG_PROFILE``, else ``demo``. The data
root is ``MEDIMG_<NAME>_ROOT`` when set (e.g. ``MEDIMG_RSNA_ROOT``), else
``data.root``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["PROFILES", "REQUIRED_SECTIONS", "Config", "Section", "find_repo_root", "load_config"]

PROFILES = ("smoke", "demo", "full")
DEFAULT_PROFILE = "demo"
_TOP_LEVEL = {"name", "task", "description", "data", "defaults", "profiles"}
_DATA_KEYS = {"root", "synthetic_root"}
#: Keys every config's ``defaults`` must hold (section -> its required keys; None for a
#: plain value): one schema across ``configs/*.yaml``.
REQUIRED_SECTIONS: dict[str, tuple[str, ...] | None] = {
    "seed": None,
    "n_jobs": None,
    "synthetic": (),
    "split": ("validation_fraction", "test_fraction"),
    "train": ("epochs", "batch_size", "learning_rate", "patience"),
}


def find_repo_root(start: str | os.PathLike | None = None) -> Path:
    """The repository root: ``MEDIMG_HOME``, else the nearest parent of ``start`` (the
    working directory by default) holding ``configs/``, else the checkout this package
    was installed from (editable installs)."""
    env = os.environ.get("MEDIMG_HOME")
    if env:
        return Path(env).expanduser().resolve()
    here = Path(start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "configs").is_dir() and (candidate / "pyproject.toml").is_file():
            return candidate
    package_checkout = Path(__file__).resolve().parents[2]
    if (package_checkout / "configs").is_dir():
        return package_checkout
    raise ConfigError(
        "cannot find the repository root (a folder with configs/ and pyproject.toml); "
        "set MEDIMG_HOME",
        here,
    )


class Section(Mapping):
    """Read-only mapping with attribute access (``cfg.model.base_filters``)."""

    def __init__(self, values: Mapping[str, Any], where: str):
        self._values = dict(values)
        self._where = where

    def __getitem__(self, key: str) -> Any:
        value = self._values[key]
        return Section(value, f"{self._where}.{key}") if isinstance(value, Mapping) else value

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"{self._where} has no setting {key!r}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def to_dict(self) -> dict[str, Any]:
        """A deep copy as plain dicts."""
        return copy.deepcopy(self._values)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._values!r})"


class Config(Section):
    """A validated configuration for one data set under one profile.

    Attributes
    ----------
    name : str
        Data set name (``rsna``, ``brats``, ``verse``, ``segmentation``).
    task : str or None
        The pipeline that runs it (``segmentation``, ``classification``), from the
        file's top-level ``task`` key.
    profile : str
        ``smoke``, ``demo`` or ``full``.
    path : pathlib.Path
        The YAML file.
    repo_root : pathlib.Path
        Repository root; relative paths in the file are resolved against it.
    """

    def __init__(self, *, name: str, profile: str, path: Path, repo_root: Path,
                 data: Mapping[str, Any], values: Mapping[str, Any], description: str = "",
                 task: str | None = None):
        super().__init__(values, f"{path.name}[{profile}]")
        self.name = name
        self.task = task
        self.profile = profile
        self.path = path
        self.repo_root = repo_root
        self.description = description
        self._data = dict(data)

    @property
    def env_var(self) -> str:
        """Environment variable that overrides the data root, e.g. ``MEDIMG_RSNA_ROOT``."""
        return f"MEDIMG_{self.name.upper()}_ROOT"

    def _resolve(self, value: str | os.PathLike) -> Path:
        p = Path(os.path.expandvars(os.fspath(value))).expanduser()
        return p if p.is_absolute() else (self.repo_root / p)

    @property
    def data_root(self) -> Path | None:
        """The real data set's root, or None when it is absent.

        ``MEDIMG_<NAME>_ROOT`` wins when set (and must exist: a typo must not
        silently fall back to synthetic data); else ``data.root`` if it exists
        and holds anything besides a README.
        """
        env = os.environ.get(self.env_var)
        if env:
            root = self._resolve(env)
            if not root.is_dir():
                raise ConfigError(f"{self.env_var} points to {root}, which is not a directory")
            return root
        configured = self._data.get("root")
        if not configured:
            return None
        root = self._resolve(configured)
        if root.is_dir() and any(p.name.lower() != "readme.md" for p in root.iterdir()):
            return root
        return None

    @property
    def synthetic_root(self) -> Path:
        """Where synthetic look-alike data for this data set and profile is written."""
        base = self._resolve(self._data.get("synthetic_root", "data/synthetic"))
        return base / f"{self.name}-{self.profile}"

    def __repr__(self) -> str:
        return f"Config(name={self.name!r}, profile={self.profile!r}, values={self._values!r})"


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


def _check_override(path: Path, key: str, default: Any, value: Any) -> None:
    if default is None or value is None:
        return
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(default, bool) and isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float)
    elif isinstance(default, int):
        ok = isinstance(value, int)
    elif isinstance(default, list):
        ok = isinstance(value, list)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(
            f"key {key!r} is {_type_name(value)} ({value!r}), expected {_type_name(default)} "
            f"like the default {default!r}",
            path,
        )


def _merge(path: Path, defaults: Mapping[str, Any], override: Mapping[str, Any],
           where: str) -> dict[str, Any]:
    merged = copy.deepcopy(dict(defaults))
    for key, value in override.items():
        dotted = f"{where}.{key}" if where else str(key)
        if key not in defaults:
            known = ", ".join(sorted(map(str, defaults))) or "none"
            raise ConfigError(f"unknown key {dotted!r} (known keys here: {known})", path)
        default = defaults[key]
        if isinstance(default, Mapping):
            if not isinstance(value, Mapping):
                raise ConfigError(f"key {dotted!r} must be a mapping, got {value!r}", path)
            merged[key] = _merge(path, default, value, dotted)
        else:
            _check_override(path, dotted, default, value)
            merged[key] = copy.deepcopy(value)
    return merged


def load_config(name: str | os.PathLike, profile: str | None = None, *,
                config_dir: str | os.PathLike | None = None,
                overrides: Mapping[str, Any] | None = None) -> Config:
    """Load ``configs/<name>.yaml`` under a profile, validated.

    Parameters
    ----------
    name : str or os.PathLike
        ``rsna``, ``brats``, ``verse``, or a path to a YAML file.
    profile : str, optional
        ``smoke``, ``demo`` or ``full``; defaults to ``$MEDIMG_PROFILE``, then ``demo``.
    config_dir : path, optional
        Folder of the YAML files; defaults to ``configs/`` of the repository.
    overrides : mapping, optional
        Extra overrides applied after the profile, validated the same way
        (e.g. ``{"epochs": 1}``).

    Returns
    -------
    Config

    Raises
    ------
    ConfigError
        Missing file, invalid YAML, unknown top-level or profile key, wrong type,
        unknown profile. The message names the file and the key.

    Examples
    --------
    >>> cfg = load_config("rsna", "smoke")            # doctest: +SKIP
    >>> cfg.seed, cfg.profile, cfg.data_root           # doctest: +SKIP
    (42, 'smoke', None)
    """
    import yaml

    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml"):
        path = candidate.resolve()
        repo_root = find_repo_root(path.parent)
    else:
        repo_root = find_repo_root()
        directory = Path(config_dir) if config_dir else repo_root / "configs"
        path = directory / f"{name}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        raise ConfigError(f"config file not found (available: {', '.join(available) or 'none'})",
                          path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"invalid YAML{where}: {getattr(exc, 'problem', exc)}", path) from None
    if not isinstance(raw, dict):
        raise ConfigError("expected a mapping at the top level", path)
    unknown = set(raw) - _TOP_LEVEL
    if unknown:
        raise ConfigError(f"unknown top-level key {sorted(unknown)[0]!r} "
                          f"(expected: {', '.join(sorted(_TOP_LEVEL))})", path)
    for key in ("name", "defaults"):
        if key not in raw:
            raise ConfigError(f"missing key {key!r}", path)
    if not isinstance(raw["name"], str):
        raise ConfigError("key 'name' must be a string", path)
    defaults = raw.get("defaults") or {}
    profiles = raw.get("profiles") or {}
    data = raw.get("data") or {}
    for key, value, kind in (("defaults", defaults, dict), ("profiles", profiles, dict),
                             ("data", data, dict)):
        if not isinstance(value, kind):
            raise ConfigError(f"key {key!r} must be a mapping", path)
    for section, keys in REQUIRED_SECTIONS.items():
        if section not in defaults:
            raise ConfigError(f"missing key 'defaults.{section}' (every config has "
                              f"{', '.join(REQUIRED_SECTIONS)})", path)
        if keys is not None:
            if not isinstance(defaults[section], dict):
                raise ConfigError(f"key 'defaults.{section}' must be a mapping", path)
            missing = [k for k in keys if k not in defaults[section]]
            if missing:
                raise ConfigError(f"missing key 'defaults.{section}.{missing[0]}'", path)
    if "task" in raw and not isinstance(raw["task"], str):
        raise ConfigError("key 'task' must be a string", path)
    bad_data = set(data) - _DATA_KEYS
    if bad_data:
        raise ConfigError(f"unknown key 'data.{sorted(bad_data)[0]}' "
                          f"(expected: {', '.join(sorted(_DATA_KEYS))})", path)
    for key, value in data.items():
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"key 'data.{key}' must be a path (a string), got "
                              f"{_type_name(value)} ({value!r})", path)
    for profile_name, profile_values in profiles.items():
        if profile_values is not None and not isinstance(profile_values, dict):
            raise ConfigError(f"profile {profile_name!r} must be a mapping of overrides, got "
                              f"{_type_name(profile_values)} ({profile_values!r})", path)
        if profile_name not in PROFILES:
            raise ConfigError(f"unknown profile {profile_name!r} under 'profiles' "
                              f"(expected one of {', '.join(PROFILES)})", path)

    chosen = profile or os.environ.get("MEDIMG_PROFILE") or DEFAULT_PROFILE
    if chosen not in PROFILES:
        source = "argument" if profile else "MEDIMG_PROFILE"
        raise ConfigError(f"unknown profile {chosen!r} (from {source}); "
                          f"expected one of {', '.join(PROFILES)}", path)
    # Every profile is validated, not just the chosen one: a typo in `full` should
    # surface on the first smoke run, not after hours on a cluster.
    merged = {p: _merge(path, defaults, profiles.get(p) or {}, "") for p in PROFILES}
    values = merged[chosen]
    if overrides:
        values = _merge(path, values, overrides, "")
    return Config(name=raw["name"], profile=chosen, path=path, repo_root=repo_root,
                  data=data, values=values, description=raw.get("description", ""),
                  task=raw.get("task"))
