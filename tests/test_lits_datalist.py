"""Tests of the LiTS folder -> MONAI datalist builder."""

import json
import logging
from pathlib import Path

import pytest

from data_manifests.lits import build_lits_datalist, main
from pipelines.validation.errors import DataError
from tests.datalist_fixtures import (
    SECTIONS,
    assert_patient_level,
    assert_written_and_resolvable,
    write_image,
    write_label,
)

POSITIVE = {0: [2, 3], 1: [3], 2: [1, 2, 3, 4], 3: [], 4: [5], 5: [0, 7], 10: [4]}


@pytest.fixture
def lits(tmp_path) -> Path:
    """Seven LiTS patients over two training batches, ``.nii`` and ``.nii.gz``, with liver (1) and tumour (2)."""
    root = tmp_path / "LiTS"
    for n, positive in POSITIVE.items():
        batch = root / ("Training Batch 1" if n < 3 else "Training Batch 2")
        ext = ".nii" if n % 2 else ".nii.gz"
        write_image(batch / f"volume-{n}{ext}", seed=n)
        write_label(batch / f"segmentation-{n}{ext}", positive, value=1 + n % 2)
    (root / "Training Batch 1" / "._volume-0.nii").write_bytes(b"\x00\x05\x16\x07")  # macOS metadata: skipped
    (root / "Test Data").mkdir()
    write_image(root / "Test Data" / "test-volume-0.nii")  # the unlabelled test set is not a training volume
    return root


def test_sections_counts_and_fields(lits):
    datalist = build_lits_datalist(lits, seed=0)
    assert [len(datalist[k]) for k in SECTIONS] == [5, 1, 1]
    assert datalist["labels"] == {"0": "background", "1": "liver", "2": "tumour"}
    assert {"name", "description", "seed", "source", "modality", "counts"} <= set(datalist)
    entries = [e for k in SECTIONS for e in datalist[k]]
    assert sorted(int(e["patient"]) for e in entries) == sorted(POSITIVE)
    for e in entries:
        assert Path(e["image"]).name.replace("volume", "segmentation") == Path(e["label"]).name
        assert Path(e["image"]).is_absolute()
    counts = datalist["counts"]
    for k in SECTIONS:
        expected_positive = sum(len(POSITIVE[int(e["patient"])]) for e in datalist[k])
        assert counts[k]["cases"] == counts[k]["patients"] == len(datalist[k])
        assert counts[k]["positive_slices"] == expected_positive
        assert counts[k]["negative_slices"] == 8 * len(datalist[k]) - expected_positive
    assert_patient_level(datalist)


def test_seeded_determinism(lits):
    a = build_lits_datalist(lits, seed=4, validate=False)
    assert a == build_lits_datalist(lits, seed=4, validate=False)
    vals = {build_lits_datalist(lits, seed=s, validate=False)["validation"][0]["patient"] for s in range(6)}
    assert len(vals) > 1


def test_written_paths_resolve_with_monai(lits, tmp_path):
    out = tmp_path / "lists" / "lits.json"
    written = build_lits_datalist(lits, output_path=out, seed=1)
    assert written["training"][0]["image"].startswith("../LiTS/Training Batch")
    assert_written_and_resolvable(out, written)
    based = build_lits_datalist(lits, output_path=tmp_path / "b.json", relative_to=lits, validate=False)
    assert based["training"][0]["image"].startswith("Training Batch")


def test_main(lits, tmp_path, caplog):
    out = tmp_path / "lits.json"
    args = ["--root", str(lits), "--output", str(out), "--seed", "2", "--val-fraction", "0.3", "--test-fraction", "0.2"]
    with caplog.at_level(logging.INFO):
        assert main(args) == 0
    datalist = json.loads(out.read_text())
    assert [len(datalist[k]) for k in SECTIONS] == [4, 2, 1] and datalist["seed"] == 2
    assert "training 4 cases, 4 patients" in caplog.text
    caplog.clear()
    assert main(["--root", str(tmp_path / "nowhere"), "--output", str(out)]) == 1
    assert f"{tmp_path / 'nowhere'}: LiTS folder not found" in caplog.text
    assert main([*args[:4], "--val-fraction", "1.5"]) == 1


def test_missing_folder_and_no_cases(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'nowhere'}: LiTS folder not found"):
        build_lits_datalist(tmp_path / "nowhere")
    (tmp_path / "empty" / "Training Batch 1").mkdir(parents=True)
    with pytest.raises(DataError, match=f"{tmp_path / 'empty'}: no volume-N.nii"):
        build_lits_datalist(tmp_path / "empty")


def test_unpaired_and_duplicate_files_are_named(lits):
    batch2 = lits / "Training Batch 2"
    (batch2 / "segmentation-4.nii.gz").unlink()
    (batch2 / "volume-5.nii").unlink()
    write_image(lits / "extra" / "volume-10.nii")  # a second volume-10 in another folder
    with pytest.raises(DataError) as info:
        build_lits_datalist(lits, validate=False)
    text = str(info.value)
    assert f"{batch2 / 'volume-4.nii.gz'}: has no segmentation-4.nii" in text
    assert f"{batch2 / 'segmentation-5.nii'}: has no volume-5.nii" in text
    assert f"{lits / 'extra' / 'volume-10.nii'}: volume-10 found twice" in text


def test_unreadable_file_is_named(lits):
    bad = lits / "Training Batch 1" / "segmentation-2.nii.gz"
    bad.write_bytes(b"garbage, not gzip")
    with pytest.raises(DataError, match=f"{bad}: cannot be read"):
        build_lits_datalist(lits)
    with pytest.raises(DataError, match=f"{bad}: cannot be read"):  # slice counting reads it too
        build_lits_datalist(lits, validate=False)
    assert "positive_slices" not in build_lits_datalist(lits, validate=False, slice_counts=False)["counts"]["test"]


def test_too_few_patients(tmp_path):
    write_image(tmp_path / "LiTS" / "volume-0.nii")
    write_label(tmp_path / "LiTS" / "segmentation-0.nii", [1])
    with pytest.raises(DataError, match=r"LiTS: 1 patient\(s\) cannot be split"):
        build_lits_datalist(tmp_path / "LiTS")
    assert len(build_lits_datalist(tmp_path / "LiTS", val_fraction=0, test_fraction=0)["training"]) == 1
