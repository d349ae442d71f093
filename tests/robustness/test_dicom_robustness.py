"""DICOM robustness from the real files pydicom and pydicom-data ship: truncation at many
points, bit flips where a reader can notice them, header edits, damaged series, colour
windows, and a metadata table over every file. Each case: right, or a MedimgError
naming the file (see ``_support``)."""

from __future__ import annotations

import copy
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from medimg.intensity import dicom_window
from medimg.io import dicom_metadata, dicom_pixels, read_series

from ._support import CLEAN, OTHER, RIGHT, dicom_test_file, judge, same

# Transfer syntaxes, photometric interpretations and IODs the suite covers (small files).
FILES = [
    "CT_small.dcm",                   # explicit VR little endian, rescaled CT
    "MR_small.dcm",
    "MR_small_bigendian.dcm",         # explicit VR big endian
    "MR_small_implicit.dcm",          # implicit VR little endian
    "MR_small_RLE.dcm",               # RLE lossless
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS
    "MR_small_jp2klossless.dcm",      # JPEG 2000 lossless
    "JPEG2000.dcm",                   # JPEG 2000
    "JPGExtended.dcm",                # JPEG extended (12-bit)
    "image_dfl.dcm",                  # deflated data set
    "SC_rgb_jpeg_dcmtk.dcm",          # colour JPEG baseline
    "SC_rgb_rle_2frame.dcm",          # colour RLE, two frames
    "SC_rgb_small_odd.dcm",           # odd-sized colour
    "rtdose.dcm",                     # multi-frame RT dose
    "liver_1frame.dcm",               # segmentation, 1-bit
    "emri_small.dcm",                 # enhanced MR, 10 frames (pydicom-data)
    "eCT_Supplemental.dcm",           # enhanced CT with functional groups (pydicom-data)
    "color-px.dcm",                   # colour, pixel-interleaved (pydicom-data)
]
FRACTIONS = (0.0, 0.02, 0.05, 0.15, 0.3, 0.5, 0.7, 0.85, 0.95, 0.999)


def _reference(name: str) -> np.ndarray:
    return dicom_pixels(dicom_test_file(name))


def _element_start(ds, tag) -> int | None:
    """File offset where an element (its tag) begins, from pydicom's value offset."""
    if tag not in ds:
        return None
    raw = ds.get_item(tag)
    tell = getattr(raw, "value_tell", None)
    if tell is None:
        return None
    implicit = ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
    long_vr = str(raw.VR) in ("OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR",
                              "UT", "UV")
    return tell - (8 if implicit or not long_vr else 12)


# ------------------------------------------------------------------------------ truncation
@pytest.mark.parametrize("name", FILES)
def test_truncated_anywhere_is_refused_saying_truncated(tmp_path, name):
    source = dicom_test_file(name)
    data = source.read_bytes()
    reference = _reference(name)
    cuts = {int(len(data) * f) for f in FRACTIONS} | {len(data) - 1}
    if source.suffix and name != "image_dfl.dcm":  # element boundaries: the quiet places
        ds = pydicom.dcmread(source)
        for tag in (0x00280010, 0x7FE00010):  # before Rows, before Pixel Data
            start = _element_start(ds, tag)
            if start is not None:
                cuts.add(start)
    failures = []
    for cut in sorted(cuts):
        path = tmp_path / f"cut{cut}.dcm"
        path.write_bytes(data[:cut])
        outcome, detail = judge("dicom truncation", path, dicom_pixels,
                                lambda got: same(got, reference), must_say="truncated")
        if outcome == OTHER:
            failures.append(f"cut at {cut}/{len(data)}: {detail}")
    assert not failures, "\n".join(failures)


# ------------------------------------------------------------------------------- bit flips
@pytest.mark.parametrize("name", FILES[:10])
def test_bit_flips_in_preamble_prefix_and_file_meta(tmp_path, name):
    """DICOM has no checksum: a flipped bit inside a value changes it unnoticed, in any
    reader. Where a reader can notice (the 'DICM' prefix, the file meta structure and
    transfer syntax) medimg must refuse; the preamble is ignored by design."""
    source = dicom_test_file(name)
    data = source.read_bytes()
    reference = _reference(name)
    ds = pydicom.dcmread(source, stop_before_pixels=True)
    meta_end = 132 + 12 + int(ds.file_meta.FileMetaInformationGroupLength)
    rng = np.random.default_rng(sum(name.encode()))
    positions = [5, 100, 128, 131, *rng.integers(132, meta_end, size=6).tolist()]
    failures = []
    for position in positions:
        flipped = bytearray(data)
        flipped[position] ^= 1 << int(rng.integers(8))
        path = tmp_path / f"flip{position}.dcm"
        path.write_bytes(bytes(flipped))
        outcome, detail = judge("dicom bit flip", path, dicom_pixels,
                                lambda got: same(got, reference))
        if outcome == OTHER:
            failures.append(f"byte {position}: {detail}")
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------------------- header edits
def _edit(ds, keyword, value):
    from pydicom.datadict import tag_for_keyword

    if value is None:
        if keyword in ds:
            delattr(ds, keyword)
        return
    try:
        setattr(ds, keyword, value)
    except ValueError:  # not a valid IS/DS: store the damaged text as it would arrive
        tag = tag_for_keyword(keyword)
        if tag in ds:
            del ds[tag]
        ds.add_new(tag, "LO", value)


HEADER_EDITS = [
    # (keyword, new value, what must happen: "refuse" or "same" as the intact file)
    ("Rows", "plus1", "refuse"),
    ("Columns", "minus1", "refuse"),
    ("Columns", "half", "refuse"),
    ("Rows", 0, "refuse"),
    ("NumberOfFrames", "2", "refuse"),
    ("NumberOfFrames", "0", "refuse"),
    ("NumberOfFrames", "1A", "refuse"),
    ("BitsAllocated", 8, "refuse"),
    ("BitsAllocated", 32, "refuse"),
    ("SamplesPerPixel", 3, "refuse"),
    ("PixelData", None, "refuse"),
    ("RescaleSlope", "abc", "refuse"),
    ("RescaleIntercept", "nan", "refuse"),
    ("RescaleSlope", "inf", "refuse"),
    ("RescaleSlope", "0", "refuse"),
    ("PatientName", None, "same"),
    ("StudyDate", "19000101", "same"),
    ("WindowCenter", None, "same"),
]


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "MR_small_bigendian.dcm"])
@pytest.mark.parametrize(("keyword", "value", "rule"), HEADER_EDITS,
                         ids=[f"{k}={v}" for k, v, _ in HEADER_EDITS])
def test_header_edits(tmp_path, name, keyword, value, rule):
    source = dicom_test_file(name)
    reference = _reference(name)
    ds = pydicom.dcmread(source)
    if value in ("plus1", "minus1", "half"):
        current = int(getattr(ds, keyword))
        value = {"plus1": current + 1, "minus1": current - 1, "half": current // 2}[value]
    mode = pydicom.config.settings.writing_validation_mode
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE  # damage on purpose
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _edit(ds, keyword, value)
            path = tmp_path / "edited.dcm"
            ds.save_as(path, enforce_file_format=True)
    finally:
        pydicom.config.settings.writing_validation_mode = mode
    expected = (lambda got: same(got, reference)) if rule == "same" else None
    outcome, detail = judge("dicom header edit", path, dicom_pixels, expected)
    assert outcome in (RIGHT, CLEAN), detail
    if rule == "refuse":
        assert outcome == CLEAN, detail


def test_unknown_transfer_syntax_is_refused(tmp_path):
    ds = pydicom.dcmread(dicom_test_file("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6"
    path = tmp_path / "syntax.dcm"
    ds.save_as(path, enforce_file_format=True)
    outcome, detail = judge("dicom header edit", path, dicom_pixels, None)
    assert outcome == CLEAN, detail


# ------------------------------------------------------------------------- colour windows
@pytest.mark.parametrize("name", ["SC_rgb.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_rle_2frame.dcm",
                                  "SC_ybr_full_uncompressed.dcm", "OBXXXX1A.dcm", "color-px.dcm"])
def test_dicom_window_on_colour_is_refused(name):
    path = dicom_test_file(name)

    def window_it(p):
        ds = pydicom.dcmread(p)
        ds.WindowCenter, ds.WindowWidth = "128", "256"
        return dicom_window(ds, dicom_pixels(ds))

    outcome, detail = judge("dicom_window colour", path, window_it, None, must_say="greyscale")
    assert outcome == CLEAN, detail


# ------------------------------------------------------------------------------- series
def _series(folder: Path, n: int = 6, *, step: float = 2.0) -> list[Path]:
    """A real-CT series: CT_small's header and pixels at n positions along z."""
    template = pydicom.dcmread(dicom_test_file("CT_small.dcm"))
    folder.mkdir(parents=True, exist_ok=True)
    uid = generate_uid()
    files = []
    for k in range(n):
        ds = copy.deepcopy(template)
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-50.0, -40.0, 10.0 + k * step]
        ds.InstanceNumber = k + 1
        path = folder / f"slice{k:02d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


SERIES_DAMAGE = ["truncate first", "truncate last", "garbage first", "garbage last",
                 "empty last", "spacing zero", "spacing negative", "orientation zero",
                 "duplicate", "gap", "readme and dicomdir", "second volume"]


@pytest.mark.parametrize("damage", SERIES_DAMAGE)
def test_series_damage(tmp_path, damage):
    folder = tmp_path / "series"
    files = _series(folder)
    intact = read_series(folder)
    victim = files[0] if "first" in damage else files[-1]
    expected = None
    data = victim.read_bytes()
    if damage.startswith("truncate"):
        victim.write_bytes(data[: len(data) // 3])
    elif damage.startswith("garbage"):
        victim.write_bytes(data[:132] + bytes(range(256)) * 4)
    elif damage.startswith("empty"):
        victim.write_bytes(b"")
    elif damage.startswith("spacing") or damage == "orientation zero":
        ds = pydicom.dcmread(victim)
        if damage == "spacing zero":
            ds.PixelSpacing = ["0", "0"]
        elif damage == "spacing negative":
            ds.PixelSpacing = ["-0.5", "0.5"]
        else:
            ds.ImageOrientationPatient = [0, 0, 0, 0, 0, 0]
        ds.save_as(victim, enforce_file_format=True)
    elif damage == "duplicate":
        shutil.copy(files[2], folder / "copy.dcm")
    elif damage == "gap":
        files[3].unlink()
    elif damage == "readme and dicomdir":
        (folder / "README").write_text("not DICOM")
        (folder / "DICOMDIR").write_bytes(b"\x00" * 200)

        def expected(got):
            return same(got.array, intact.array) and np.allclose(got.affine, intact.affine)
    elif damage == "second volume":  # an echo 2 at every position: a 4-D series
        for path in files:
            ds = pydicom.dcmread(path)
            ds.EchoNumbers = 2
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.save_as(folder / f"echo2_{path.name}", enforce_file_format=True)
    if damage == "empty last":  # an empty file named .dcm claims to be DICOM
        outcome, detail = judge("read_series damage", folder, read_series, None)
        assert outcome == CLEAN and victim.name in detail, detail
        return
    outcome, detail = judge("read_series damage", folder, read_series, expected)
    assert outcome in (RIGHT, CLEAN), detail
    if damage.startswith(("truncate", "garbage")):
        assert outcome == CLEAN and victim.name in detail, detail  # names the bad slice


# ---------------------------------------------------------------------- metadata over all
def test_metadata_table_over_every_test_file():
    # every file in pydicom's and pydicom-data's test folders (listed locally: pydicom's
    # own lister would try to download what is missing)
    folders = {dicom_test_file("CT_small.dcm").parent, dicom_test_file("eCT_Supplemental.dcm").parent}
    paths = sorted(str(p) for folder in folders for p in folder.iterdir() if p.is_file())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = dicom_metadata(paths, fields=["PatientID", "PatientAge", "PatientSex",
                                              "Modality", "PixelSpacing", "Rows", "Columns"],
                               n_jobs=1, progress=False)
    assert len(table) == len(paths)
    from ._support import OUTCOMES

    for error in table.error:
        OUTCOMES[("dicom_metadata rows", CLEAN if isinstance(error, str) else RIGHT)] += 1
    # no name, birth date or raw ID from any file reaches the table
    text = table.to_csv()
    for path in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[
                    "PatientName", "PatientID", "PatientBirthDate"])
        except Exception:  # non-DICOM files in the test data folder
            continue
        for keyword in ("PatientName", "PatientID", "PatientBirthDate"):
            value = str(ds.get(keyword, "") or "").strip()
            if len(value) >= 4:
                assert value not in text, f"{keyword} of {Path(path).name} is in the table"
