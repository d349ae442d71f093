"""N4 bias-field correction (issue 4) on a small phantom with a known multiplicative
field: the estimated field follows the truth, white matter becomes uniform; Volume and
array inputs, masks, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from medimg.bias import n4_correct
from medimg.errors import InvalidImageError
from medimg.io import Volume

SHAPE = (40, 40, 32)


def _cv(values):
    return float(values.std() / values.mean())


@pytest.fixture(scope="module")
def phantom():
    """Ellipsoid 'brain' (grey shell 600, white core 1000) times a smooth known field."""
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in SHAPE], indexing="ij"), -1)
    radius = np.sqrt(((grid / [0.85, 0.9, 0.9]) ** 2).sum(-1))
    brain = radius < 1
    white = radius < 0.55
    log_field = 0.25 * grid[..., 0] - 0.2 * grid[..., 1] + 0.15 * grid[..., 2] * grid[..., 0]
    truth = np.where(white, 1000.0, 600.0) * brain
    image = (truth * np.exp(log_field) + rng.normal(0, 15, SHAPE) * brain).astype(np.float32)
    image[~brain] = 0
    return image, brain, white, log_field


def test_n4_recovers_the_known_field(phantom):
    image, brain, white, log_field = phantom
    corrected, field = n4_correct(image, brain, return_field=True, spacing=(1.5, 1.5, 2.0))
    assert corrected.dtype == np.float32 and field.dtype == np.float32
    assert corrected.shape == field.shape == SHAPE
    assert np.all(np.isfinite(field)) and np.all(field > 0)
    correlation = np.corrcoef(np.log(field[brain]), log_field[brain])[0, 1]
    assert correlation > 0.95
    assert _cv(image[white]) > 0.06
    assert _cv(corrected[white]) < 0.5 * _cv(image[white])
    # image ~ corrected * field, everywhere (the field is defined outside the mask too)
    np.testing.assert_allclose(corrected * field, image, rtol=1e-4, atol=1e-3)


def test_n4_volume_and_array_inputs_agree(phantom):
    image, brain, _, _ = phantom
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    volume = Volume(image, affine, {"path": "phantom.nii.gz"})
    from_volume = n4_correct(volume, brain)
    assert isinstance(from_volume, Volume)
    np.testing.assert_allclose(from_volume.affine, affine)
    from_array = n4_correct(image, brain, spacing=(1.5, 1.5, 2.0))
    assert isinstance(from_array, np.ndarray)
    np.testing.assert_allclose(from_volume.array, from_array, rtol=1e-5)


def test_n4_default_otsu_mask(phantom):
    image, brain, white, log_field = phantom
    corrected, field = n4_correct(image, return_field=True)
    assert np.all(np.isfinite(corrected)) and np.all(np.isfinite(field))
    assert np.corrcoef(np.log(field[brain]), log_field[brain])[0, 1] > 0.9
    assert _cv(corrected[white]) < 0.5 * _cv(image[white])


def test_n4_full_resolution_and_shrunk_fits_agree(phantom):
    image, brain, _, _ = phantom
    _, full = n4_correct(image, brain, shrink=1, return_field=True, iterations=(20, 20))
    _, shrunk = n4_correct(image, brain, shrink=4, return_field=True, iterations=(20, 20))
    assert np.corrcoef(np.log(full[brain]), np.log(shrunk[brain]))[0, 1] > 0.95


def test_n4_mask_restricts_the_fit(phantom):
    image, brain, _, _ = phantom
    # a field fitted only on one half knows nothing of the other: it differs from the
    # whole-brain fit (the mask is really used), yet stays finite everywhere
    half = brain.copy()
    half[: SHAPE[0] // 2] = False
    _, whole = n4_correct(image, brain, return_field=True)
    _, partial = n4_correct(image, half, return_field=True)
    assert np.all(np.isfinite(partial))
    assert not np.allclose(whole, partial, rtol=1e-3)
    # voxels <= 0 inside the mask are left out (log of 0 would poison the fit)
    everything = np.ones(SHAPE, bool)
    corrected = n4_correct(image, everything)
    assert np.all(np.isfinite(corrected))


def test_n4_bad_input(phantom):
    image, brain, _, _ = phantom
    with pytest.raises(InvalidImageError, match="3-D"):
        n4_correct(image[..., 0])
    bad = image.copy()
    bad[3, 3, 3] = np.nan
    with pytest.raises(InvalidImageError, match="NaN") as info:
        n4_correct(Volume(bad, np.eye(4), {"path": "sub_flair.nii.gz"}), brain)
    assert "sub_flair.nii.gz" in str(info.value)
    with pytest.raises(InvalidImageError, match="mask has shape"):
        n4_correct(image, brain[:-1])
    with pytest.raises(InvalidImageError, match="mask"):
        n4_correct(image, np.zeros(SHAPE, bool))
    with pytest.raises(InvalidImageError, match="shrink"):
        n4_correct(image, brain, shrink=0)
    with pytest.raises(InvalidImageError, match="iterations"):
        n4_correct(image, brain, iterations=())
