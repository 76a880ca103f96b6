"""Tests of the MSD task folder -> MONAI datalist builder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from monai.data import load_decathlon_datalist

from data_manifests.msd import build_msd_datalist, split_counts
from pipelines.phantoms.liver_ct import write_liver_phantom_task
from pipelines.validation.errors import DataError

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY = (48, 48, 16)
SECTIONS = ("training", "validation", "test")


@pytest.fixture
def task(tmp_path) -> Path:
    """A 6-case MSD-layout phantom task (Task03_Liver style) in a fresh folder."""
    return write_liver_phantom_task(tmp_path / "Task03_Liver", num_cases=6, seed=1, shape=TINY)


def _images(datalist: dict, section: str) -> list[str]:
    return [Path(item["image"]).name for item in datalist[section]]


def test_split_sizes_and_fields(task):
    datalist = build_msd_datalist(task, val_fraction=0.2, test_fraction=0.1, seed=0)
    assert [len(datalist[k]) for k in SECTIONS] == [4, 1, 1]
    assert {"name", "description", "seed", "source"} <= set(datalist)
    assert datalist["seed"] == 0 and datalist["labels"]["1"] == "liver"
    for section in SECTIONS:  # test entries keep their labels; paths are absolute without an output file
        for item in datalist[section]:
            assert os.path.isabs(item["image"]) and os.path.isfile(item["image"])
            assert Path(item["label"]).name == Path(item["image"]).name and os.path.isfile(item["label"])


def test_no_case_in_two_splits_and_all_cases_used(task):
    datalist = build_msd_datalist(task, val_fraction=0.34, test_fraction=0.17, seed=3, validate=False)
    names = [n for k in SECTIONS for n in _images(datalist, k)]
    assert sorted(names) == sorted(f"liver_{i}.nii.gz" for i in range(6))
    assert [len(datalist[k]) for k in SECTIONS] == [3, 2, 1]


def test_seeded_determinism(task):
    a = build_msd_datalist(task, seed=4, validate=False)
    b = build_msd_datalist(task, seed=4, validate=False)
    assert a == b
    splits = {tuple(_images(build_msd_datalist(task, seed=s, validate=False), "validation")) for s in range(8)}
    assert len(splits) > 1  # the seed changes the split


def test_split_counts_rules():
    assert split_counts(3, 0.2, 0.1) == (1, 1, 1)  # each non-zero split gets a case
    assert split_counts(10, 0.2, 0.1) == (7, 2, 1)
    assert split_counts(5, 0.0, 0.0) == (5, 0, 0)
    assert split_counts(2, 0.5, 0.0) == (1, 1, 0)
    with pytest.raises(ValueError, match="need at least 3"):
        split_counts(2, 0.2, 0.1)
    with pytest.raises(ValueError, match="< 1"):
        split_counts(10, 0.6, 0.5)


def test_too_few_cases_is_a_clear_error(tmp_path):
    small = write_liver_phantom_task(tmp_path / "Task", num_cases=2, seed=0, shape=(24, 24, 8))
    with pytest.raises(DataError, match=r"dataset\.json: 2 case\(s\) cannot be split"):
        build_msd_datalist(small, validate=False)


def test_relative_paths_resolve_with_monai(task, tmp_path):
    out = tmp_path / "manifests" / "liver.json"
    written = build_msd_datalist(task, output_path=out, seed=0)
    on_disk = json.loads(out.read_text())
    assert on_disk == written
    for section in SECTIONS:
        for item in on_disk[section]:
            assert not os.path.isabs(item["image"]) and item["image"].startswith("../Task03_Liver/imagesTr/")
        loaded = load_decathlon_datalist(out, is_segmentation=True, data_list_key=section)
        assert len(loaded) == len(on_disk[section])
        for item in loaded:
            assert os.path.isfile(item["image"]) and os.path.isfile(item["label"])
    assert not [p for p in out.parent.iterdir() if p.name != "liver.json"]  # no temporary file left

    # paths relative to the task folder, for configs that pass base_dir=<task folder>
    out2 = tmp_path / "elsewhere" / "liver.json"
    build_msd_datalist(task, output_path=out2, relative_to=task, validate=False)
    loaded = load_decathlon_datalist(out2, data_list_key="training", base_dir=task)
    assert json.loads(out2.read_text())["training"][0]["image"].startswith("imagesTr/")
    assert all(os.path.isfile(item["image"]) for item in loaded)


def test_msd_dot_paths_and_macos_files_are_tolerated(task):
    dataset = json.loads((task / "dataset.json").read_text())
    (task / "imagesTr" / "._liver_0.nii.gz").write_bytes(b"\x00\x05\x16\x07")
    (task / "labelsTr" / "._liver_0.nii.gz").write_bytes(b"\x00\x05\x16\x07")
    dataset["training"].append({"image": "./imagesTr/._liver_0.nii.gz", "label": "./labelsTr/._liver_0.nii.gz"})
    (task / "dataset.json").write_text(json.dumps(dataset))
    datalist = build_msd_datalist(task, seed=0)
    assert sum(len(datalist[k]) for k in SECTIONS) == 6


def test_missing_listed_file_and_dataset_json_are_named(task, tmp_path):
    (task / "labelsTr" / "liver_3.nii.gz").unlink()
    with pytest.raises(DataError) as info:
        build_msd_datalist(task, validate=False)
    assert str(task / "labelsTr" / "liver_3.nii.gz") in str(info.value)
    with pytest.raises(DataError, match="dataset.json not found"):
        build_msd_datalist(tmp_path)


def test_validation_names_the_bad_file(task):
    (task / "imagesTr" / "liver_2.nii.gz").write_bytes(b"garbage, not gzip")
    with pytest.raises(DataError) as info:
        build_msd_datalist(task)
    assert f"{task / 'imagesTr' / 'liver_2.nii.gz'}: cannot be read" in str(info.value)
    assert build_msd_datalist(task, validate=False)  # without validation only existence is checked


def test_cli(task, tmp_path):
    out = tmp_path / "lists" / "task.json"
    cmd = [sys.executable, "-m", "data_manifests.msd", "--task-dir", str(task), "--output", str(out)]
    args = [*cmd, "--seed", "2", "--val-fraction", "0.3", "--test-fraction", "0.2"]
    done = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, encoding="utf-8", errors="replace", timeout=120)
    assert done.returncode == 0, done.stderr
    datalist = json.loads(out.read_text())
    assert [len(datalist[k]) for k in SECTIONS] == [3, 2, 1] and datalist["seed"] == 2
    assert "training 3" in done.stderr
    bad = subprocess.run([*cmd[:4], str(tmp_path / "nowhere"), *cmd[5:]], cwd=REPO_ROOT,
                         capture_output=True, encoding="utf-8", errors="replace", timeout=120)  # fmt: skip
    assert bad.returncode == 1 and "nowhere" in bad.stderr
