"""medimg.io DICOM: pixels (every syntax, Modality LUT, MONOCHROME1, multi-frame), bad input,
series -> Volume geometry (LPS -> RAS+), and the metadata table."""

from __future__ import annotations

import copy
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels.processing import apply_modality_lut
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medimg.errors import DecodeError, InvalidImageError
from medimg.io import (
    LPS_TO_RAS,
    dicom_metadata,
    dicom_pixels,
    header_table,
    opaque_ids,
    parse_age,
    read_dicom,
    read_nifti,
    read_series,
    write_nifti,
)


def _path(name: str) -> str:
    return get_testdata_file(name, download=False)


# ------------------------------------------------------------------------------ pixels
@pytest.mark.parametrize("name", [
    "CT_small.dcm",                     # explicit little endian, rescaled (HU)
    "MR_small.dcm",
    "MR_small_bigendian.dcm",           # explicit big endian
    "MR_small_implicit.dcm",
    "MR_small_RLE.dcm",                 # RLE lossless
    "MR_small_jpeg_ls_lossless.dcm",    # JPEG-LS
    "MR_small_jp2klossless.dcm",        # JPEG 2000 lossless
    "image_dfl.dcm",                    # deflated
    "693_J2KI.dcm",                     # JPEG 2000, rescaled CT
])
def test_dicom_pixels_matches_pydicom_with_modality_lut(name):
    ds = pydicom.dcmread(_path(name))
    expected = apply_modality_lut(ds.pixel_array, ds)
    got = dicom_pixels(_path(name))
    assert got.dtype == np.float32
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-3)


def test_all_mr_syntaxes_decode_to_the_same_image():
    reference = dicom_pixels(_path("MR_small.dcm"))
    for name in ("MR_small_bigendian.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm",
                 "MR_small_jp2klossless.dcm"):
        np.testing.assert_array_equal(dicom_pixels(_path(name)), reference, err_msg=name)


def test_ct_comes_out_in_hounsfield_units():
    ds = pydicom.dcmread(_path("CT_small.dcm"))
    hu = dicom_pixels(ds)
    assert float(ds.RescaleIntercept) != 0 or float(ds.RescaleSlope) != 1
    np.testing.assert_allclose(
        hu, ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    raw = dicom_pixels(ds, modality_lut=False)
    np.testing.assert_array_equal(raw, ds.pixel_array.astype(np.float32))


def test_jpeg_baseline_grey_decodes_close_to_pylibjpeg(tmp_path):
    from medimg.synthetic.rsna import make_rsna

    root = make_rsna(tmp_path / "rsna", 2, seed=3, n_test_patients=0, image_size=256,
                     draw_size=64, n_jobs=1, progress=False)
    path = next((root / "stage_2_train_images").glob("*.dcm"))
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    ds.pixel_array_options(decoding_plugin="pylibjpeg")
    reference = ds.pixel_array.astype(np.float32)
    got = dicom_pixels(path)
    assert got.shape == (256, 256)
    # JPEG lets conforming decoders differ by one grey level (IDCT rounding)
    assert np.abs(got - reference).max() <= 1.0
    assert np.mean(got != reference) < 0.05


def test_monochrome1_is_inverted_so_denser_is_brighter():
    ds = pydicom.dcmread(_path("CT_small.dcm"))
    hu = dicom_pixels(ds)
    mono1 = copy.deepcopy(ds)
    mono1.PhotometricInterpretation = "MONOCHROME1"
    inverted = dicom_pixels(mono1)
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    low, high = -(2.0 ** (ds.BitsStored - 1)), 2.0 ** (ds.BitsStored - 1) - 1
    if ds.PixelRepresentation == 0:
        low, high = 0.0, 2.0**ds.BitsStored - 1
    mirror = (low + high) * slope + 2 * intercept
    np.testing.assert_allclose(inverted, mirror - hu)
    # order reversed: the brightest stored pixel is now the darkest
    assert np.argmax(hu) == np.argmin(inverted)
    np.testing.assert_allclose(dicom_pixels(mono1, invert_monochrome1=False), hu)


def test_multiframe_shape_is_frames_rows_cols():
    ds = pydicom.dcmread(_path("rtdose.dcm"))
    got = dicom_pixels(ds)
    assert got.shape == (int(ds.NumberOfFrames), ds.Rows, ds.Columns)


def test_colour_keeps_a_channel_axis():
    got = dicom_pixels(_path("SC_rgb_rle_2frame.dcm"))
    assert got.shape == (2, 100, 100, 3)


def test_not_dicom_is_a_decode_error_naming_the_file(tmp_path):
    bad = tmp_path / "notes.dcm"
    bad.write_text("this is not DICOM")
    with pytest.raises(DecodeError, match="not a DICOM file") as info:
        dicom_pixels(bad)
    assert str(bad) in str(info.value)


def test_missing_file_is_a_decode_error(tmp_path):
    with pytest.raises(DecodeError, match="no such file"):
        read_dicom(tmp_path / "absent.dcm")


def test_truncated_pixel_data_is_a_decode_error():
    with pytest.raises(DecodeError, match="truncated") as info:
        dicom_pixels(_path("MR_truncated.dcm"))
    assert "MR_truncated.dcm" in str(info.value)


def test_truncated_file_is_a_decode_error(tmp_path):
    data = Path(_path("CT_small.dcm")).read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(DecodeError) as info:
        dicom_pixels(cut)
    assert "cut.dcm" in str(info.value)


def test_file_without_pixels_is_a_decode_error():
    with pytest.raises(DecodeError, match="no pixel data"):
        dicom_pixels(_path("rtplan.dcm"))


def test_missing_decoder_plugin_is_a_decode_error(monkeypatch):
    from pydicom.pixels import get_decoder

    # pretend pylibjpeg is not installed (pydicom's plugin registry, restored afterwards)
    decoder = get_decoder("1.2.840.10008.1.2.4.80")
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setitem(decoder._unavailable, "pylibjpeg", ("pylibjpeg", "pylibjpeg-libjpeg"))
    with pytest.raises(DecodeError, match="no decoder installed") as info:
        dicom_pixels(_path("MR_small_jpeg_ls_lossless.dcm"))
    assert "pylibjpeg" in str(info.value) and "MR_small_jpeg_ls_lossless.dcm" in str(info.value)


def test_unsupported_transfer_syntax_is_a_decode_error():
    ds = pydicom.dcmread(_path("MR_small_jpeg_ls_lossless.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.110"  # JPEG XL: no plugin installed
    with pytest.raises(DecodeError, match="1.2.840.10008.1.2.4.110"):
        dicom_pixels(ds)


def test_corrupt_compressed_stream_is_a_decode_error():
    # pydicom's own JPEG-lossy.dcm is a known-bad 12-bit stream no plugin decodes
    with pytest.raises(DecodeError, match="decoders failed"):
        dicom_pixels(_path("JPEG-lossy.dcm"))


# ------------------------------------------------------------------------------ series
def _unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


ORIENTATIONS = {
    "axial": ([1, 0, 0], [0, 1, 0]),
    "sagittal": ([0, 1, 0], [0, 0, -1]),
    "coronal": ([1, 0, 0], [0, 0, -1]),
    "oblique": (_unit([1, 0.3, 0.1]), None),
}


def _orientation(name):
    row, col = ORIENTATIONS[name]
    row = np.asarray(row, float)
    if col is None:  # any unit vector orthogonal to the row direction
        col = _unit(np.cross(row, [0.2, 0.1, 1.0]))
    return row, np.asarray(col, float)


def _write_series(folder: Path, *, orientation="axial", n_slices=5, rows=6, cols=7,
                  pixel_spacing=(0.8, 0.6), step=2.5, origin=(-20.0, 15.0, 30.0),
                  series_uid=None, seed=0, drop=(), duplicate=None):
    """Write a small CT series with shuffled file names; return (files, slices, positions)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    row_cos, col_cos = _orientation(orientation)
    normal = np.cross(row_cos, col_cos)
    series_uid = series_uid or generate_uid()
    order = rng.permutation(n_slices)
    written = []
    for k in range(n_slices):
        if k in drop:
            continue
        at = duplicate[1] if duplicate is not None and k == duplicate[0] else k
        position = np.asarray(origin) + at * step * normal
        stored = rng.integers(0, 3000, size=(rows, cols)).astype(np.uint16)
        intercept = float(rng.choice([-1024.0, -1000.0]))
        meta = FileMetaDataset()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.SeriesInstanceUID = series_uid
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row_cos, *col_cos)]
        ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
        ds.PixelSpacing = [str(pixel_spacing[0]), str(pixel_spacing[1])]
        ds.SliceThickness = "9.9"  # deliberately wrong: spacing must come from positions
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = "1", str(intercept)
        ds.PixelData = stored.tobytes()
        name = folder / f"IM{order[k]:04d}"
        ds.save_as(name, enforce_file_format=True)
        written.append((name, stored.astype(np.float32) + intercept, position))
    return written


def _world_ras(position_lps, row_cos, col_cos, pixel_spacing, r, c):
    lps = (np.asarray(position_lps) + c * pixel_spacing[1] * row_cos
           + r * pixel_spacing[0] * col_cos)
    return (LPS_TO_RAS @ np.append(lps, 1.0))[:3]


@pytest.mark.parametrize("orientation", list(ORIENTATIONS))
@pytest.mark.parametrize("canonical", [False, True])
def test_series_voxel_to_world_matches_every_slice(tmp_path, orientation, canonical):
    spacing = (0.8, 0.6)
    slices = _write_series(tmp_path / "s", orientation=orientation, pixel_spacing=spacing)
    (tmp_path / "s" / "README.txt").write_text("not DICOM, skipped")
    volume = read_series(tmp_path / "s", canonical=canonical)
    if not canonical:
        assert volume.array.shape == (7, 6, 5)  # (columns, rows, slices)
    row_cos, col_cos = _orientation(orientation)
    inverse = np.linalg.inv(volume.affine)
    for _, pixels, position in slices:
        for r, c in ((0, 0), (5, 6), (2, 3), (4, 1)):
            world = _world_ras(position, row_cos, col_cos, spacing, r, c)
            index = inverse @ np.append(world, 1.0)
            np.testing.assert_allclose(index[:3], np.round(index[:3]), atol=1e-3)
            i, j, k = np.round(index[:3]).astype(int)
            assert volume.array[i, j, k] == pixels[r, c]
    assert sorted(volume.spacing) == pytest.approx(sorted([0.6, 0.8, 2.5]), abs=1e-4)
    if canonical:
        assert volume.axcodes == ("R", "A", "S")


def test_series_axial_affine_is_lps_flipped(tmp_path):
    _write_series(tmp_path / "s", orientation="axial", origin=(-20.0, 15.0, 30.0))
    volume = read_series(tmp_path / "s", canonical=False)
    np.testing.assert_allclose(volume.affine[:3, 3], [20.0, -15.0, 30.0], atol=1e-4)
    np.testing.assert_allclose(np.diag(volume.affine)[:3], [-0.6, -0.8, 2.5], atol=1e-6)
    assert volume.axcodes == ("L", "P", "S")
    assert volume.meta["n_slices"] == 5


def test_series_round_trips_through_nifti(tmp_path):
    _write_series(tmp_path / "s", orientation="oblique")
    volume = read_series(tmp_path / "s")
    path = write_nifti(volume, tmp_path / "v.nii.gz")
    back = read_nifti(path)
    np.testing.assert_allclose(back.affine, volume.affine, atol=1e-4)
    np.testing.assert_array_equal(back.array, volume.array)


def test_series_mixed_series_is_an_error(tmp_path):
    _write_series(tmp_path / "s", series_uid="1.2.3.1", n_slices=3)
    other = _write_series(tmp_path / "o", series_uid="1.2.3.2", n_slices=3, origin=(0, 0, 100))
    for path, _, _ in other:
        shutil.move(path, tmp_path / "s" / f"X{path.name}")
    with pytest.raises(InvalidImageError, match="mixed series"):
        read_series(tmp_path / "s")
    assert read_series(tmp_path / "s", series_uid="1.2.3.2").meta["n_slices"] == 3


def test_series_inconsistent_orientation_is_an_error(tmp_path):
    _write_series(tmp_path / "s", n_slices=3, series_uid="1.2.3.4")
    odd = _write_series(tmp_path / "o", n_slices=1, series_uid="1.2.3.4",
                        orientation="coronal", origin=(0, 0, 60))
    shutil.move(odd[0][0], tmp_path / "s" / "ODD")
    with pytest.raises(InvalidImageError, match="inconsistent orientation"):
        read_series(tmp_path / "s")


def test_series_duplicate_slice_is_an_error(tmp_path):
    _write_series(tmp_path / "d", n_slices=4, duplicate=(3, 2))  # slice 3 where slice 2 is
    with pytest.raises(InvalidImageError, match="duplicate slice"):
        read_series(tmp_path / "d")


def test_series_missing_slice_is_an_error(tmp_path):
    _write_series(tmp_path / "s", n_slices=6, drop=(3,))
    with pytest.raises(InvalidImageError, match="missing slice"):
        read_series(tmp_path / "s")


def test_series_of_nothing_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidImageError, match="no DICOM"):
        read_series(tmp_path / "empty")


# ---------------------------------------------------------------------------- metadata
@pytest.mark.parametrize(("value", "expected"), [
    ("051Y", (51, None)), ("51", (51, None)), ("006M", (0, None)), ("", (None, None)),
    (None, (None, None)), ("003W", (0, None)), ("120", (120, None)),
])
def test_parse_age(value, expected):
    assert parse_age(value) == expected


@pytest.mark.parametrize("value", ["148", "155Y"])
def test_parse_age_flags_impossible(value):
    years, flag = parse_age(value)
    assert years is None and "impossible" in flag


def test_parse_age_flags_unreadable():
    assert parse_age("abc")[1] == "unreadable age 'abc'"


def _cr_file(path: Path, *, age="51", spacing=("0.143", "0.143"), view="PA", sex="M",
             patient="p-1", truncate=False):
    ds = pydicom.dcmread(_path("CT_small.dcm"))
    ds.PatientName = "Doe^Jane"
    ds.PatientBirthDate = "19700101"
    ds.PatientID = patient
    with warnings.catch_warnings():  # RSNA-style bare-digit ages are invalid AS on purpose
        warnings.simplefilter("ignore", UserWarning)
        ds.PatientAge = age
    ds.PatientSex = sex
    ds.ViewPosition = view
    ds.BodyPartExamined = "CHEST"
    if spacing is None:
        del ds.PixelSpacing
    else:
        ds.PixelSpacing = list(spacing)
    ds.save_as(path, enforce_file_format=True)
    if truncate:
        data = path.read_bytes()
        path.write_bytes(data[:-2000])
    return path


@pytest.fixture
def metadata_files(tmp_path):
    files = [
        _cr_file(tmp_path / "a.dcm", age="51", view="PA", sex="M", patient="p-1"),
        _cr_file(tmp_path / "b.dcm", age="148", view="AP", sex="F", patient="p-2"),
        _cr_file(tmp_path / "c.dcm", spacing=None, age="033Y", view="AP", patient="p-3"),
        _cr_file(tmp_path / "d.dcm", truncate=True, patient="p-4"),
    ]
    junk = tmp_path / "e.dcm"
    junk.write_bytes(b"\x00" * 10)
    return [*files, junk]


def test_metadata_types_flags_and_errors(metadata_files):
    table = dicom_metadata(metadata_files, n_jobs=1, progress=False)
    assert len(table) == 5
    assert list(table.path) == [str(p) for p in metadata_files]
    assert str(table.age_years.dtype) == "Int64"
    assert table.age_years[0] == 51 and table.age_years[2] == 33
    assert pd.isna(table.age_years[1])
    assert "impossible age '148'" in table.issues[1]
    assert "PixelSpacing missing" in table.issues[2]
    assert np.isnan(table.pixel_spacing_x_mm[2])
    assert table.pixel_spacing_x_mm[0] == pytest.approx(0.143)
    assert table.pixel_spacing_x_mm.dtype == np.float64
    assert isinstance(table.view_position.dtype, pd.CategoricalDtype)
    assert isinstance(table.sex.dtype, pd.CategoricalDtype)
    assert table.view_position.tolist()[:3] == ["PA", "AP", "AP"]
    # a header-only read does not touch the truncated pixel data ...
    assert pd.isna(table.error[3])
    # ... the junk file becomes a row with its error, and the batch went on
    assert "not a DICOM file" in table.error[4]
    assert pd.isna(table.patient_id[4])


def test_metadata_never_reads_names_or_birth_dates(metadata_files):
    table = dicom_metadata(metadata_files, n_jobs=1, progress=False)
    text = table.to_csv()
    assert "Doe" not in text and "19700101" not in text
    assert not any("name" in c.lower() or "birth" in c.lower() for c in table.columns)
    with pytest.raises(ValueError, match="PatientName"):
        dicom_metadata(metadata_files, fields=["PatientID", "PatientName"], progress=False)


def test_metadata_pixel_stats_decode_and_flag_truncation(metadata_files):
    table = dicom_metadata(metadata_files, pixel_stats=True, n_jobs=1, progress=False)
    hu = dicom_pixels(metadata_files[0])
    assert table.pixel_mean[0] == pytest.approx(float(hu.mean()), rel=1e-6)
    assert table.pixel_min[0] == float(hu.min()) and table.pixel_max[0] == float(hu.max())
    assert "truncated" in table.error[3]


def test_metadata_pixel_stats_follow_rescale_and_monochrome1(tmp_path):
    ds = pydicom.dcmread(_path("CT_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.RescaleSlope = "2"
    ds.save_as(tmp_path / "m1.dcm", enforce_file_format=True)
    expected = dicom_pixels(tmp_path / "m1.dcm")
    table = dicom_metadata([tmp_path / "m1.dcm"], pixel_stats=True, n_jobs=1, progress=False)
    assert table.pixel_min[0] == pytest.approx(float(expected.min()))
    assert table.pixel_max[0] == pytest.approx(float(expected.max()))
    assert table.pixel_mean[0] == pytest.approx(float(expected.mean(dtype=np.float64)))
    assert table.pixel_std[0] == pytest.approx(float(expected.std(dtype=np.float64)), rel=1e-5)


def test_metadata_parallel_equals_serial(metadata_files):
    serial = dicom_metadata(metadata_files * 3, n_jobs=1, progress=False)
    parallel = dicom_metadata(metadata_files * 3, n_jobs=2, progress=False)
    pd.testing.assert_frame_equal(serial, parallel)


def test_metadata_extra_fields_are_plain_columns(metadata_files):
    table = dicom_metadata(metadata_files[:1], fields=["PatientAge", "KVP", "ImageType"],
                           n_jobs=1, progress=False)
    assert table.age_years[0] == 51
    assert float(table.KVP[0]) > 0
    assert "\\" in table.ImageType[0]


def test_opaque_ids_are_stable_and_hide_the_id():
    ids = opaque_ids(["0004cfab-14fd", "0004cfab-14fd", "ffff", None])
    assert ids[0] == ids[1] != ids[2]
    assert ids[3] is None
    assert all("0004" not in i for i in ids[:3])
    assert opaque_ids(["x"], salt="a") != opaque_ids(["x"], salt="b")


def test_header_table_masks_identifying_values(tmp_path):
    path = _cr_file(tmp_path / "h.dcm", patient="secret-id")
    table = header_table(pydicom.dcmread(path))
    values = dict(zip(table.keyword, table.value, strict=True))
    assert values["PatientName"] == values["PatientID"] == values["PatientBirthDate"] == "<hidden>"
    assert "Doe" not in table.to_csv() and "secret-id" not in table.to_csv()
    assert values["TransferSyntaxUID"].endswith("(Explicit VR Little Endian)")
    assert values["PixelData"].endswith("bytes>")
    chosen = header_table(pydicom.dcmread(path), ["Modality", "PatientAge"])
    assert chosen.keyword.tolist() == ["Modality", "PatientAge"]
