"""N4 bias-field correction: the field is found, removed, and errors are clear."""

from __future__ import annotations

import numpy as np
import pytest

from medimg.bias import n4_correct
from medimg.errors import InvalidImageError
from medimg.io import Volume
from medimg.synthetic.brats import synthesize_subject


@pytest.fixture(scope="module")
def subject():
    return synthesize_subject((64, 64, 48), seed=3)


def _cv(values):
    return float(values.std() / values.mean())


def test_recovers_known_field_and_reduces_wm_variation(subject):
    image = subject.images["t1"].astype(np.float32)
    brain = image > 0
    corrected, field = n4_correct(image, brain, return_field=True)
    true = subject.bias_fields["t1"]
    r = np.corrcoef(np.log(field[brain]), np.log(true[brain]))[0, 1]
    assert r > 0.5
    wm = subject.tissue == 3
    assert _cv(corrected[wm]) < 0.8 * _cv(image[wm])
    assert np.all(np.isfinite(corrected)) and corrected.dtype == np.float32
    assert np.allclose(corrected * field, image, rtol=1e-4, atol=1e-3)


def test_volume_in_volume_out_and_otsu_default(subject):
    image = subject.images["t2"].astype(np.float32)
    volume = Volume(image, np.diag([1.0, 1.0, 1.0, 1.0]))
    out = n4_correct(volume)
    assert isinstance(out, Volume) and np.allclose(out.affine, volume.affine)
    assert out.shape == image.shape and np.all(np.isfinite(out.array))


def test_two_tissue_phantom_field_is_recovered():
    x, y, z = np.mgrid[0:64, 0:64, 48:0:-1].astype(np.float32)
    inside = ((x - 32) ** 2 + (y - 32) ** 2 + ((z - 24) * 1.3) ** 2) < 28**2
    truth = np.where(inside, 100 + 50 * ((x // 8) % 2), 0).astype(np.float32)
    field = np.exp(0.3 * (x - 32) / 32 + 0.2 * (z - 24) / 24).astype(np.float32)
    corrected, estimate = n4_correct(truth * field, inside, return_field=True)
    assert np.corrcoef(np.log(estimate[inside]), np.log(field[inside]))[0, 1] > 0.99
    bright = truth == 150
    assert _cv(corrected[bright]) < 0.1 * _cv((truth * field)[bright])


@pytest.mark.parametrize("bad, message", [
    (np.zeros((8, 8)), "3-D"),
    (np.full((16, 16, 16), np.nan, np.float32), "NaN"),
])
def test_bad_input(bad, message):
    with pytest.raises(InvalidImageError, match=message):
        n4_correct(bad)


def test_bad_mask():
    image = np.ones((16, 16, 16), np.float32)
    with pytest.raises(InvalidImageError, match="mask has shape"):
        n4_correct(image, np.ones((4, 4, 4), bool))
    with pytest.raises(InvalidImageError, match="positive"):
        n4_correct(image, np.zeros(image.shape, bool))
