"""Synthetic look-alike data sets written in the real on-disk layouts.

``make_rsna`` (chest X-ray DICOMs), ``make_brats`` (BraTS 2020 MRI NIfTI) and
``make_verse`` (VerSe CT NIfTI) and ``make_msd`` (a small prostate-like MRI data set in
the nnU-Net or Decathlon layout, for the generic segmentation pipeline) write data that the real-data code paths read
unchanged, so every notebook runs on a fresh machine. :func:`ensure_data` is what
notebooks call: the real data set when it is there, else synthetic data (generated
once per profile, reused afterwards).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._fsutil import atomic_write_text
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["GENERATORS", "ensure_data", "make_brats", "make_msd", "make_rsna", "make_verse"]

#: data set name -> (module, function) of its generator; the function is called as
#: ``fn(root, **cfg.synthetic, seed=cfg.seed)``.
GENERATORS: dict[str, tuple[str, str]] = {
    "rsna": ("medimg.synthetic.rsna", "make_rsna"),
    "brats": ("medimg.synthetic.brats", "make_brats"),
    "verse": ("medimg.synthetic.verse", "make_verse"),
    "segmentation": ("medimg.synthetic.msd", "make_msd"),
}
_MARKER = ".medimg-synthetic.json"


def __getattr__(name: str) -> Any:
    """``make_rsna``, ``make_brats``, ``make_verse`` on first use (PEP 562).

    Importing a generator module pulls in pydicom/OpenCV/nibabel (about 0.2 s);
    ``import medimg.synthetic`` stays light until a generator is asked for.
    """
    for module_name, function_name in GENERATORS.values():
        if name == function_name:
            function = getattr(importlib.import_module(module_name), function_name)
            globals()[name] = function
            return function
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def ensure_data(cfg: Config, *, force: bool = False, verbose: bool = True) -> Path:
    """Root of the data set for ``cfg``: the real one if present, else synthetic.

    The real root comes from ``MEDIMG_<NAME>_ROOT`` or the config's ``data.root``.
    When it is absent, synthetic data is generated under ``cfg.synthetic_root`` with
    the config's ``synthetic`` settings and ``seed``. A marker file written last
    records those settings and a hash of the generator's source: a complete folder
    with the same settings from the same generator code is reused; an interrupted,
    differently-configured or older-generator one is regenerated.

    Parameters
    ----------
    cfg : Config
        From :func:`medimg.config.load_config`; needs ``seed`` and a ``synthetic``
        section holding the generator's keyword arguments.
    force : bool
        Regenerate even if a complete synthetic folder exists.

    Returns
    -------
    pathlib.Path
    """
    real = cfg.data_root
    if real is not None:
        if verbose:
            print(f"[medimg] {cfg.name}: using the real data set at {real}")
        return real
    if cfg.name not in GENERATORS:
        raise ConfigError(f"no synthetic generator for data set {cfg.name!r}", cfg.path)
    if "synthetic" not in cfg:
        raise ConfigError("missing key 'defaults.synthetic' (generator settings)", cfg.path)
    params: dict[str, Any] = {**cfg.synthetic.to_dict(), "seed": cfg.seed}
    root = cfg.synthetic_root
    marker = root / _MARKER
    module_name, function_name = GENERATORS[cfg.name]
    # the generator's own code is part of the key: a changed phantom is regenerated
    stamp = {"params": params, "generator": _source_hash(module_name)}
    if not force and marker.is_file():
        try:
            if json.loads(marker.read_text()) == stamp:
                if verbose:
                    print(f"[medimg] {cfg.name}: reusing synthetic data at {root}")
                return root
        except json.JSONDecodeError:
            pass
    if root.exists():
        shutil.rmtree(root)
    generator = getattr(importlib.import_module(module_name), function_name)
    if verbose:
        print(f"[medimg] {cfg.name}: no real data set ({cfg.env_var} unset); "
              f"writing synthetic data to {root}")
    generator(root, **params)
    atomic_write_text(marker, json.dumps(stamp, sort_keys=True))
    return root


def _generator_sources(module_name: str) -> list[Path]:
    """The files a generator's output depends on: its module's source and the package's
    private helper modules (``synthetic/_*.py``), found without importing them."""
    spec = importlib.util.find_spec(module_name)
    origin = spec.origin if spec is not None else None
    if not origin:
        return []
    helpers = sorted(p for p in Path(__file__).parent.glob("_*.py") if p.name != "__init__.py")
    return [Path(origin), *helpers]


def _source_hash(module_name: str) -> str:
    """Hash of :func:`_generator_sources` (names and bytes): a change to the generator
    or to a helper it may draw on makes :func:`ensure_data` write the data again."""
    import hashlib

    sources = _generator_sources(module_name)
    if not sources:
        return "unknown"
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]
