"""intensity.window (NumPy and tf.Tensor agree) and intensity.dicom_window (the DICOM VOI,
checked against pydicom's own implementation)."""

from __future__ import annotations

import copy

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

from medimg.errors import InvalidImageError
from medimg.intensity import dicom_window, window
from medimg.io import dicom_pixels


def _file(name):
    return pydicom.dcmread(get_testdata_file(name, download=False))


def _pydicom_normalised(ds, index=0):
    """pydicom's VOI output scaled to [0, 1] the way dicom_window documents."""
    arr = apply_modality_lut(ds.pixel_array, ds)
    out = apply_voi_lut(arr, ds, index=index).astype(np.float64)
    if ds.get("VOILUTSequence"):
        bits = int(ds.VOILUTSequence[index].LUTDescriptor[2])
        return out / (2.0**bits - 1)
    if ds.PixelRepresentation == 0:
        low, high = 0.0, 2.0**ds.BitsStored - 1
    else:
        low, high = -(2.0 ** (ds.BitsStored - 1)), 2.0 ** (ds.BitsStored - 1) - 1
    slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
    low, high = low * slope + intercept, high * slope + intercept
    return (out - low) / (high - low)


# ------------------------------------------------------------------------------ window
def test_window_clips_and_rescales():
    out = window(np.array([-1000.0, -160.0, 40.0, 240.0, 3000.0]), center=40, width=400)
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0])
    assert out.dtype == np.float32


def test_window_without_rescale_keeps_units():
    out = window(np.array([-1000.0, 40.0, 3000.0]), center=40, width=400, rescale=False)
    np.testing.assert_allclose(out, [-160.0, 40.0, 240.0])


@pytest.mark.parametrize("width", [0, -5, np.inf, np.nan])
def test_window_rejects_bad_width(width):
    with pytest.raises(InvalidImageError, match="width"):
        window(np.zeros(3), center=0, width=width)


@pytest.mark.parametrize("rescale", [True, False])
@pytest.mark.parametrize(("center", "width"), [(40, 400), (-600, 1500), (400, 1800)])
def test_window_numpy_and_tensorflow_agree(rng, center, width, rescale):
    tf = pytest.importorskip("tensorflow")
    image = rng.uniform(-1100, 2000, size=(2, 16, 16)).astype(np.float32)
    expected = window(image, center, width, rescale=rescale)
    got = window(tf.constant(image), center, width, rescale=rescale)
    assert tf.is_tensor(got)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=1e-5)


def test_window_works_inside_tf_function(rng):
    tf = pytest.importorskip("tensorflow")
    image = rng.uniform(-1000, 1000, size=(8, 8)).astype(np.float32)
    fn = tf.function(lambda x: window(x, -600, 1500))
    np.testing.assert_allclose(fn(tf.constant(image)).numpy(), window(image, -600, 1500),
                               atol=1e-6)


def test_window_on_real_ct_soft_tissue():
    hu = dicom_pixels(get_testdata_file("CT_small.dcm", download=False))
    shown = window(hu, 40, 400)
    assert shown.min() == 0.0 and shown.max() == 1.0
    # pixels inside the window map linearly, the rest saturate
    inside = (hu > -160) & (hu < 240)
    np.testing.assert_allclose(shown[inside], (hu[inside] + 160) / 400, atol=1e-6)


# ------------------------------------------------------------------------ dicom_window
def test_dicom_window_matches_pydicom_on_mr():
    ds = _file("MR_small.dcm")
    got = dicom_window(ds, dicom_pixels(ds))
    np.testing.assert_allclose(got, _pydicom_normalised(ds), atol=1e-6)
    assert 0.0 < got.mean() < 1.0


def test_dicom_window_multi_valued_index():
    ds = _file("examples_overlay.dcm")  # Window Center [450, 200]
    image = dicom_pixels(ds)
    first, second = dicom_window(ds, image, 0), dicom_window(ds, image, 1)
    np.testing.assert_allclose(first, _pydicom_normalised(ds, 0), atol=1e-6)
    np.testing.assert_allclose(second, _pydicom_normalised(ds, 1), atol=1e-6)
    assert not np.allclose(first, second)
    with pytest.raises(InvalidImageError, match="index 2"):
        dicom_window(ds, image, 2)


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
@pytest.mark.parametrize(("center", "width"), [(600, 1200), (300.5, 1), (1000, 37)])
def test_dicom_window_functions_match_pydicom(function, center, width):
    ds = _file("MR_small.dcm")
    ds.VOILUTFunction = function
    ds.WindowCenter, ds.WindowWidth = center, width
    expected = _pydicom_normalised(ds)
    np.testing.assert_allclose(dicom_window(ds, dicom_pixels(ds)), expected, atol=1e-6)


def test_dicom_window_rescaled_ct_matches_pydicom():
    ds = _file("CT_small.dcm")
    ds.WindowCenter, ds.WindowWidth = 40, 400
    np.testing.assert_allclose(dicom_window(ds, dicom_pixels(ds)), _pydicom_normalised(ds),
                               atol=1e-6)


def test_dicom_window_prefers_voi_lut_sequence_like_pydicom():
    ds = _file("MR_small.dcm")
    item = Dataset()
    item.LUTDescriptor = [1024, 500, 12]  # entries, first input value mapped, bits
    item.LUTData = [int(v) for v in np.linspace(0, 4095, 1024)]
    ds.VOILUTSequence = [item]
    got = dicom_window(ds, dicom_pixels(ds))
    np.testing.assert_allclose(got, _pydicom_normalised(ds), atol=1e-6)
    pixels = dicom_pixels(ds)
    assert np.all(got[pixels < 500] == 0.0) and np.all(got[pixels >= 1523] == 1.0)


def test_dicom_window_monochrome1_is_inverted_back():
    ds = _file("MR_small.dcm")
    mono1 = copy.deepcopy(ds)
    mono1.PhotometricInterpretation = "MONOCHROME1"
    # dicom_pixels inverted MONOCHROME1 (brighter = denser); the windowed display must
    # be the standard VOI of the stored values, shown inverted (1 = white = dense)
    shown = dicom_window(mono1, dicom_pixels(mono1))
    np.testing.assert_allclose(shown, 1.0 - _pydicom_normalised(ds), atol=1e-6)


def test_dicom_window_tensorflow_agrees_with_numpy():
    tf = pytest.importorskip("tensorflow")
    for name, tweak in (("MR_small.dcm", {}), ("MR_small.dcm", {"VOILUTFunction": "SIGMOID"}),
                        ("CT_small.dcm", {"WindowCenter": 40, "WindowWidth": 400})):
        ds = _file(name)
        for key, value in tweak.items():
            setattr(ds, key, value)
        image = dicom_pixels(ds)
        np.testing.assert_allclose(dicom_window(ds, tf.constant(image)).numpy(),
                                   dicom_window(ds, image), atol=1e-6)


def test_dicom_window_tensorflow_lut_and_monochrome1_agree_with_numpy():
    tf = pytest.importorskip("tensorflow")
    ds = _file("MR_small.dcm")
    item = Dataset()
    item.LUTDescriptor = [1024, 500, 12]
    item.LUTData = [int(v) for v in np.linspace(0, 4095, 1024)]
    ds.VOILUTSequence = [item]
    ds.PhotometricInterpretation = "MONOCHROME1"
    image = dicom_pixels(ds)
    fn = tf.function(lambda x: dicom_window(ds, x))
    np.testing.assert_allclose(fn(tf.constant(image)).numpy(), dicom_window(ds, image),
                               atol=1e-6)


def test_dicom_window_without_voi_is_an_error():
    ds = _file("CT_small.dcm")  # no Window Center/Width
    with pytest.raises(InvalidImageError, match="no VOI"):
        dicom_window(ds, dicom_pixels(ds))


def test_dicom_window_rejects_width_below_one_for_linear():
    ds = _file("MR_small.dcm")
    ds.WindowWidth = 0.5
    with pytest.raises(InvalidImageError, match="Window Width"):
        dicom_window(ds, dicom_pixels(ds))
