"""Tests of the image and datalist checks: every bad input is reported, naming its file."""

import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from pipelines.validation.checks import main, validate_datalist
from pipelines.validation.errors import DataError
from pipelines.validation.volume_checks import check_pair, check_volume, count_channels

SHAPE = (12, 10, 6)
AFFINE = np.diag([1.5, 1.5, 2.5, 1.0])


def _nifti(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def _pair(folder: Path, name: str = "case", **label_kw) -> tuple[Path, Path]:
    """A good image (int16 HU) / label (uint8) pair; ``label_kw`` may override the label's array or affine."""
    rng = np.random.default_rng(0)
    image = _nifti(folder / f"{name}_img.nii.gz", rng.integers(-1000, 400, SHAPE).astype(np.int16))
    lab = np.zeros(SHAPE, np.uint8)
    lab[3:8, 3:7, 2:5] = 1
    lab[4:6, 4:6, 3] = 2
    label = _nifti(folder / f"{name}_lab.nii.gz", label_kw.get("array", lab), label_kw.get("affine", AFFINE))
    return image, label


def _raises_naming(problems: list[str], path: Path, fragment: str) -> None:
    """The problems, raised as a DataError, name ``path`` and contain ``fragment``."""
    assert problems, "expected a problem"
    with pytest.raises(DataError) as info:
        raise DataError(problems)
    message = str(info.value)
    assert str(path) in message and fragment in message, message
    assert isinstance(info.value, ValueError)


def _write_dicom_series(folder: Path, array_zyx: np.ndarray, spacing=(0.8, 0.8, 2.0)) -> Path:
    """Write a CT series, one file per slice, the way SimpleITK's DICOM series example does."""
    folder.mkdir()
    image = sitk.GetImageFromArray(array_zyx.astype(np.int16))
    image.SetSpacing(spacing)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    date, now = time.strftime("%Y%m%d"), time.strftime("%H%M%S")
    series_uid = "1.2.826.0.1.3680043.2.1125." + date + ".1" + now
    tags = [
        ("0008|0031", now), ("0008|0021", date), ("0008|0060", "CT"), ("0020|000e", series_uid),
        ("0020|000d", series_uid + ".1"), ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0008|103e", "phantom"),
    ]  # fmt: skip
    for k in range(image.GetDepth()):
        sl = image[:, :, k]
        for tag, value in tags:
            sl.SetMetaData(tag, value)
        sl.SetMetaData("0020|0032", "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, k)))))
        sl.SetMetaData("0020|0013", str(k + 1))
        sl.SetMetaData("0018|0050", str(spacing[2]))
        writer.SetFileName(str(folder / f"slice_{k:03d}.dcm"))
        writer.Execute(sl)
    return folder


# ---- single volumes -------------------------------------------------------------------------------------------
def test_good_pair_passes(tmp_path):
    image, label = _pair(tmp_path)
    assert check_volume(image) == []
    assert check_pair(image, label) == []


def test_missing_file(tmp_path):
    path = tmp_path / "nope.nii.gz"
    _raises_naming(check_volume(path), path, "not found")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.nii.gz"
    path.write_bytes(b"")
    _raises_naming(check_volume(path), path, "empty")


def test_truncated_nifti(tmp_path):
    rng = np.random.default_rng(1)
    good = _nifti(tmp_path / "good.nii.gz", rng.normal(size=(40, 40, 20)).astype(np.float32))
    raw = good.read_bytes()
    for name, data in (("half.nii.gz", raw[: len(raw) // 2]), ("head.nii.gz", raw[:100])):
        path = tmp_path / name
        path.write_bytes(data)
        _raises_naming(check_volume(path), path, "cannot be read as a NIfTI/NRRD/DICOM image")


def test_garbage_nifti(tmp_path):
    path = tmp_path / "garbage.nii.gz"
    path.write_bytes(np.random.default_rng(2).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    _raises_naming(check_volume(path), path, "cannot be read")
    plain = tmp_path / "garbage.nii"
    plain.write_bytes(b"not a nifti header" * 10)
    _raises_naming(check_volume(plain), plain, "cannot be read")


def test_2d_where_3d_expected(tmp_path):
    path = _nifti(tmp_path / "slice.nii.gz", np.zeros((12, 10), np.int16))
    _raises_naming(check_volume(path), path, "2D")
    assert check_volume(path, expect_ndim=2) == []


def test_4d_volume_and_trailing_singleton(tmp_path):
    path = _nifti(tmp_path / "four.nii.gz", np.zeros((*SHAPE, 3), np.int16))
    _raises_naming(check_volume(path), path, "4D")
    assert check_volume(_nifti(tmp_path / "single.nii.gz", np.zeros((*SHAPE, 1), np.int16))) == []


def test_zero_sized_dimension(tmp_path):
    path = _nifti(tmp_path / "zero.nii.gz", np.zeros((12, 0, 6), np.int16))
    _raises_naming(check_volume(path), path, "zero-sized")


def test_nan_and_inf_voxels(tmp_path):
    array = np.zeros(SHAPE, np.float32)
    array[1, 1, 1] = np.nan
    array[2, 2, 2] = np.inf
    path = _nifti(tmp_path / "nan.nii.gz", array)
    _raises_naming(check_volume(path), path, "1 NaN and 1 infinite")
    assert check_volume(path, check_intensity=False) == []  # headers only


def test_shape_mismatch(tmp_path):
    image, label = _pair(tmp_path, array=np.zeros((12, 10, 7), np.uint8))
    _raises_naming(check_pair(image, label), label, "shape")


def test_spacing_mismatch(tmp_path):
    image, label = _pair(tmp_path, affine=np.diag([1.5, 1.5, 3.0, 1.0]))
    _raises_naming(check_pair(image, label), label, "spacing")


def test_affine_mismatch(tmp_path):
    shifted = AFFINE.copy()
    shifted[:3, 3] = (4.0, 0.0, 0.0)
    image, label = _pair(tmp_path, affine=shifted)
    _raises_naming(check_pair(image, label), label, "affine")
    flipped = np.diag([-1.5, 1.5, 2.5, 1.0])
    image, label = _pair(tmp_path, name="flip", affine=flipped)
    _raises_naming(check_pair(image, label), label, "affine")


def test_label_values(tmp_path):
    lab = np.zeros(SHAPE, np.float32)
    lab[1, 1, 1] = 0.5
    lab[2, 2, 2] = -1
    image, label = _pair(tmp_path, array=lab)
    problems = check_pair(image, label)
    _raises_naming(problems, label, "non-integer")
    _raises_naming(problems, label, "negative")
    image, label = _pair(tmp_path, name="float_ok", array=np.ones(SHAPE, np.float32))
    assert check_pair(image, label) == []


def test_nrrd_passes_and_corrupt_nrrd_fails(tmp_path):
    image = sitk.GetImageFromArray(np.zeros(SHAPE[::-1], np.int16))
    image.SetSpacing((0.7, 0.7, 3.0))
    path = tmp_path / "scan.nrrd"
    sitk.WriteImage(image, str(path))
    assert check_volume(path) == []
    assert check_volume(path, check_intensity=False) == []
    bad = tmp_path / "bad.nrrd"
    bad.write_bytes(b"NRRD0004\ntype: nonsense\n")
    _raises_naming(check_volume(bad), bad, "cannot be read as a NIfTI/NRRD/DICOM image")


def test_nrrd_label_matches_nifti_image(tmp_path):
    """Geometry is compared in world (RAS) space, whatever the file formats."""
    image, _ = _pair(tmp_path)
    lab = sitk.GetImageFromArray(np.zeros(SHAPE[::-1], np.uint8))
    lab.SetSpacing((1.5, 1.5, 2.5))
    lab.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))  # RAS in SimpleITK's LPS world
    label = tmp_path / "label.nrrd"
    sitk.WriteImage(lab, str(label))
    assert check_pair(image, label) == []


def test_dicom_series_folder(tmp_path):
    folder = _write_dicom_series(tmp_path / "series", np.arange(4 * 16 * 16).reshape(4, 16, 16) % 300)
    assert check_volume(folder) == []
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    _raises_naming(check_volume(empty), empty, "no DICOM series")
    (empty / "notes.txt").write_text("not dicom")
    _raises_naming(check_volume(empty), empty, "no DICOM series")


def test_label_values_outside_the_classes(tmp_path):
    lab = np.zeros(SHAPE, np.uint8)
    lab[1:3, 1:3, 1] = 4
    lab[5, 5, 5] = 3
    image, label = _pair(tmp_path, array=lab)
    assert check_pair(image, label) == []  # any non-negative integer without label_values
    assert check_pair(image, label, label_values=[0, 1, 2, 3, 4]) == []
    assert check_pair(image, label, label_values=[0, 1, 2, 4]) == [
        f"{label}: label has value(s) [3] outside the classes' values [0, 1, 2, 4] (values found: [0, 3, 4])"
    ]
    assert check_pair(image, label, label_values=[0, 1, 2], check_intensity=False) == []  # headers only


def _ct_volume(**changes) -> np.ndarray:
    """A tiny CT in HU: air around a soft-tissue body with some bone."""
    array = np.full(SHAPE, -1000, np.int16)
    array[2:10, 2:8, :] = 40
    array[5, 5, :] = 1200
    for where, value in changes.items():
        array[{"padding": (slice(0, 2), slice(None), slice(None)), "metal": (6, 6, 3)}[where]] = value
    return array


def test_ct_intensities(tmp_path):
    good = _nifti(tmp_path / "ct.nii.gz", _ct_volume())
    assert check_volume(good, modality="CT") == []
    padded = _nifti(tmp_path / "padded.nii.gz", _ct_volume(padding=-3024))  # outside the field of view
    assert check_volume(padded, modality="CT") == []
    raw = _nifti(tmp_path / "raw.nii.gz", _ct_volume() + 1024)
    assert check_volume(raw) == []  # no modality: no intensity plausibility check
    [problem] = check_volume(raw, modality="CT")
    assert problem.startswith(f"{raw}: values span [24, 2224], none negative: stored pixel values without the DICOM")
    scaled = _nifti(tmp_path / "scaled.nii.gz", (_ct_volume().astype(np.float32) + 1000) / 2200)
    _raises_naming(check_volume(scaled, modality="CT"), scaled, "a normalised or windowed image?")
    mr = _nifti(tmp_path / "mr.nii.gz", np.abs(_ct_volume()) // 2)  # 20..600
    _raises_naming(check_volume(mr, modality="CT"), mr, "lowest value is 20: no air")
    assert check_volume(mr, modality="MR") == []
    hot = np.full(SHAPE, -1000, np.int16)
    hot[:, :, 2:] = 9000
    hot_path = _nifti(tmp_path / "hot.nii.gz", hot)
    _raises_naming(check_volume(hot_path, modality="CT"), hot_path, "expected Hounsfield units within about [-1100")


def test_blank_image_is_reported_only_with_a_modality(tmp_path):
    blank = _nifti(tmp_path / "blank.nii.gz", np.zeros(SHAPE, np.int16))
    assert check_volume(blank) == []
    for modality in ("CT", "MR"):
        assert check_volume(blank, modality=modality) == [
            f"{blank}: all voxels are 0: a blank image; expected an image with contrast"
        ]
    _, label = _pair(tmp_path, array=np.zeros(SHAPE, np.uint8))
    assert check_pair(_nifti(tmp_path / "ct.nii.gz", _ct_volume()), label, modality="CT") == []  # empty label: fine


# ---- datalists ------------------------------------------------------------------------------------------------
def _datalist(folder: Path, n: int = 3) -> dict:
    pairs = [_pair(folder, name=f"c{i}") for i in range(n)]
    rel = [{"image": i.name, "label": lab.name} for i, lab in pairs]
    return {"training": rel[: n - 2], "validation": [rel[n - 2]], "test": [rel[n - 1]]}


def _write(folder: Path, datalist: dict) -> Path:
    path = folder / "datalist.json"
    path.write_text(json.dumps(datalist))
    return path


def test_good_datalist_counts(tmp_path):
    path = _write(tmp_path, _datalist(tmp_path, 4))
    assert validate_datalist(path) == {"training": 2, "validation": 1, "test": 1}
    # the same, given as a dict with a base folder, or with paths relative to another base_dir
    assert validate_datalist(json.loads(path.read_text()), base_dir=tmp_path)["training"] == 2
    sub = tmp_path / "lists"
    sub.mkdir()
    assert validate_datalist(_write(sub, _datalist(tmp_path, 3)), base_dir=tmp_path)["test"] == 1


def test_test_section_without_labels_or_as_plain_paths(tmp_path):
    data = _datalist(tmp_path)
    data["test"] = [{"image": data["test"][0]["image"]}]
    assert validate_datalist(_write(tmp_path, data))["test"] == 1
    data["test"] = [data["test"][0]["image"]]  # MSD dataset.json style
    assert validate_datalist(_write(tmp_path, data))["test"] == 1


def test_datalist_missing_or_not_json(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(DataError, match="missing.json: datalist file not found"):
        validate_datalist(missing)
    broken = tmp_path / "broken.json"
    broken.write_text("{ not json")
    with pytest.raises(DataError, match="broken.json: datalist is not valid JSON"):
        validate_datalist(broken)


def test_datalist_duplicates_within_and_across_sections(tmp_path):
    data = _datalist(tmp_path, 4)
    data["training"].append(dict(data["training"][0]))
    data["test"].append(dict(data["validation"][0]))
    with pytest.raises(DataError) as info:
        validate_datalist(_write(tmp_path, data))
    message = str(info.value)
    assert message.count("listed more than once") >= 2
    assert str(tmp_path / "c0_img.nii.gz") in message and str(tmp_path / "c2_img.nii.gz") in message


def test_datalist_missing_label_and_section(tmp_path):
    data = _datalist(tmp_path)
    del data["training"][0]["label"]
    del data["validation"]
    path = _write(tmp_path, data)
    with pytest.raises(DataError) as info:
        validate_datalist(path)
    message = str(info.value)
    assert f"{path}: training[0] (c0_img.nii.gz) has no 'label'" in message
    assert f"{path}: section 'validation' is missing" in message
    assert validate_datalist(path, keys=("training",), label_required=False) == {"training": 1}


def test_datalist_collects_every_file_problem(tmp_path):
    data = _datalist(tmp_path, 4)
    (tmp_path / "c0_img.nii.gz").unlink()
    (tmp_path / "c1_lab.nii.gz").write_bytes(b"")
    array = np.zeros(SHAPE, np.float32)
    array[0, 0, 0] = np.nan
    _nifti(tmp_path / "c3_img.nii.gz", array)
    with pytest.raises(DataError) as info:
        validate_datalist(_write(tmp_path, data))
    problems = info.value.problems
    assert len(problems) == 3
    assert any(p.startswith(str(tmp_path / "c0_img.nii.gz")) and "not found" in p for p in problems)
    assert any(p.startswith(str(tmp_path / "c1_lab.nii.gz")) and "empty" in p for p in problems)
    assert any(p.startswith(str(tmp_path / "c3_img.nii.gz")) and "NaN" in p for p in problems)
    assert all(line.strip() for line in str(info.value).splitlines())


def test_cli(tmp_path, capsys):
    path = _write(tmp_path, _datalist(tmp_path))
    assert main([str(path), str(tmp_path / "c0_img.nii.gz")]) == 0
    assert "training=1" in capsys.readouterr().out
    assert main([str(tmp_path / "nope.nii.gz")]) == 1
    assert "nope.nii.gz: file not found" in capsys.readouterr().out


def test_datalist_label_values_and_modality(tmp_path):
    data = _datalist(tmp_path, 3)
    lab = np.zeros(SHAPE, np.uint8)
    lab[2, 2, 2] = 5
    _nifti(tmp_path / "c1_lab.nii.gz", lab)
    _nifti(tmp_path / "c2_img.nii.gz", np.zeros(SHAPE, np.int16))
    path = _write(tmp_path, data)
    assert validate_datalist(path)["training"] == 1
    with pytest.raises(DataError) as info:
        validate_datalist(path, label_values=[0, 1, 2], modality="CT")
    assert info.value.problems == [
        f"{tmp_path / 'c1_lab.nii.gz'}: label has value(s) [5] outside the classes' values [0, 1, 2] "
        "(values found: [0, 5])",
        f"{tmp_path / 'c2_img.nii.gz'}: all voxels are 0: a blank image; expected an image with contrast",
    ]


def test_cli_label_values_and_modality(tmp_path, capsys):
    lab = np.zeros(SHAPE, np.uint8)
    lab[2, 2, 2] = 3
    image, label = _pair(tmp_path, array=lab)
    path = _write(tmp_path, {"training": [{"image": image.name, "label": label.name}]})
    assert main([str(path), "--keys", "training", "--label-values", "0", "1", "2"]) == 1
    assert "outside the classes' values [0, 1, 2]" in capsys.readouterr().out
    raw = _nifti(tmp_path / "raw.nii.gz", np.full(SHAPE, 3000, np.int16))
    assert main([str(raw), "--modality", "CT"]) == 1
    assert f"{raw}: all voxels are 3000" in capsys.readouterr().out


def test_count_channels_reads_headers(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.int16), AFFINE), tmp_path / "ct.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3, 4), np.float32), AFFINE), tmp_path / "mr.nii.gz")
    sitk.WriteImage(sitk.Image([4, 4, 3], sitk.sitkVectorFloat32, 3), str(tmp_path / "rgb.nrrd"))
    (tmp_path / "broken.nrrd").write_text("not an image")
    assert [count_channels(tmp_path / f) for f in ("ct.nii.gz", "mr.nii.gz", "rgb.nrrd")] == [1, 4, 3]
    with pytest.raises(ValueError, match="cannot read the image header"):
        count_channels(tmp_path / "broken.nrrd")
