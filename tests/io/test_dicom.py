"""medimg.io DICOM: pixels (every syntax, Modality LUT, MONOCHROME1, multi-frame), bad input,
series -> Volume geometry (LPS -> RAS+), and the metadata table; issue 11: enhanced
multi-frame files (per-frame rescale, window, geometry), 4-D series, damaged slices,
truncation anywhere, pixel-data length, privacy by tag."""

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

from medimg.errors import ConfigError, DecodeError, InvalidImageError, PrivacyError
from medimg.intensity import dicom_window
from medimg.io import (
    LPS_TO_RAS,
    dicom_metadata,
    dicom_pixels,
    header_table,
    opaque_ids,
    parse_age,
    read_dicom,
    read_enhanced,
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


# ------------------------------------------------------------ enhanced multi-frame (issue 11)
def _item(**attributes):
    item = Dataset()
    for keyword, value in attributes.items():
        setattr(item, keyword, value)
    return item


def _write_enhanced(path: Path, *, n_positions=4, echoes=(1,), rows=6, cols=5, step=3.0,
                    pixel_spacing=(0.9, 0.7), orientation="oblique", origin=(12.0, -30.0, 44.0),
                    seed=0, shuffle=True, window_per_frame=True, shared_rescale=None):
    """An Enhanced MR file written from the definition (PS3.3 C.7.6.16): orientation and
    pixel measures shared, position, Pixel Value Transformation (Philips-like per-frame
    slopes), Frame VOI LUT and MR Echo per frame, frames stored in shuffled order.
    Returns (path, expected) with expected[(position, echo)] = (values, position_lps,
    (center, width))."""
    rng = np.random.default_rng(seed)
    row_cos, col_cos = _orientation(orientation)
    normal = np.cross(row_cos, col_cos)
    frames = [(k, e) for k in range(n_positions) for e in echoes]
    if shuffle:
        frames = [frames[i] for i in rng.permutation(len(frames))]
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"  # Enhanced MR Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.SeriesInstanceUID = generate_uid()
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, len(frames)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    shared = _item(
        PlaneOrientationSequence=[_item(ImageOrientationPatient=[
            f"{v:.8f}" for v in (*row_cos, *col_cos)])],
        PixelMeasuresSequence=[_item(PixelSpacing=[str(pixel_spacing[0]), str(pixel_spacing[1])],
                                     SliceThickness="1.5")])
    if shared_rescale is not None:
        shared.PixelValueTransformationSequence = [_item(
            RescaleSlope=str(shared_rescale[0]), RescaleIntercept=str(shared_rescale[1]),
            RescaleType="US")]
    if not window_per_frame:
        shared.FrameVOILUTSequence = [_item(WindowCenter="300", WindowWidth="600")]
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame, stored_frames, expected = [], [], {}
    for k, echo in frames:
        position = np.asarray(origin) + k * step * normal
        slope = round(float(rng.uniform(1.5, 4.5)), 4)  # like Philips' 4.26 / 2.39 / 1.86
        intercept = round(float(rng.uniform(-20, 20)), 3)
        center, width = float(rng.integers(200, 2000)), float(rng.integers(300, 3000))
        stored = rng.integers(0, 4096, size=(rows, cols)).astype(np.uint16)
        item = _item(
            PlanePositionSequence=[_item(ImagePositionPatient=[f"{v:.6f}" for v in position])],
            FrameContentSequence=[_item(InStackPositionNumber=k + 1)],
            MREchoSequence=[_item(EffectiveEchoTime=10.0 * echo)])
        if shared_rescale is None:
            item.PixelValueTransformationSequence = [_item(
                RescaleSlope=str(slope), RescaleIntercept=str(intercept), RescaleType="US")]
        else:
            slope, intercept = shared_rescale
        if window_per_frame:
            item.FrameVOILUTSequence = [_item(WindowCenter=str(center), WindowWidth=str(width))]
        else:
            center, width = 300.0, 600.0
        per_frame.append(item)
        stored_frames.append(stored)
        values = stored.astype(np.float64) * float(str(slope)) + float(str(intercept))
        expected[(k, echo)] = (values, position, (center, width))
    ds.PerFrameFunctionalGroupsSequence = per_frame
    ds.PixelData = np.stack(stored_frames).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path, frames, expected


def _linear_window(values, center, width):
    """PS3.3 C.11.2.1.2.1 LINEAR, scaled to [0, 1]."""
    return np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def test_enhanced_pixels_apply_each_frames_rescale(tmp_path):
    path, frames, expected = _write_enhanced(tmp_path / "emr.dcm", n_positions=5)
    got = dicom_pixels(path)
    assert got.shape == (5, 6, 5) and got.dtype == np.float32
    for f, key in enumerate(frames):
        np.testing.assert_allclose(got[f], expected[key][0], rtol=1e-6, atol=1e-3)
    raw = dicom_pixels(path, modality_lut=False)
    assert raw.max() <= 4095 and not np.allclose(raw, got)


def test_enhanced_shared_rescale_applies_to_every_frame(tmp_path):
    path, frames, expected = _write_enhanced(tmp_path / "ct.dcm", shared_rescale=(1.0, -1024.0))
    got = dicom_pixels(path)
    for f, key in enumerate(frames):
        np.testing.assert_allclose(got[f], expected[key][0])
    assert got.min() < 0  # Hounsfield-like, not stored values


def test_enhanced_ct_supplemental_is_in_hounsfield_units():
    path = get_testdata_file("eCT_Supplemental.dcm", download=False)  # pydicom-data (dev dep)
    assert path is not None, "pydicom-data is a dev dependency: pip install -e .[dev]"
    ds = pydicom.dcmread(path)
    hu = dicom_pixels(ds)
    pvt = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    np.testing.assert_array_equal(
        hu, ds.pixel_array * float(pvt.RescaleSlope) + float(pvt.RescaleIntercept))
    assert (hu.min(), hu.max()) == (-1024.0, 172.0)  # stored values are 0..1196
    # the volume: frames sorted along the normal, spacing from Pixel Measures and positions
    volume = read_enhanced(path, canonical=False)
    assert volume.shape == (512, 512, 2)
    assert volume.spacing == pytest.approx((0.388672, 0.388672, 10.0))
    for f in range(2):
        position = [float(v) for v in
                    ds.PerFrameFunctionalGroupsSequence[f].PlanePositionSequence[0]
                    .ImagePositionPatient]
        ras = (LPS_TO_RAS @ np.append(position, 1.0))[:3]
        index = np.linalg.inv(volume.affine) @ np.append(ras, 1.0)
        np.testing.assert_allclose(index[:3], [0, 0, index[2]], atol=1e-6)
        np.testing.assert_array_equal(volume.array[:, :, round(index[2])], hu[f].T)
    # the per-frame VOI: one shared window here, applied to both frames
    window = dicom_window(ds, hu)
    voi = ds.SharedFunctionalGroupsSequence[0].FrameVOILUTSequence[0]
    np.testing.assert_allclose(
        window, _linear_window(hu.astype(np.float64), float(voi.WindowCenter),
                               float(voi.WindowWidth)), atol=1e-6)


@pytest.mark.parametrize("orientation", ["axial", "sagittal", "oblique"])
def test_read_enhanced_geometry_matches_every_frame(tmp_path, orientation):
    spacing = (0.9, 0.7)
    path, _, expected = _write_enhanced(tmp_path / "emr.dcm", orientation=orientation,
                                             pixel_spacing=spacing)
    volume = read_enhanced(path)
    row_cos, col_cos = _orientation(orientation)
    inverse = np.linalg.inv(volume.affine)
    for values, position, _ in expected.values():
        for r, c in ((0, 0), (5, 4), (2, 3)):
            world = _world_ras(position, row_cos, col_cos, spacing, r, c)
            index = inverse @ np.append(world, 1.0)
            np.testing.assert_allclose(index[:3], np.round(index[:3]), atol=1e-3)
            i, j, k = np.round(index[:3]).astype(int)
            assert volume.array[i, j, k] == pytest.approx(values[r, c], rel=1e-6, abs=1e-3)
    assert sorted(volume.spacing) == pytest.approx(sorted([0.7, 0.9, 3.0]), abs=1e-4)
    assert volume.axcodes == ("R", "A", "S")
    assert sorted(volume.meta["frames"]) == list(range(4))


def test_read_series_reads_an_enhanced_file_in_a_folder(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    path, _, _ = _write_enhanced(folder / "emr.dcm")
    (folder / "README").write_text("notes")
    from_folder = read_series(folder)
    from_file = read_enhanced(path)
    np.testing.assert_array_equal(from_folder.array, from_file.array)
    np.testing.assert_allclose(from_folder.affine, from_file.affine)
    assert from_folder.meta["skipped"] == ["README"]


def test_enhanced_window_is_each_frames_own(tmp_path):
    path, frames, expected = _write_enhanced(tmp_path / "emr.dcm")
    ds = pydicom.dcmread(path)
    pixels = dicom_pixels(ds)
    shown = dicom_window(ds, pixels)  # all frames: each with its own Frame VOI LUT
    assert shown.shape == pixels.shape
    for f, key in enumerate(frames):
        values, _, (center, width) = expected[key]
        np.testing.assert_allclose(shown[f], _linear_window(values, center, width), atol=1e-5)
        np.testing.assert_allclose(dicom_window(ds, pixels[f], frame=f), shown[f], atol=1e-6)
    with pytest.raises(InvalidImageError, match="frame="):
        dicom_window(ds, pixels[0])  # which frame? windows differ
    with pytest.raises(InvalidImageError, match="frame 99"):
        dicom_window(ds, pixels[0], frame=99)


def test_enhanced_window_tensorflow_agrees(tmp_path):
    import tensorflow as tf

    path, _, _ = _write_enhanced(tmp_path / "emr.dcm")
    ds = pydicom.dcmread(path)
    pixels = dicom_pixels(ds)
    np.testing.assert_allclose(dicom_window(ds, tf.constant(pixels)).numpy(),
                               dicom_window(ds, pixels), atol=1e-6)


def test_enhanced_shared_window_applies_to_a_single_frame(tmp_path):
    path, frames, expected = _write_enhanced(tmp_path / "emr.dcm", window_per_frame=False)
    ds = pydicom.dcmread(path)
    pixels = dicom_pixels(ds)
    np.testing.assert_allclose(dicom_window(ds, pixels[2]),
                               _linear_window(expected[frames[2]][0], 300.0, 600.0), atol=1e-5)


@pytest.mark.parametrize("name", ["SC_rgb.dcm", "SC_ybr_full_uncompressed.dcm",
                                  "OBXXXX1A.dcm"])  # RGB, YBR, palette colour
def test_dicom_window_refuses_colour_images(name):
    path = get_testdata_file(name, download=False)
    assert path is not None, name
    ds = pydicom.dcmread(path)
    ds.WindowCenter, ds.WindowWidth = "128", "256"
    with pytest.raises(InvalidImageError, match="greyscale") as info:
        dicom_window(ds, dicom_pixels(ds))
    assert name in str(info.value)


def test_enhanced_multi_echo_is_read_one_echo_at_a_time(tmp_path):
    path, _, expected = _write_enhanced(tmp_path / "me.dcm", echoes=(1, 2, 3))
    with pytest.raises(InvalidImageError, match=r"3 volumes per slice position") as info:
        read_enhanced(path)
    assert "EffectiveEchoTime" in str(info.value) and "volume=0..2" in str(info.value)
    for index, echo in enumerate((1, 2, 3)):
        by_index = read_enhanced(path, volume=index, canonical=False)
        by_value = read_enhanced(path, select={"EffectiveEchoTime": 10.0 * echo},
                                 canonical=False)
        np.testing.assert_array_equal(by_index.array, by_value.array)
        assert by_index.meta["volume_key"] == {"EffectiveEchoTime": 10.0 * echo}
        for k in range(4):  # slice k of the volume is position k of that echo
            np.testing.assert_allclose(by_index.array[:, :, k].T, expected[(k, echo)][0],
                                       rtol=1e-6, atol=1e-3)
    with pytest.raises(InvalidImageError, match="no image matches"):
        read_enhanced(path, select={"EffectiveEchoTime": 99})


def test_not_enhanced_file_is_refused_by_read_enhanced():
    with pytest.raises(InvalidImageError, match="not an enhanced"):
        read_enhanced(_path("CT_small.dcm"))


# -------------------------------------------------------------------- 4-D series (issue 11)
def _write_4d(folder: Path, *, attribute=None, values=(1, 2), n_slices=4, seed=0):
    """Classic single-frame files, ``len(values)`` images per position, told apart by
    ``attribute`` (None: nothing tells them apart but Instance Number)."""
    written = {}
    for v_index, value in enumerate(values):
        files = _write_series(folder / f"v{v_index}", n_slices=n_slices, series_uid="1.2.3.9",
                              seed=seed + v_index)
        for k, (path, pixels, position) in enumerate(files):
            ds = pydicom.dcmread(path)
            if attribute is not None:
                setattr(ds, attribute, value)
            ds.InstanceNumber = v_index * 100 + k + 1
            target = folder / f"IM{v_index}_{k}"
            ds.save_as(target, enforce_file_format=True)
            path.unlink()
            written[(v_index, round(float(position[2]), 3))] = pixels
        (folder / f"v{v_index}").rmdir()
    return written


@pytest.mark.parametrize(("attribute", "values"), [
    ("AcquisitionNumber", (1, 2, 3)),                       # fMRI time points
    ("EchoNumbers", (1, 2)),                                # multi-echo
    ("ImageType", (["ORIGINAL", "PRIMARY", "M"], ["ORIGINAL", "PRIMARY", "P"])),  # mag/phase
    ("TemporalPositionIdentifier", (1, 2)),
])
def test_4d_series_error_says_how_many_and_how_to_choose(tmp_path, attribute, values):
    written = _write_4d(tmp_path / "s", attribute=attribute, values=values)
    with pytest.raises(InvalidImageError) as info:
        read_series(tmp_path / "s")
    message = str(info.value)
    assert f"{len(values)} volumes per slice position" in message
    assert attribute in message and "volume=" in message and "select=" in message
    for index, value in enumerate(values):
        volume = read_series(tmp_path / "s", volume=index, canonical=False)
        chosen = read_series(tmp_path / "s", select={attribute: value}, canonical=False)
        np.testing.assert_array_equal(volume.array, chosen.array)
        assert volume.meta["volumes_per_position"] == len(values)
        assert volume.meta["n_slices"] == 4
        for k in range(4):  # axial, so the RAS z of slice k is the DICOM z
            z = round(float(volume.affine[2, 3] + k * volume.affine[2, 2]), 3)
            np.testing.assert_array_equal(volume.array[:, :, k].T, written[(index, z)])


def test_dwi_series_is_told_apart_by_b_value_and_direction(tmp_path):
    folder = tmp_path / "dwi"
    # two shells: neither the b-value nor the direction alone tells the volumes apart
    gradients = [(0, [0.0, 0, 0]), (1000, [1.0, 0, 0]), (1000, [0, 1.0, 0]), (2000, [1.0, 0, 0])]
    files = []
    for g_index, (b_value, direction) in enumerate(gradients):
        for path, _, _ in _write_series(folder / f"g{g_index}", n_slices=3, series_uid="1.2.3.8",
                                        seed=g_index):
            ds = pydicom.dcmread(path)
            ds.DiffusionBValue = b_value
            if direction is not None:
                ds.DiffusionGradientOrientation = direction
            target = folder / f"G{g_index}_{path.name}"
            ds.save_as(target, enforce_file_format=True)
            files.append(target)
    with pytest.raises(InvalidImageError, match="4 volumes per slice position") as info:
        read_series(folder)
    assert "DiffusionBValue + DiffusionGradientOrientation" in str(info.value)
    volume = read_series(folder, volume=3)  # sorted by (b-value, direction): b=2000 last
    assert volume.meta["volume_key"] == {"DiffusionBValue": 2000.0,
                                         "DiffusionGradientOrientation": (1.0, 0.0, 0.0)}
    shell = read_series(folder, select={"DiffusionBValue": 1000,
                                        "DiffusionGradientOrientation": [0, 1, 0]})
    assert shell.meta["n_slices"] == 3


def test_4d_series_without_a_distinguishing_attribute_uses_instance_order(tmp_path):
    written = _write_4d(tmp_path / "s", attribute=None, values=("first", "second"))  # by index
    with pytest.raises(InvalidImageError, match="none of .* tells them apart"):
        read_series(tmp_path / "s")
    second = read_series(tmp_path / "s", volume=1, canonical=False)
    z0 = round(float(second.affine[2, 3]), 3)
    np.testing.assert_array_equal(second.array[:, :, 0].T, written[(1, z0)])
    with pytest.raises(InvalidImageError, match="0..1"):
        read_series(tmp_path / "s", volume=2)


# ------------------------------------------------------ damaged slices and lengths (issue 11)
@pytest.mark.parametrize("end", ["first", "last"])
@pytest.mark.parametrize("damage", ["truncated header", "truncated pixels", "garbage"])
def test_series_never_skips_a_damaged_slice(tmp_path, end, damage):
    files = _write_series(tmp_path / "s", n_slices=5)
    ordered = sorted(files, key=lambda f: f[2][2])
    victim = ordered[0 if end == "first" else -1][0]
    data = victim.read_bytes()
    if damage == "truncated header":
        victim.write_bytes(data[:300])
    elif damage == "truncated pixels":
        victim.write_bytes(data[:-20])
    else:
        victim.write_bytes(data[:132] + bytes(np.random.default_rng(0).integers(0, 256, 400,
                                                                                  np.uint8)))
    (tmp_path / "s" / "README.txt").write_text("not DICOM: skipped")
    with pytest.raises(DecodeError) as info:
        read_series(tmp_path / "s")
    assert victim.name in str(info.value)


def test_uncompressed_length_must_match_rows_and_columns(tmp_path):
    ds = pydicom.dcmread(_path("CT_small.dcm"))
    for rows, columns, what in ((128, 64, "too many"), (128, 127, "too many"),
                                (256, 128, "too few")):
        bad = copy.deepcopy(ds)
        bad.Rows, bad.Columns = rows, columns
        bad.save_as(tmp_path / "bad.dcm", enforce_file_format=True)
        with pytest.raises(DecodeError, match=what) as info:
            dicom_pixels(tmp_path / "bad.dcm")
        assert "bad.dcm" in str(info.value) and "32,768 bytes" in str(info.value)
    # the pydicom test file with 128 stray bytes after the image is refused the same way
    with pytest.raises(DecodeError, match="too many"):
        dicom_pixels(_path("MR_small_padded.dcm"))
    # a YBR_FULL_422 file is 2 bytes a pixel, as the standard says: accepted
    assert dicom_pixels(_path("SC_ybr_full_422_uncompressed.dcm")).shape == (100, 100, 3)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm",
                                  "image_dfl.dcm", "MR_small_bigendian.dcm",
                                  "MR_small_implicit.dcm"])
def test_truncation_anywhere_says_truncated(tmp_path, name):
    data = Path(_path(name)).read_bytes()
    for fraction in (0.01, 0.05, 0.15, 0.3, 0.5, 0.7, 0.9, 0.99):
        cut = tmp_path / f"cut{int(fraction * 100)}.dcm"
        cut.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(DecodeError, match="truncated") as info:
            dicom_pixels(cut)
        assert cut.name in str(info.value)


# ------------------------------------------------------------------ privacy by tag (issue 11)
IDENTIFYING_FORMS = [
    "PatientName", 0x00100010, pydicom.tag.Tag("PatientBirthDate"), (0x0010, 0x0030),
    "0010,1005", "(0010,21B0)", "00104000", "0x00101090", "ResponsiblePerson",
    "OtherPatientIDs", "PatientBirthName", "PatientComments", "InstitutionName",
    "ReferringPhysicianName", "StudyDate", "SeriesDescription", (0x0009, 0x1010), "0029,1001",
]


@pytest.mark.parametrize("field", IDENTIFYING_FORMS, ids=str)
def test_metadata_refuses_identifying_fields_in_every_form(metadata_files, field):
    with pytest.raises(PrivacyError, match="identifying") as info:
        dicom_metadata(metadata_files[:1], fields=["Modality", field], n_jobs=1, progress=False)
    assert "allow_identifying=True" in str(info.value)


def test_metadata_opt_in_reads_them_and_ids_are_hashed_by_default(metadata_files):
    table = dicom_metadata(metadata_files[:2], n_jobs=1, progress=False)
    assert table.patient_id.tolist() == opaque_ids(["p-1", "p-2"])
    assert "p-1" not in table.to_csv()
    hashed = dicom_metadata(metadata_files[:1], fields=[(0x0010, 0x0020), "StudyInstanceUID"],
                            n_jobs=1, progress=False)
    assert hashed.patient_id[0] == opaque_ids(["p-1"])[0]
    assert hashed.StudyInstanceUID[0].startswith("p") and "." not in hashed.StudyInstanceUID[0]
    raw = dicom_metadata(metadata_files[:1], fields=["PatientID", 0x00100010, "PatientBirthDate"],
                         n_jobs=1, progress=False, allow_identifying=True)
    assert raw.patient_id[0] == "p-1"
    assert raw.PatientName[0] == "Doe^Jane" and raw.PatientBirthDate[0] == "19700101"


def test_metadata_unknown_field_is_a_clear_error(metadata_files):
    with pytest.raises(ConfigError, match="NotAKeyword"):
        dicom_metadata(metadata_files[:1], fields=["NotAKeyword"], n_jobs=1, progress=False)


def test_metadata_tag_forms_of_ordinary_fields(metadata_files):
    table = dicom_metadata(metadata_files[:1], fields=[0x00180060, (0x0008, 0x0060), "0028,0030"],
                           n_jobs=1, progress=False)
    assert float(table.KVP[0]) > 0 and table.modality[0] == "CT"
    assert table.pixel_spacing_x_mm[0] == pytest.approx(0.143)


@pytest.mark.parametrize("spacing", [("0", "0"), ("-0.2", "0.2"), ("nan", "0.1"),
                                     ("inf", "inf"), ("0.1", "0")])
def test_metadata_flags_impossible_pixel_spacing(tmp_path, spacing):
    with warnings.catch_warnings():  # pydicom warns that nan/inf are invalid DS: on purpose
        warnings.simplefilter("ignore", UserWarning)
        path = _cr_file(tmp_path / "s.dcm", spacing=spacing)
    table = dicom_metadata([path], n_jobs=1, progress=False)
    assert np.isnan(table.pixel_spacing_x_mm[0]) and np.isnan(table.pixel_spacing_y_mm[0])
    assert "PixelSpacing" in table.issues[0] and "impossible" in table.issues[0]


def test_header_table_hides_by_tag_private_tags_and_profile_attributes(tmp_path):
    path = _cr_file(tmp_path / "h.dcm", patient="secret-id")
    ds = pydicom.dcmread(path)
    ds.PatientBirthName = "Roe^Mary"
    ds.ResponsiblePerson = "Smith^John"
    ds.PatientComments = "lives at 1 Main St"
    ds.InstitutionName = "St Elsewhere"
    block = ds.private_block(0x0009, "ACME 1.0", create=True)
    block.add_new(0x10, "LO", "Private^Name")
    private_tag = str(block.get_tag(0x10))
    table = header_table(ds)
    text = table.to_csv()
    for secret in ("Roe", "Smith", "Main St", "Elsewhere", "Private^Name", "secret-id", "Doe"):
        assert secret not in text, secret
    values = dict(zip(table.tag, table.value, strict=True))
    assert values[private_tag] == "<hidden>"
    assert all(v == "<hidden>" for t, v in values.items() if int(t[1:5], 16) % 2 == 1)
    assert values["(0010,1010)"] != "<hidden>"  # Patient's Age: a retained characteristic
    chosen = header_table(ds, [0x00100010, (0x0010, 0x1010), "0008,0060"])
    assert chosen.value.tolist()[0] == "<hidden>" and chosen.keyword.tolist() == [
        "PatientName", "PatientAge", "Modality"]
    shown = header_table(ds, ["PatientName"], allow_identifying=True)
    assert shown.value[0] == "Doe^Jane"
    assert header_table(ds, ["Modality"], hide=[(0x0008, 0x0060)]).value[0] == "<hidden>"


@pytest.mark.parametrize("value", ["inf", "nan", "abc", "0"])
def test_impossible_rescale_slope_is_refused(tmp_path, value):
    ds = pydicom.dcmread(_path("CT_small.dcm"))
    del ds.RescaleSlope
    ds.add_new(0x00281053, "LO", value)  # a damaged DS, stored as text
    ds.save_as(tmp_path / "slope.dcm", enforce_file_format=True)
    with pytest.raises(InvalidImageError, match="RescaleSlope") as info:
        dicom_pixels(tmp_path / "slope.dcm")
    assert "slope.dcm" in str(info.value)


def test_encapsulated_data_without_its_end_is_truncated(tmp_path):
    data = Path(_path("JPEG2000.dcm")).read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:-4])  # only the sequence delimiter lost
    with pytest.raises(DecodeError, match="truncated"):
        dicom_pixels(tmp_path / "cut.dcm")


def test_header_table_unknown_keyword_is_a_clear_error():
    with pytest.raises(ConfigError, match="NotAKeyword"):
        header_table(pydicom.dcmread(_path("CT_small.dcm")), ["NotAKeyword"])
