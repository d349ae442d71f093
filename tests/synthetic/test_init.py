"""medimg.synthetic: the generators are public at the package level, imported lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_generators_import_from_the_package():
    from medimg.synthetic import make_brats, make_rsna, make_verse
    from medimg.synthetic.brats import make_brats as brats_fn
    from medimg.synthetic.rsna import make_rsna as rsna_fn
    from medimg.synthetic.verse import make_verse as verse_fn

    assert (make_rsna, make_brats, make_verse) == (rsna_fn, brats_fn, verse_fn)
    import medimg.synthetic as synthetic

    assert {"make_rsna", "make_brats", "make_verse"} <= set(synthetic.__all__) & set(dir(synthetic))
    with pytest.raises(AttributeError, match="make_nothing"):
        synthetic.make_nothing  # noqa: B018


def test_package_import_stays_lazy():
    code = ("import sys, medimg.synthetic; "
            "print(sorted(m for m in sys.modules if m.startswith('medimg.synthetic.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


FAKE_GENERATOR = '''
import json
from pathlib import Path

def make_fake(root, n=1, seed=0):
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    calls = root.parent / "calls.txt"
    calls.write_text(calls.read_text() + "x" if calls.exists() else "x")
    (root / "data.json").write_text(json.dumps({"n": n, "seed": seed}))
'''


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A config named ``fake`` whose generator is a module written to ``tmp_path``."""
    import medimg.synthetic as synthetic
    from medimg.config import load_config

    (tmp_path / "fake_generator.py").write_text(FAKE_GENERATOR)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(synthetic.GENERATORS, "fake", ("fake_generator", "make_fake"))
    monkeypatch.delenv("MEDIMG_FAKE_ROOT", raising=False)
    path = tmp_path / "fake.yaml"
    path.write_text(f"""name: fake
data:
  root: {tmp_path / "real"}
  synthetic_root: {tmp_path / "synthetic"}
defaults:
  seed: 1
  n_jobs: 1
  synthetic: {{n: 2}}
  split: {{validation_fraction: 0.2, test_fraction: 0.2}}
  train: {{epochs: 1, batch_size: 1, learning_rate: 0.001, patience: 1}}
profiles:
  smoke: {{synthetic: {{n: 3}}}}
  demo: {{}}
  full: {{}}
""")

    def calls() -> int:
        record = tmp_path / "synthetic" / "calls.txt"
        return len(record.read_text()) if record.exists() else 0

    return lambda profile="demo": load_config(path, profile), calls, tmp_path


def test_ensure_data_reuses_only_what_the_same_settings_and_code_wrote(fake, monkeypatch):
    from medimg import synthetic

    config, calls, folder = fake
    root = synthetic.ensure_data(config(), verbose=False)
    assert root == folder / "synthetic" / "fake-demo" and calls() == 1
    assert synthetic.ensure_data(config(), verbose=False) == root and calls() == 1  # reused
    synthetic.ensure_data(config("smoke"), verbose=False)  # other settings: own folder
    assert calls() == 2
    synthetic.ensure_data(config(), force=True, verbose=False)
    assert calls() == 3
    # an interrupted run (no marker written last) is not taken for complete
    (root / synthetic._MARKER).unlink()
    synthetic.ensure_data(config(), verbose=False)
    assert calls() == 4
    # the generator's code changed: written again
    generator = folder / "fake_generator.py"
    generator.write_text(generator.read_text() + "\n# a change\n")
    synthetic.ensure_data(config(), verbose=False)
    assert calls() == 5


def test_a_change_to_a_shared_helper_of_the_generators_changes_their_key(monkeypatch,
                                                                         tmp_path):
    """The phantoms share private helpers (``synthetic/_fields.py``): the key of the
    generated data covers them too, or a changed helper would leave stale data reused."""
    from medimg import synthetic

    for module in ("medimg.synthetic.brats", "medimg.synthetic.verse"):
        sources = synthetic._generator_sources(module)
        assert sources[0].name == module.rsplit(".", 1)[1] + ".py"
        assert "_fields.py" in [p.name for p in sources]
    key = synthetic._source_hash("medimg.synthetic.brats")
    copies = []
    for path in synthetic._generator_sources("medimg.synthetic.brats"):
        copy = tmp_path / path.name
        copy.write_bytes(path.read_bytes())
        copies.append(copy)
    monkeypatch.setattr(synthetic, "_generator_sources", lambda name: copies)
    assert synthetic._source_hash("medimg.synthetic.brats") == key
    helper = next(c for c in copies if c.name == "_fields.py")
    helper.write_bytes(helper.read_bytes() + b"# changed\n")
    assert synthetic._source_hash("medimg.synthetic.brats") != key


def test_the_real_data_set_wins_over_synthetic_data(fake, monkeypatch):
    from medimg import synthetic
    from medimg.errors import ConfigError

    config, calls, folder = fake
    (folder / "real").mkdir()
    (folder / "real" / "README.md").write_text("where to get it")
    synthetic.ensure_data(config(), verbose=False)  # a README alone is not a data set
    assert calls() == 1
    (folder / "real" / "case.nii.gz").write_bytes(b"")
    assert synthetic.ensure_data(config(), verbose=False) == folder / "real"
    monkeypatch.setenv("MEDIMG_FAKE_ROOT", str(folder / "elsewhere"))
    with pytest.raises(ConfigError, match="MEDIMG_FAKE_ROOT"):
        synthetic.ensure_data(config(), verbose=False)
    assert calls() == 1
