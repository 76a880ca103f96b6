"""Tests of the pieces the datalist builders share: split sizes, patient-level split, slice counts, paths."""

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

import data_manifests.msd
from data_manifests import splits
from data_manifests.splits import (
    absolute_paths,
    count_slices,
    finish_datalist,
    relative_paths,
    section_counts,
    split_by_patient,
    split_counts,
)
from pipelines.validation.errors import DataError
from tests.datalist_fixtures import SECTIONS, assert_patient_level, write_label, write_nifti, write_png

REPO_ROOT = Path(__file__).resolve().parent.parent


def _items(n_patients: int = 10) -> list[dict]:
    """Patients p00.. with 1 to 3 items each."""
    return [{"image": f"p{p:02d}_{k}", "patient": f"p{p:02d}"} for p in range(n_patients) for k in range(1 + p % 3)]


def test_split_counts_moved_and_reexported():
    assert data_manifests.msd.split_counts is split_counts
    assert split_counts(10, 0.2, 0.1) == (7, 2, 1)
    with pytest.raises(ValueError, match=r"2 patient\(s\) cannot be split"):
        split_counts(2, 0.2, 0.1, unit="patient")
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\)"):
        splits._check_fractions(float("nan"), 0.1)


def test_split_by_patient_keeps_patients_together():
    items = _items(10)
    result = split_by_patient(items, lambda e: e["patient"], 0.2, 0.1, seed=3)
    assert set(result) == set(SECTIONS)
    assert sorted(e["image"] for k in SECTIONS for e in result[k]) == sorted(e["image"] for e in items)
    assert_patient_level(result)
    assert [len({e["patient"] for e in result[k]}) for k in SECTIONS] == [7, 2, 1]  # split_counts over patients
    for k in SECTIONS:  # items keep their input order within a section
        assert result[k] == [e for e in items if e in result[k]]


def test_split_by_patient_is_seeded():
    items = _items(12)
    a = split_by_patient(items, lambda e: e["patient"], 0.25, 0.25, seed=5)
    assert a == split_by_patient(list(items), lambda e: e["patient"], 0.25, 0.25, seed=5)
    validations = {
        tuple(e["patient"] for e in split_by_patient(items, lambda e: e["patient"], 0.25, 0.25, seed=s)["validation"])
        for s in range(6)
    }
    assert len(validations) > 1


def test_split_by_patient_too_few_patients():
    items = [{"patient": "a"}, {"patient": "a"}, {"patient": "b"}]  # 3 items but only 2 patients
    with pytest.raises(ValueError, match=r"2 patient\(s\) cannot be split") as info:
        split_by_patient(items, lambda e: e["patient"], 0.2, 0.1, seed=0)
    assert not isinstance(info.value, DataError)
    with pytest.raises(DataError, match=r"/data/x: 2 patient\(s\)"):
        split_by_patient(items, lambda e: e["patient"], 0.2, 0.1, seed=0, source="/data/x")


def test_count_slices_nifti_sitk_and_2d(tmp_path):
    assert count_slices(write_label(tmp_path / "a.nii.gz", positive=[1, 3, 4])) == (3, 5)
    data = np.zeros((6, 5, 4, 1), dtype=np.uint8)  # trailing singleton axis
    data[2, 2, 0, 0] = 2
    assert count_slices(write_nifti(tmp_path / "b.nii", data)) == (1, 3)
    volume = np.zeros((4, 5, 6), dtype=np.uint8)  # SimpleITK arrays are (z, y, x): z is the last (x, y, z) axis
    volume[1, 2, 3] = volume[2, 0, 0] = 1
    sitk.WriteImage(sitk.GetImageFromArray(volume), str(tmp_path / "c.nrrd"))
    assert count_slices(tmp_path / "c.nrrd") == (2, 2)
    assert count_slices(write_png(tmp_path / "m.png", np.full((8, 8), 255, np.uint8))) == (1, 0)
    assert count_slices(write_png(tmp_path / "e.png", np.zeros((8, 8), np.uint8))) == (0, 1)
    rgb = np.zeros((8, 6, 3), np.uint8)
    assert count_slices(write_png(tmp_path / "rgb0.png", rgb)) == (0, 1)
    rgb[2, 3, 1] = 255
    assert count_slices(write_png(tmp_path / "rgb.png", rgb)) == (1, 0)
    scaled = nib.Nifti1Image(np.array([[[0, 2], [0, 0]]], dtype=np.int16), np.eye(4))
    scaled.header.set_slope_inter(0.5, 0)
    nib.save(scaled, str(tmp_path / "scaled.nii"))
    assert count_slices(tmp_path / "scaled.nii") == (1, 1)
    scaled.header.set_slope_inter(1.0, -2.0)  # zero is no longer zero: read scaled
    nib.save(scaled, str(tmp_path / "shifted.nii"))
    assert count_slices(tmp_path / "shifted.nii") == (2, 0)


def test_count_slices_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'nope.nii.gz'}: label file not found"):
        count_slices(tmp_path / "nope.nii.gz")
    (tmp_path / "bad.nii.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match=f"{tmp_path / 'bad.nii.gz'}: cannot be read"):
        count_slices(tmp_path / "bad.nii.gz")


def test_section_counts(tmp_path):
    a = write_label(tmp_path / "a.nii.gz", positive=[0])
    b = write_label(tmp_path / "b.nii.gz", positive=[0, 1])
    result = section_counts(
        {"training": [{"label": str(a), "p": 1}, {"label": str(b), "p": 1}], "validation": [], "test": []},
        lambda e: e["p"],
    )
    assert result["training"] == {"cases": 2, "patients": 1, "positive_slices": 3, "negative_slices": 13}
    assert result["test"] == {"cases": 0, "patients": 0, "positive_slices": 0, "negative_slices": 0}
    assert section_counts({"training": [{"label": "missing"}]}, lambda e: 0, slices=False) == {
        "training": {"cases": 1, "patients": 1}
    }


def test_relative_and_absolute_paths(tmp_path):
    entries = [{"image": [str(tmp_path / "d" / "a.nii"), str(tmp_path / "d" / "b.nii")], "label": "x.nii", "k": 1}]
    rel = relative_paths(entries, tmp_path)
    assert rel[0]["image"] == ["d/a.nii", "d/b.nii"] and rel[0]["k"] == 1
    assert rel[0]["label"] == Path(os.path.relpath(os.path.abspath("x.nii"), tmp_path)).as_posix()
    assert absolute_paths(rel)[0]["label"] == os.path.abspath(rel[0]["label"])
    assert entries[0]["image"][0].startswith(str(tmp_path))  # inputs are not modified


def test_finish_datalist_writes_atomically(tmp_path):
    sections = {"training": [{"image": str(tmp_path / "data" / "a.nii")}], "validation": [], "test": []}
    out = tmp_path / "lists" / "x.json"
    written = finish_datalist({"name": "x"}, sections, output_path=out)
    assert json.loads(out.read_text()) == written == {**{"name": "x"}, **{k: [] for k in SECTIONS},
                                                      "training": [{"image": "../data/a.nii"}]}  # fmt: skip
    assert os.listdir(out.parent) == ["x.json"]
    assert finish_datalist({}, sections)["training"][0]["image"] == str(tmp_path / "data" / "a.nii")
    based = finish_datalist({}, sections, output_path=out, relative_to=tmp_path / "data")
    assert based["training"][0]["image"] == "a.nii"


@pytest.mark.parametrize("module", ["msd", "lits", "covid19_20", "brats", "kaggle_3m", "chest_xray"])
def test_every_builder_has_a_command_line(module):
    done = subprocess.run([sys.executable, "-m", f"data_manifests.{module}", "--help"], cwd=REPO_ROOT,
                          capture_output=True, encoding="utf-8", errors="replace", timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    for option in ("--output", "--val-fraction", "--test-fraction", "--seed", "--no-validate", "--relative-to"):
        assert option in done.stdout
