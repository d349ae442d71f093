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
