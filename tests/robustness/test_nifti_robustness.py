"""NIfTI and the other volume formats nibabel reads, from nibabel's own test data: every
file read as nibabel reads it or refused by name, truncations, bit flips in every gzip
stream (all detectable: gzip carries a CRC-32 and the length), header edits, and the
sheared-affine write. Each case: right, or a MedimgError naming the file."""

from __future__ import annotations

import shutil
import warnings

import nibabel as nib
import numpy as np
import pytest

from medimg.io import Volume, read_nifti, write_nifti

from ._support import CLEAN, NIBABEL_DATA, OTHER, RIGHT, judge, same

SKIP_SUFFIXES = {".py", ".m", ".rst", ".pyc"}
ALL_FILES = sorted(p.name for p in NIBABEL_DATA.iterdir()
                   if p.is_file() and p.suffix not in SKIP_SUFFIXES and p.name != ".gitignore")


def _matches_nibabel(path):
    """What nibabel itself returns for ``path``, as read_nifti promises to return it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = nib.load(str(path))
        expected = np.asanyarray(img.dataobj)
    while expected.ndim > 4 and expected.shape[-1] == 1:  # as read_nifti drops them
        expected = expected[..., 0]
    if expected.ndim == 2:
        expected = expected[..., np.newaxis]

    def check(volume):
        values = np.asarray(volume.array, dtype=np.float64)
        return (values.shape == expected.shape
                and np.allclose(values, expected, rtol=1e-6, equal_nan=True)
                and np.allclose(volume.affine, img.affine))
    return check


def _nibabel_reads(path) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = nib.load(str(path))
            np.asanyarray(img.dataobj)
        return img.affine is not None
    except Exception:  # nibabel's own verdict, whatever it raises
        return False


@pytest.mark.parametrize("name", ALL_FILES)
def test_every_nibabel_test_file_is_read_or_refused(name):
    path = NIBABEL_DATA / name
    expected = _matches_nibabel(path) if _nibabel_reads(path) else None
    outcome, detail = judge("nibabel test files", path,
                            lambda p: read_nifti(p, canonical=False), expected)
    assert outcome in (RIGHT, CLEAN), detail
    if expected is not None and path.suffix != ".dcm":  # nibabel reads it: so must we
        assert outcome == RIGHT, detail


GZIPPED = ["example4d.nii.gz", "example_nifti2.nii.gz", "standard.nii.gz", "test.mgz",
           "example4d+orig.BRIK.gz"]


@pytest.mark.parametrize("name", GZIPPED)
def test_bit_flips_in_gzip_streams_fail_or_change_nothing(tmp_path, name):
    source = NIBABEL_DATA / name
    companion = None
    if name.endswith(".BRIK.gz"):  # AFNI: read through the .HEAD next to it
        companion = NIBABEL_DATA / name.replace(".BRIK.gz", ".HEAD")
    data = bytearray(source.read_bytes())
    reference = read_nifti(companion or source, canonical=False)
    rng = np.random.default_rng(len(data))
    positions = sorted({*range(0, 10), *range(len(data) - 8, len(data)),
                        *rng.choice(len(data), size=22, replace=False).tolist()})
    failures = []
    for position in positions:
        flipped = data.copy()
        flipped[position] ^= 1 << int(rng.integers(8))
        folder = tmp_path / f"flip{position}"
        folder.mkdir()
        (folder / name).write_bytes(bytes(flipped))
        target = folder / name
        if companion is not None:
            shutil.copy(companion, folder / companion.name)
            target = folder / companion.name

        def right(volume):
            return same(volume.array, reference.array) and same(volume.affine, reference.affine)

        outcome, detail = judge("gzip bit flip", target, lambda p: read_nifti(p, canonical=False),
                                right, damaged=folder / name)
        if outcome == OTHER:
            failures.append(f"byte {position}: {detail}")
    assert not failures, "\n".join(failures)


TRUNCATED = ["example4d.nii.gz", "test.mgz", "anatomical.nii", "functional.nii",
             "minc1_1_scale.mnc", "minc2_1_scale.mnc", "scaled+tlrc.BRIK"]


@pytest.mark.parametrize("name", TRUNCATED)
def test_truncated_files_are_refused(tmp_path, name):
    source = NIBABEL_DATA / name
    data = source.read_bytes()
    failures = []
    for fraction in (0.0, 0.01, 0.1, 0.3, 0.6, 0.9, 0.99):
        folder = tmp_path / f"cut{int(fraction * 100)}"
        folder.mkdir()
        (folder / name).write_bytes(data[: int(len(data) * fraction)])
        target = folder / name
        if name.endswith(".BRIK"):
            shutil.copy(NIBABEL_DATA / name.replace(".BRIK", ".HEAD"), folder)
            target = folder / name.replace(".BRIK", ".HEAD")
        outcome, detail = judge("volume truncation", target, read_nifti, None,
                                damaged=folder / name)
        if outcome != CLEAN:
            failures.append(f"cut at {fraction:.0%}: {detail}")
    assert not failures, "\n".join(failures)


def _edited(tmp_path, edit):
    """anatomical.nii with its 348-byte header edited in place (data untouched)."""
    path = tmp_path / "edited.nii"
    shutil.copy(NIBABEL_DATA / "anatomical.nii", path)
    with open(path, "r+b") as handle:
        header = nib.Nifti1Header.from_fileobj(handle, check=False)
        edit(header)
        handle.seek(0)
        handle.write(header.binaryblock)
    return path


def _set(field, value):
    def edit(header):
        header[field] = value
    return edit


HEADER_EDITS = {
    "dim[0]=9": lambda h: h["dim"].__setitem__(0, 9),
    "dim[1]=0": lambda h: h["dim"].__setitem__(1, 0),
    "dim[2]=-3": lambda h: h["dim"].__setitem__(2, -3),
    "dim[3] larger than the data": lambda h: h["dim"].__setitem__(3, 200),
    "datatype=255": _set("datatype", 255),
    "vox_offset beyond the file": _set("vox_offset", 10**7),
    "sform NaN": lambda h: (h.__setitem__("sform_code", 1), h["srow_x"].__setitem__(0, np.nan)),
    "sform all zero": lambda h: (h.__setitem__("sform_code", 1), h["srow_x"].fill(0),
                                 h["srow_y"].fill(0), h["srow_z"].fill(0)),
    "pixdim zero, no sform/qform": lambda h: (h.__setitem__("sform_code", 0),
                                              h.__setitem__("qform_code", 0),
                                              h["pixdim"].__setitem__(1, 0)),
    "scl_slope NaN": _set("scl_slope", np.nan),
    "scl_slope 0 (no scaling)": _set("scl_slope", 0),
    "scl_slope 2": _set("scl_slope", 2.0),
    "sizeof_hdr wrong": _set("sizeof_hdr", 100),
    "magic wrong": _set("magic", b"xx1"),
}


@pytest.mark.parametrize("edit", list(HEADER_EDITS))
def test_header_edits_read_as_nibabel_or_refused(tmp_path, edit):
    path = _edited(tmp_path, HEADER_EDITS[edit])
    expected = _matches_nibabel(path) if _nibabel_reads(path) else None
    outcome, detail = judge("nifti header edit", path, lambda p: read_nifti(p, canonical=False),
                            expected)
    assert outcome in (RIGHT, CLEAN), detail


@pytest.mark.parametrize("tilt", [5.0, 20.0, 30.0])
def test_sheared_write_keeps_the_exact_geometry(tmp_path, tilt):
    angle = np.deg2rad(tilt)
    affine = np.array([[-0.8, 0, 0, 90.0], [0, -0.8, -2.0 * np.sin(angle), 60.0],
                       [0, 0, 2.0 * np.cos(angle), -30.0], [0, 0, 0, 1.0]])
    volume = Volume(np.arange(6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4), affine)
    path = write_nifti(volume, tmp_path / "tilted.nii.gz")

    def right(back):
        header = nib.load(str(path)).header
        return (np.allclose(back.affine, affine, atol=1e-4) and same(back.array, volume.array)
                and int(header["qform_code"]) == 0 and int(header["sform_code"]) == 1)

    outcome, detail = judge("sheared write", path, lambda p: read_nifti(p, canonical=False), right)
    assert outcome == RIGHT, detail
