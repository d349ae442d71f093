"""NIfTI I/O (issue 4): Volume, read_nifti (canonical RAS+ reorientation, .nii and
.nii.gz, scaled data, nibabel's bundled files, truncated files), write_nifti (atomic,
affine kept)."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medimg.errors import DecodeError, InvalidImageError
from medimg.io import Volume, read_nifti, write_nifti

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"


def _world(affine, index):
    return (np.asarray(affine) @ np.append(np.asarray(index, float), 1.0))[:3]


def _save(array, affine, path, **header):
    img = nib.Nifti1Image(array, affine)
    for key, value in header.items():
        img.header[key] = value
    nib.save(img, str(path))
    return path


# An LPS-stored volume as BraTS writes it, and a permuted/oblique-free PSL one.
LPS = np.array([[-1.0, 0, 0, 10], [0, -2.0, 0, 20], [0, 0, 3.0, -5], [0, 0, 0, 1]])
PERMUTED = np.array([[0, 0, -1.5, 7], [-1.0, 0, 0, 3], [0, 2.0, 0, -4], [0, 0, 0, 1]])


@pytest.mark.parametrize("affine", [LPS, PERMUTED], ids=["LPS", "permuted"])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_read_nifti_reorients_to_ras_and_keeps_voxel_positions(tmp_path, rng, affine, suffix):
    array = rng.integers(0, 1000, size=(5, 6, 7)).astype(np.int16)
    path = _save(array, affine, tmp_path / f"v{suffix}")
    volume = read_nifti(path)
    assert volume.axcodes == ("R", "A", "S")
    assert volume.meta["original_axcodes"] == tuple(nib.aff2axcodes(affine))
    assert volume.meta["path"] == str(path)
    assert volume.array.dtype == np.int16  # unscaled data keeps its type
    # the canonical affine is diagonal-positive and spacing follows the axes
    assert np.all(np.diag(volume.affine)[:3] > 0)
    np.testing.assert_allclose(np.abs(volume.affine[:3, :3]).sum(0), volume.spacing)
    # each voxel value sits at the same world position as on disk
    ras = nib.as_closest_canonical(nib.load(str(path)))
    np.testing.assert_array_equal(volume.array, np.asarray(ras.dataobj))
    np.testing.assert_allclose(volume.affine, ras.affine)
    inverse = np.linalg.inv(volume.affine)
    for index in [(0, 0, 0), (4, 5, 6), (1, 3, 2), (3, 0, 5)]:
        position = _world(affine, index)
        new_index = np.rint(_world(inverse, position)).astype(int)
        np.testing.assert_allclose(_world(volume.affine, new_index), position, atol=1e-6)
        assert volume.array[tuple(new_index)] == array[index]
    raw = read_nifti(path, canonical=False)
    np.testing.assert_array_equal(raw.array, array)
    np.testing.assert_allclose(raw.affine, affine)


def test_read_nifti_bundled_files():
    anat = read_nifti(NIBABEL_DATA / "anatomical.nii")
    ref = nib.as_closest_canonical(nib.load(str(NIBABEL_DATA / "anatomical.nii")))
    assert anat.shape == ref.shape and anat.axcodes == ("R", "A", "S")
    np.testing.assert_allclose(anat.affine, ref.affine)
    np.testing.assert_allclose(np.asarray(anat.array, float), ref.get_fdata())
    four_d = read_nifti(NIBABEL_DATA / "example4d.nii.gz")
    ref4 = nib.as_closest_canonical(nib.load(str(NIBABEL_DATA / "example4d.nii.gz")))
    assert four_d.array.ndim == 4 and four_d.shape == ref4.shape
    np.testing.assert_allclose(four_d.affine, ref4.affine)
    np.testing.assert_allclose(np.asarray(four_d.array, float), ref4.get_fdata(), rtol=1e-5)
    assert four_d.spacing == pytest.approx(ref4.header.get_zooms()[:3])
    assert four_d.meta["original_axcodes"] == tuple(
        nib.aff2axcodes(nib.load(str(NIBABEL_DATA / "example4d.nii.gz")).affine))
    nifti2 = read_nifti(NIBABEL_DATA / "example_nifti2.nii.gz")
    ref2 = nib.as_closest_canonical(nib.load(str(NIBABEL_DATA / "example_nifti2.nii.gz")))
    np.testing.assert_allclose(nifti2.affine, ref2.affine)
    np.testing.assert_allclose(np.asarray(nifti2.array, float), ref2.get_fdata(), rtol=1e-5)


def test_read_nifti_scaled_data_is_float(tmp_path, rng):
    raw = rng.integers(-100, 100, size=(4, 4, 3)).astype(np.int16)
    path = tmp_path / "scaled.nii.gz"
    img = nib.Nifti1Image(raw, np.eye(4))
    img.header.set_slope_inter(0.5, 10.0)
    nib.save(img, str(path))
    volume = read_nifti(path)
    assert volume.array.dtype == np.float32
    np.testing.assert_allclose(volume.array, raw * 0.5 + 10.0)
    as_int = read_nifti(path, dtype=np.float64)
    assert as_int.array.dtype == np.float64


def test_read_nifti_truncated_gzip_names_the_file(tmp_path, rng):
    array = rng.normal(size=(16, 16, 16)).astype(np.float32)
    good = _save(array, np.eye(4), tmp_path / "good.nii.gz")
    data = good.read_bytes()
    bad = tmp_path / "cut.nii.gz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DecodeError, match="cut.nii.gz") as info:
        read_nifti(bad)
    assert "truncated" in str(info.value)
    # a truncated uncompressed file too
    plain = _save(array, np.eye(4), tmp_path / "plain.nii")
    short = tmp_path / "short.nii"
    short.write_bytes(plain.read_bytes()[:1000])
    with pytest.raises(DecodeError, match="short.nii"):
        read_nifti(short)
    # not NIfTI at all, and missing
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(gzip.compress(b"not a nifti header" * 30))
    with pytest.raises(DecodeError, match="junk.nii.gz"):
        read_nifti(junk)
    with pytest.raises(DecodeError, match="missing.nii"):
        read_nifti(tmp_path / "missing.nii")


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_write_nifti_round_trip_keeps_affine(tmp_path, rng, suffix):
    array = rng.normal(size=(6, 5, 4)).astype(np.float32)
    volume = Volume(array, PERMUTED)
    path = write_nifti(volume, tmp_path / "sub" / f"out{suffix}")
    assert path.is_file()
    img = nib.load(str(path))
    np.testing.assert_allclose(img.affine, PERMUTED)
    np.testing.assert_allclose(img.get_sform(), PERMUTED)
    np.testing.assert_allclose(img.get_qform(), PERMUTED, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(img.dataobj), array)
    back = read_nifti(path, canonical=False)
    np.testing.assert_array_equal(back.array, array)
    # bool stored as uint8, float64 as float32; 4-D volumes fine
    mask = write_nifti(Volume(array > 0, np.eye(4)), tmp_path / "mask.nii.gz")
    assert nib.load(str(mask)).get_data_dtype() == np.uint8
    f64 = write_nifti(Volume(array.astype(np.float64), np.eye(4)), tmp_path / "f64.nii")
    assert nib.load(str(f64)).get_data_dtype() == np.float32
    four = write_nifti(Volume(np.stack([array] * 2, -1), np.eye(4)), tmp_path / "four.nii.gz")
    assert read_nifti(four).shape == (6, 5, 4, 2)


def test_write_nifti_is_atomic(tmp_path, rng, monkeypatch):
    target = tmp_path / "vol.nii.gz"
    first = Volume(rng.normal(size=(4, 4, 4)).astype(np.float32), np.eye(4))
    write_nifti(first, target)
    before = target.read_bytes()

    def broken_save(img, filename):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_nifti(Volume(np.zeros((4, 4, 4), np.float32), np.eye(4)), target)
    assert target.read_bytes() == before  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vol.nii.gz"]  # no temp left


def test_write_nifti_rejects_other_suffix(tmp_path):
    with pytest.raises(InvalidImageError, match="nii"):
        write_nifti(Volume(np.zeros((2, 2, 2)), np.eye(4)), tmp_path / "x.img")


def test_volume_validates_and_describes(rng):
    v = Volume(np.zeros((4, 5, 6), np.float32), np.diag([2.0, 2.0, 3.0, 1.0]))
    assert v.spacing == (2.0, 2.0, 3.0) and v.axcodes == ("R", "A", "S")
    assert v.shape == (4, 5, 6) and "RAS" in repr(v)
    assert Volume(np.zeros((2, 2, 2)), LPS).axcodes == ("L", "P", "S")
    with pytest.raises(InvalidImageError, match="4, 4"):
        Volume(np.zeros((2, 2, 2)), np.eye(3))
    with pytest.raises(InvalidImageError, match="dimensions"):
        Volume(np.zeros((2, 2)), np.eye(4))
    with pytest.raises(InvalidImageError, match="singular"):
        Volume(np.zeros((2, 2, 2)), np.zeros((4, 4)))
    with pytest.raises(InvalidImageError, match="singular"):
        Volume(np.zeros((2, 2, 2)), np.full((4, 4), np.nan))
    canonical = Volume(rng.normal(size=(3, 4, 5)), LPS).to_canonical()
    assert canonical.axcodes == ("R", "A", "S")


# --- more cases (issue 4): nibabel canonical agreement, dtypes, masks, channels, bad files ---


def test_reads_bundled_anatomical_to_canonical():
    path = NIBABEL_DATA / "anatomical.nii"
    source = nib.load(str(path))
    volume = read_nifti(path)
    assert volume.axcodes == ("R", "A", "S")
    assert volume.meta["original_axcodes"] == tuple(nib.aff2axcodes(source.affine))
    # Same voxels at the same world positions as nibabel's own canonical image.
    canonical = nib.as_closest_canonical(source)
    assert np.allclose(volume.affine, canonical.affine)
    assert np.array_equal(volume.array, np.asanyarray(canonical.dataobj))
    raw = read_nifti(path, canonical=False)
    assert np.allclose(raw.affine, source.affine)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32])
def test_round_trip(tmp_path, suffix, dtype):
    array = (np.arange(3 * 4 * 5) % 7).astype(dtype).reshape(3, 4, 5)
    volume = Volume(array, np.diag([0.5, 0.7, 2.0, 1.0]))
    path = write_nifti(volume, tmp_path / f"x{suffix}")
    back = read_nifti(path)
    assert back.array.dtype == np.dtype(dtype)
    assert np.array_equal(back.array, array) and np.allclose(back.affine, volume.affine)
    header = nib.load(str(path)).header
    assert header["sform_code"] == 1 and header["qform_code"] == 1
    assert back.meta["xyzt_units"][0] == "mm"
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_write_bool_and_channels(tmp_path):
    mask = np.zeros((3, 3, 3), bool)
    mask[1, 1, 1] = True
    assert read_nifti(write_nifti(Volume(mask, np.eye(4)), tmp_path / "m.nii.gz")).array.dtype \
        == np.uint8
    vector = np.random.default_rng(0).random((3, 4, 5, 2)).astype(np.float32)
    back = read_nifti(write_nifti(Volume(vector, np.eye(4)), tmp_path / "v.nii"))
    assert np.array_equal(back.array, vector)


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(DecodeError, match="no such file"):
        read_nifti(tmp_path / "absent.nii.gz")
    (tmp_path / "junk.nii").write_bytes(b"not a nifti file at all")
    with pytest.raises(DecodeError, match="junk.nii"):
        read_nifti(tmp_path / "junk.nii")


# --- issue 11: gzip integrity, sheared affines, other formats nibabel reads ---------------
def test_every_single_bit_flip_in_a_nii_gz_fails_or_decodes_identically(tmp_path):
    rng = np.random.default_rng(11)
    array = rng.integers(0, 4000, size=(12, 10, 8)).astype(np.int16)
    good = _save(array, LPS, tmp_path / "good.nii.gz")
    reference = read_nifti(good)
    data = bytearray(good.read_bytes())
    # every byte of the gzip header and trailer, and a spread of the deflate stream
    positions = sorted({*range(0, 12), *range(len(data) - 8, len(data)),
                        *rng.choice(len(data), size=60, replace=False).tolist()})
    outcomes = {"error": 0, "identical": 0}
    for position in positions:
        flipped = data.copy()
        flipped[position] ^= 1 << int(rng.integers(8))
        bad = tmp_path / f"flip{position}.nii.gz"
        bad.write_bytes(bytes(flipped))
        try:
            got = read_nifti(bad)
        except DecodeError as exc:
            assert bad.name in str(exc)
            outcomes["error"] += 1
        else:
            np.testing.assert_array_equal(got.array, reference.array)
            np.testing.assert_array_equal(got.affine, reference.affine)
            outcomes["identical"] += 1
    # the flips inside the compressed data and the CRC/length trailer must all fail
    assert outcomes["error"] >= len(positions) - 12


def test_crc_mismatch_is_a_decode_error_saying_so(tmp_path, rng):
    good = _save(rng.normal(size=(8, 8, 8)).astype(np.float32), np.eye(4), tmp_path / "g.nii.gz")
    data = bytearray(good.read_bytes())
    data[-8] ^= 0x01  # first byte of the CRC-32
    (tmp_path / "crc.nii.gz").write_bytes(bytes(data))
    with pytest.raises(DecodeError, match=r"crc\.nii\.gz.*(CRC|corrupt gzip)"):
        read_nifti(tmp_path / "crc.nii.gz")


def _gantry_tilt_affine(degrees=20.0):
    tilt = np.deg2rad(degrees)
    affine = np.eye(4)
    affine[:3, 0] = [-0.7, 0, 0]
    affine[:3, 1] = [0, -0.7, 0]
    affine[:3, 2] = [0, -2.5 * np.sin(tilt), 2.5 * np.cos(tilt)]  # slices step along a tilted z
    affine[:3, 3] = [120.0, 80.0, -40.0]
    return affine


def test_sheared_affine_is_written_with_qform_code_zero(tmp_path):
    import SimpleITK as sitk

    affine = _gantry_tilt_affine()
    array = np.arange(40 * 30 * 20, dtype=np.int16).reshape(40, 30, 20)
    path = write_nifti(Volume(array, affine), tmp_path / "tilted.nii.gz")
    header = nib.load(str(path)).header
    assert int(header["qform_code"]) == 0 and int(header["sform_code"]) == 1
    back = read_nifti(path, canonical=False)
    np.testing.assert_allclose(back.affine, affine, atol=1e-4)
    np.testing.assert_array_equal(back.array, array)
    # ITK cannot hold a shear: it refuses the file rather than misplacing voxels (with the
    # qform approximation stored, as before, it placed a corner 8.4 mm away)
    with pytest.raises(RuntimeError, match="orthonormal"):
        sitk.ReadImage(str(path))


def test_rigid_oblique_affine_keeps_qform_and_itk_agrees(tmp_path):
    import SimpleITK as sitk

    angle = np.deg2rad(17.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                         [0, 0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, 0.9, 2.5])
    affine[:3, 3] = [-30.0, 12.0, 5.0]
    array = np.zeros((9, 8, 7), np.float32)
    path = write_nifti(Volume(array, affine), tmp_path / "oblique.nii.gz")
    header = nib.load(str(path)).header
    assert int(header["qform_code"]) == 1 and int(header["sform_code"]) == 1
    image = sitk.ReadImage(str(path))
    for index in ((0, 0, 0), (8, 7, 6), (3, 5, 2)):
        lps = image.TransformIndexToPhysicalPoint(index)
        ras = np.array([-lps[0], -lps[1], lps[2]])
        np.testing.assert_allclose(ras, _world(affine, index), atol=1e-3)


def test_nibabel_formats_are_read_with_nibabels_geometry():
    cases = {
        "test.mgz": "MGHImage",
        "example4d+orig.HEAD": "AFNIImage",
        "scaled+tlrc.HEAD": "AFNIImage",
        "minc1_1_scale.mnc": "Minc1Image",
        "minc2_1_scale.mnc": "Minc2Image",
        "phantom_EPI_asc_CLEAR_2_1.PAR": "PARRECImage",
        "example_nifti2.nii.gz": "Nifti2Image",
    }
    for name, format_name in cases.items():
        path = NIBABEL_DATA / name
        reference = nib.load(str(path))
        volume = read_nifti(path, canonical=False)
        assert volume.meta["format"] == format_name, name
        np.testing.assert_allclose(volume.affine, reference.affine, err_msg=name)
        expected = np.asanyarray(reference.dataobj)
        if expected.ndim == 2:
            expected = expected[..., np.newaxis]
        np.testing.assert_allclose(volume.array, expected, rtol=1e-6, err_msg=name)
        assert volume.array.dtype.isnative, name
        canonical = read_nifti(path)
        assert canonical.axcodes == ("R", "A", "S"), name


def test_analyze_pair_is_read(tmp_path, rng):
    array = rng.integers(0, 500, size=(6, 7, 8)).astype(np.int16)
    affine = np.diag([-2.0, 2.0, 3.0, 1.0])
    affine[:3, 3] = [10, -20, 5]
    nib.AnalyzeImage(array, affine).to_filename(str(tmp_path / "scan.img"))
    for name in ("scan.hdr", "scan.img"):
        volume = read_nifti(tmp_path / name, canonical=False)
        assert volume.meta["format"].endswith("AnalyzeImage")  # nibabel picks the SPM flavour
        assert volume.meta["xyzt_units"] == ("mm", "unknown")
        np.testing.assert_array_equal(volume.array, array)
        np.testing.assert_allclose(volume.affine, nib.load(str(tmp_path / name)).affine)
    (tmp_path / "scan.img").unlink()
    with pytest.raises(DecodeError, match=r"scan\.hdr.*scan\.img is missing"):
        read_nifti(tmp_path / "scan.hdr")


@pytest.mark.parametrize("name", ["analyze.hdr", "nifti1.hdr", "T1.PAR",  # companion missing
                                  "row_major.dconn.nii",                   # CIFTI: not a volume
                                  "simple.trk", "standard.tck",           # streamlines
                                  "tinypet.v", "0.dcm",                    # ECAT, DICOM
                                  "bad_datatype+orig.HEAD", "phantom_truncated.PAR"])
def test_other_nibabel_files_are_decode_errors_naming_the_file(name):
    with pytest.raises(DecodeError) as info:
        read_nifti(NIBABEL_DATA / name)
    assert name in str(info.value)


def test_dicom_given_to_read_nifti_says_so():
    with pytest.raises(DecodeError, match="it is DICOM"):
        read_nifti(NIBABEL_DATA / "0.dcm")


def test_corrupt_mgz_is_a_decode_error(tmp_path):
    data = bytearray((NIBABEL_DATA / "test.mgz").read_bytes())
    data[len(data) // 2] ^= 0x10
    (tmp_path / "bad.mgz").write_bytes(bytes(data))
    with pytest.raises(DecodeError, match="bad.mgz"):
        read_nifti(tmp_path / "bad.mgz")


def test_truncated_nii_says_truncated(tmp_path, rng):
    plain = _save(rng.normal(size=(16, 16, 16)).astype(np.float32), np.eye(4), tmp_path / "p.nii")
    short = tmp_path / "short.nii"
    short.write_bytes(plain.read_bytes()[:5000])
    with pytest.raises(DecodeError, match=r"short\.nii.*truncated"):
        read_nifti(short)


def test_extra_singleton_dimensions_are_dropped_and_bad_geometry_refused(tmp_path, rng):
    array = rng.integers(0, 9, size=(4, 5, 6, 1, 1, 1)).astype(np.int16)
    path = _save(array, LPS, tmp_path / "six.nii")
    volume = read_nifti(path, canonical=False)
    assert volume.shape == (4, 5, 6, 1)  # trailing length-1 axes beyond the 4th are dropped
    np.testing.assert_array_equal(volume.array, array[..., 0, 0])
    bad = _save(array[..., 0, 0, 0], LPS, tmp_path / "nan.nii")
    with open(bad, "r+b") as handle:  # an sform with a NaN (nibabel will not write one)
        header = nib.Nifti1Header.from_fileobj(handle)
        header["srow_x"][0] = np.nan
        handle.seek(0)
        handle.write(header.binaryblock)
    with pytest.raises(InvalidImageError, match=r"nan\.nii.*not finite"):
        read_nifti(bad)
