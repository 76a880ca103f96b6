"""Tests of the BraTS folder -> MONAI datalist builder (multi-channel entries)."""

import json
import logging
from pathlib import Path

import pytest

from data_manifests.brats import build_brats_datalist, main
from pipelines.validation.errors import DataError
from tests.datalist_fixtures import (
    SECTIONS,
    assert_patient_level,
    assert_written_and_resolvable,
    write_image,
    write_label,
)

OLD = ("flair", "t1", "t1ce", "t2")
NEW = ("t2f", "t1n", "t1c", "t2w")


def write_patient(root: Path, name: str, positive, naming: str = "2020", ext: str = ".nii.gz") -> Path:
    """One patient folder with four images and a segmentation."""
    folder = root / name
    sep, suffixes = ("_", OLD) if naming == "2020" else ("-", NEW)
    for i, suffix in enumerate(suffixes):
        write_image(folder / f"{name}{sep}{suffix}{ext}", seed=i)
    write_label(folder / f"{name}{sep}seg{ext}", positive, value=4 if naming == "2020" else 3)
    return folder


@pytest.fixture
def brats(tmp_path) -> Path:
    """Six BraTS 2020 patients one level below the root, one in ``.nii``; a CSV and a non-patient folder."""
    root = tmp_path / "BraTS2020_TrainingData"
    data = root / "MICCAI_BraTS2020_TrainingData"
    for i in range(1, 7):
        write_patient(data, f"BraTS20_Training_{i:03d}", positive=range(i), ext=".nii" if i == 2 else ".nii.gz")
    (data / "name_mapping.csv").write_text("BraTS_2020_subject_ID\n")
    (root / "docs").mkdir()
    return root


def test_entries_channels_and_counts(brats):
    datalist = build_brats_datalist(brats, seed=0)
    assert [len(datalist[k]) for k in SECTIONS] == [4, 1, 1]
    assert datalist["channels"] == ["FLAIR", "T1", "T1ce", "T2"]
    assert datalist["labels"]["4"] == "GD-enhancing tumour" and "3" not in datalist["labels"]
    for k in SECTIONS:
        for e in datalist[k]:
            name = e["patient"]
            assert [Path(p).name.split(".")[0] for p in e["image"]] == [f"{name}_{s}" for s in OLD]
            assert Path(e["label"]).name.split(".")[0] == f"{name}_seg" and Path(e["label"]).parent.name == name
        n_positive = sum(int(e["patient"][-3:]) for e in datalist[k])  # patient i has i positive slices
        assert datalist["counts"][k]["positive_slices"] == n_positive
        assert datalist["counts"][k]["negative_slices"] == 8 * len(datalist[k]) - n_positive
    assert_patient_level(datalist)


def test_brats_2021_and_2023_names(tmp_path):
    for i in range(3):
        write_patient(tmp_path / "2021", f"BraTS2021_{i:05d}", positive=[1])
        write_patient(tmp_path / "2023", f"BraTS-GLI-{i:05d}-000", positive=[1], naming="2023")
    old = build_brats_datalist(tmp_path / "2021", validate=False)
    assert old["training"][0]["image"][0].endswith("_flair.nii.gz")
    new = build_brats_datalist(tmp_path / "2023", seed=1)
    assert new["labels"]["3"] == "enhancing tumour" and "4" not in new["labels"]
    entry = new["training"][0]
    assert [Path(p).name.split(".")[0].rsplit("-", 1)[1] for p in entry["image"]] == list(NEW)
    assert entry["label"].endswith("-seg.nii.gz")


def test_seeded_determinism_and_monai_paths(brats, tmp_path):
    out = tmp_path / "lists" / "brats.json"
    written = build_brats_datalist(brats, output_path=out, seed=5)
    assert written == build_brats_datalist(brats, output_path=out, seed=5, validate=False)
    vals = {build_brats_datalist(brats, seed=s, validate=False)["validation"][0]["patient"] for s in range(6)}
    assert len(vals) > 1
    assert written["training"][0]["image"][0].startswith("../BraTS2020_TrainingData/MICCAI_BraTS2020_TrainingData/")
    assert_written_and_resolvable(out, written)


def test_main(brats, tmp_path, caplog):
    out = tmp_path / "brats.json"
    assert main(["--root", str(brats), "--output", str(out), "--relative-to", str(brats), "--no-validate"]) == 0
    assert json.loads(out.read_text())["training"][0]["label"].startswith("MICCAI_BraTS2020_TrainingData/")
    with caplog.at_level(logging.ERROR):
        assert main(["--root", str(tmp_path / "nowhere"), "--output", str(out)]) == 1
    assert f"{tmp_path / 'nowhere'}: BraTS folder not found" in caplog.text


def test_missing_files_are_named(brats, tmp_path):
    data = brats / "MICCAI_BraTS2020_TrainingData"
    seg = data / "BraTS20_Training_003" / "BraTS20_Training_003_seg.nii.gz"
    seg.rename(seg.with_name("W39_1998.09.19_Segm.nii.gz"))  # the misnamed BraTS 2020 label
    (data / "BraTS20_Training_005" / "BraTS20_Training_005_t1ce.nii.gz").unlink()
    with pytest.raises(DataError) as info:
        build_brats_datalist(brats, validate=False)
    text = str(info.value)
    assert f"{seg}: segmentation (label) missing for patient BraTS20_Training_003" in text
    assert "W39_1998.09.19_Segm.nii.gz" in text  # the files that are there are listed
    assert f"{data / 'BraTS20_Training_005' / 'BraTS20_Training_005_t1ce.nii.gz'}: T1ce image missing" in text
    with pytest.raises(DataError, match="BraTS folder not found"):
        build_brats_datalist(tmp_path / "nowhere")
    with pytest.raises(DataError, match=f"{brats / 'docs'}: no BraTS patient folders"):
        build_brats_datalist(brats / "docs")


def test_mixed_namings_and_unreadable_images_are_named(tmp_path):
    for i in range(3):
        write_patient(tmp_path / "mixed", f"BraTS20_Training_{i:03d}", positive=[1])
    write_patient(tmp_path / "mixed", "BraTS-GLI-00009-000", positive=[1], naming="2023")
    with pytest.raises(DataError, match="mixes BraTS 2023 file names"):
        build_brats_datalist(tmp_path / "mixed", validate=False)
    for i in range(3):
        write_patient(tmp_path / "bad", f"BraTS20_Training_{i:03d}", positive=[1])
    bad = tmp_path / "bad" / "BraTS20_Training_001" / "BraTS20_Training_001_t2.nii.gz"
    bad.write_bytes(b"not a nifti")
    with pytest.raises(DataError, match=f"{bad}: cannot be read"):
        build_brats_datalist(tmp_path / "bad")
