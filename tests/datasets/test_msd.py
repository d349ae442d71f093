"""medimg.datasets.msd: the nnU-Net v2 and Decathlon layouts, and their bad inputs."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from medimg.datasets import msd
from medimg.errors import DecodeError, InvalidImageError, LayoutError
from medimg.io import Volume, write_nifti
from medimg.synthetic.msd import make_msd


@pytest.fixture(scope="module")
def nnunet(tmp_path_factory):
    return make_msd(tmp_path_factory.mktemp("nnunet"), seed=3, layout="nnunet", n_cases=4,
                    n_test=1, shape=(24, 24, 8))


@pytest.fixture(scope="module")
def decathlon(tmp_path_factory):
    return make_msd(tmp_path_factory.mktemp("decathlon"), seed=3, layout="decathlon",
                    n_cases=4, n_test=1, shape=(24, 24, 8))


def _copy(folder, tmp_path):
    target = tmp_path / folder.name
    shutil.copytree(folder, target)
    return target


def test_both_layouts_give_the_same_cases_and_voxels(nnunet, decathlon):
    a, b = msd.find_cases(nnunet), msd.find_cases(decathlon)
    assert a["case"].tolist() == b["case"].tolist()
    assert a["split"].tolist() == ["training"] * 4 + ["test"]
    assert a["label"].isna().tolist() == [False] * 4 + [True]
    assert [len(i) for i in a["images"]] == [2] * 5 and [len(i) for i in b["images"]] == [1] * 5
    assert not a["packed"].any() and b["packed"].all()
    da, db = a.attrs["dataset"], b.attrs["dataset"]
    assert (da.layout, db.layout) == ("nnunet", "decathlon")
    assert da.channel_names == db.channel_names == ("T2", "ADC")
    assert da.labels == db.labels == {"background": (0,), "PZ": (1,), "TZ": (2,)}
    for i in range(4):
        image_a, label_a = msd.load_case(a.iloc[i], da)
        image_b, label_b = msd.load_case(b.iloc[i], db)
        np.testing.assert_array_equal(image_a.array, image_b.array)
        np.testing.assert_array_equal(label_a.array, label_b.array)
        assert image_a.axcodes == ("R", "A", "S")
        assert image_a.array.shape[-1] == 2 and label_a.array.dtype == np.uint8


def test_stray_appledouble_files_are_ignored(decathlon):
    assert any(p.name.startswith("._") for p in (decathlon / "imagesTr").iterdir())
    cases = msd.find_cases(decathlon)
    assert not any("._" in p for paths in cases["images"] for p in paths)


def test_load_case_keeps_the_source_grid(nnunet):
    cases = msd.find_cases(nnunet)
    described = cases.attrs["dataset"]
    for row in cases.itertuples():
        image, _ = msd.load_case(row._asdict(), described)
        on_disk = nib.load(row.images[0])
        np.testing.assert_allclose(image.meta["source_affine"], on_disk.affine)
        assert image.meta["source_shape"] == on_disk.shape[:3]
    orientations = {"".join(nib.aff2axcodes(nib.load(r[0]).affine)) for r in cases["images"]}
    assert len(orientations) > 1  # the phantom varies the storage orientation


def test_root_above_the_dataset_folder_is_accepted(nnunet):
    assert len(msd.find_cases(nnunet.parent)) == len(msd.find_cases(nnunet))


def test_nnunet_v1_split_channel_files_listed_as_one(nnunet, tmp_path):
    root = _copy(nnunet, tmp_path)
    cases = sorted(p.name.replace("_0000.nii.gz", "") for p in (root / "imagesTr").glob("*_0000.nii.gz"))
    (root / "dataset.json").write_text(json.dumps({
        "modality": {"0": "T2", "1": "ADC"}, "labels": {"0": "background", "1": "PZ", "2": "TZ"},
        "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"}
                     for c in cases], "test": []}))
    table = msd.find_cases(root)
    assert table.attrs["dataset"].layout == "decathlon"
    assert [len(i) for i in table["images"]] == [2] * len(cases)
    assert not table["packed"].any()


def test_region_labels_are_read_as_regions(nnunet, tmp_path):
    root = _copy(nnunet, tmp_path)
    meta = json.loads((root / "dataset.json").read_text())
    meta["labels"] = {"background": 0, "gland": [1, 2], "TZ": 2}
    meta["regions_class_order"] = [1, 2]
    (root / "dataset.json").write_text(json.dumps(meta))
    described = msd.describe(root)
    assert described.regions and described.regions_class_order == (1, 2)
    assert described.label_values == (0, 1, 2)
    del meta["regions_class_order"]
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(LayoutError, match="regions_class_order"):
        msd.describe(root)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.pop("labels"), "missing key 'labels'"),
    (lambda m: m.pop("channel_names"), "'channel_names'"),
    (lambda m: m.update(channel_names={"0": "T2", "2": "ADC"}), "not 0..1"),
    (lambda m: m.update(labels={"PZ": 1, "TZ": 2}), "no background"),
    (lambda m: m.update(labels={"background": 0, "PZ": 1, "TZ": 1}), "share one value"),
    (lambda m: m.update(file_ending=".jpg"), "file_ending"),
    (lambda m: m["labels"].update(ignore=3), "ignore"),
])
def test_bad_dataset_json_names_the_file_and_key(nnunet, tmp_path, edit, message):
    root = _copy(nnunet, tmp_path)
    meta = json.loads((root / "dataset.json").read_text())
    edit(meta)
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(LayoutError, match=message) as info:
        msd.find_cases(root)
    assert "dataset.json" in str(info.value)


def test_not_json_is_a_layout_error(nnunet, tmp_path):
    root = _copy(nnunet, tmp_path)
    (root / "dataset.json").write_text("{not json")
    with pytest.raises(LayoutError, match="JSON"):
        msd.find_cases(root)


def test_missing_channel_file_names_the_case_and_file(nnunet, tmp_path):
    root = _copy(nnunet, tmp_path)
    (root / "imagesTr" / "prostate_002_0001.nii.gz").unlink()
    with pytest.raises(LayoutError, match="prostate_002_0001.nii.gz"):
        msd.find_cases(root)


def test_missing_label_and_orphan_label(nnunet, tmp_path):
    root = _copy(nnunet, tmp_path)
    (root / "labelsTr" / "prostate_003.nii.gz").unlink()
    with pytest.raises(LayoutError, match="prostate_003"):
        msd.find_cases(root)
    root2 = _copy(nnunet, tmp_path / "b")
    shutil.copy(root2 / "labelsTr" / "prostate_001.nii.gz", root2 / "labelsTr" / "extra.nii.gz")
    with pytest.raises(LayoutError, match="extra.nii.gz"):
        msd.find_cases(root2)


def test_image_without_channel_number_is_refused(nnunet, tmp_path):
    root = _copy(nnunet, tmp_path)
    shutil.copy(root / "imagesTr" / "prostate_001_0000.nii.gz", root / "imagesTr" / "odd.nii.gz")
    with pytest.raises(LayoutError, match="_XXXX"):
        msd.find_cases(root)


def test_decathlon_missing_listed_file(decathlon, tmp_path):
    root = _copy(decathlon, tmp_path)
    (root / "labelsTr" / "prostate_002.nii.gz").unlink()
    with pytest.raises(LayoutError, match=r"training\[1\]\.label"):
        msd.find_cases(root)


def test_label_values_outside_dataset_json(nnunet, tmp_path):
    root = _copy(nnunet, tmp_path)
    path = root / "labelsTr" / "prostate_001.nii.gz"
    img = nib.load(path)
    data = np.asarray(img.dataobj).copy()
    data[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(data, img.affine), path)
    cases = msd.find_cases(root)
    with pytest.raises(InvalidImageError, match=r"value\(s\) \[7\]") as info:
        msd.load_case(cases.iloc[0], cases.attrs["dataset"])
    assert "prostate_001.nii.gz" in str(info.value)


def test_channels_on_different_grids(nnunet, tmp_path):
    root = _copy(nnunet, tmp_path)
    path = root / "imagesTr" / "prostate_001_0001.nii.gz"
    img = nib.load(path)
    shifted = img.affine.copy()
    shifted[:3, 3] += 5.0
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), shifted), path)
    cases = msd.find_cases(root)
    with pytest.raises(InvalidImageError, match="not on one voxel grid") as info:
        msd.load_case(cases.iloc[0], cases.attrs["dataset"])
    assert "prostate_001_0001" in str(info.value)


def test_label_on_another_shape(nnunet, tmp_path):
    root = _copy(nnunet, tmp_path)
    path = root / "labelsTr" / "prostate_001.nii.gz"
    img = nib.load(path)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:-1], img.affine), path)
    cases = msd.find_cases(root)
    with pytest.raises(InvalidImageError, match="shape"):
        msd.load_case(cases.iloc[0], cases.attrs["dataset"])


def test_nan_voxels_and_truncated_file(nnunet, tmp_path):
    root = _copy(nnunet, tmp_path)
    path = root / "imagesTr" / "prostate_001_0000.nii.gz"
    img = nib.load(path)
    data = np.asarray(img.dataobj, dtype=np.float32).copy()
    data[1, 1, 1] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine), path)
    cases = msd.find_cases(root)
    with pytest.raises(InvalidImageError, match="NaN"):
        msd.load_case(cases.iloc[0], cases.attrs["dataset"])
    other = root / "imagesTr" / "prostate_002_0000.nii.gz"
    other.write_bytes(other.read_bytes()[:200])
    with pytest.raises(DecodeError):
        msd.load_case(cases.iloc[1], cases.attrs["dataset"])


def test_four_d_file_with_wrong_channel_count(decathlon, tmp_path):
    root = _copy(decathlon, tmp_path)
    path = root / "imagesTr" / "prostate_001.nii.gz"
    img = nib.load(path)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[..., :1].repeat(3, axis=-1), img.affine),
             path)
    cases = msd.find_cases(root)
    with pytest.raises(InvalidImageError, match="3 channels"):
        msd.load_case(cases.iloc[0], cases.attrs["dataset"])


def test_metaimage_files_are_read_through_simpleitk(tmp_path):
    import SimpleITK as sitk

    root = tmp_path / "Dataset001_Meta"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    array = np.zeros((6, 7, 5), np.float32)  # sitk (z, y, x)
    array[2:4, 3:5, 1:3] = 5
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.5, 0.7, 2.0))
    sitk.WriteImage(image, str(root / "imagesTr" / "c1_0000.mha"))
    label = sitk.GetImageFromArray((array > 0).astype(np.uint8))
    label.CopyInformation(image)
    sitk.WriteImage(label, str(root / "labelsTr" / "c1.mha"))
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "MR"}, "labels": {"background": 0, "x": 1},
        "file_ending": ".mha", "numTraining": 1}))
    cases = msd.find_cases(root)
    volume, lab = msd.load_case(cases.iloc[0], cases.attrs["dataset"])
    assert volume.array.shape == (5, 7, 6, 1)
    np.testing.assert_allclose(sorted(volume.spacing), [0.5, 0.7, 2.0])
    assert int(lab.array.sum()) == 8


def test_no_dataset_json(tmp_path):
    with pytest.raises(LayoutError, match="no dataset.json"):
        msd.find_cases(tmp_path)
    with pytest.raises(LayoutError, match="not found"):
        msd.find_cases(tmp_path / "missing")


def test_write_and_reread_volume_helper(tmp_path):
    # guards the helper used above: write_nifti keeps the affine exactly
    volume = Volume(np.zeros((3, 4, 5), np.uint8), np.diag([0.5, 0.6, 2.0, 1.0]))
    path = write_nifti(volume, tmp_path / "x.nii.gz")
    np.testing.assert_allclose(nib.load(path).affine, volume.affine)
