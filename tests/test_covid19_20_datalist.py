"""Tests of the COVID-19-20 challenge folder -> MONAI datalist builder."""

import json
import logging
from pathlib import Path

import pytest

from data_manifests.covid19_20 import build_covid19_20_datalist, main, patient_of_case
from pipelines.validation.errors import DataError
from tests.datalist_fixtures import (
    SECTIONS,
    assert_patient_level,
    assert_written_and_resolvable,
    write_image,
    write_label,
)

# case -> positive slices; A-0003 has a follow-up scan, A-0011 two
CASES = {
    "volume-covid19-A-0003": [2, 3],
    "volume-covid19-A-0003_day004": [3],
    "volume-covid19-A-0011": [1],
    "volume-covid19-A-0011_day001": [],
    "volume-covid19-A-0011_day009": [4, 5, 6],
    "volume-covid19-A-0014": [0],
    "volume-covid19-A-0025": [1, 2],
    "volume-covid19-A-0031": [7],
    "volume-covid19-A-0047": [],
}


@pytest.fixture
def challenge(tmp_path) -> Path:
    """The challenge folder: ``Train/`` with the labelled cases, ``Validation/`` with CTs only."""
    root = tmp_path / "COVID-19-20_v2"
    for i, (case, positive) in enumerate(CASES.items()):
        write_image(root / "Train" / f"{case}_ct.nii.gz", seed=i)
        write_label(root / "Train" / f"{case}_seg.nii.gz", positive)
    write_image(root / "Validation" / "volume-covid19-A-0050_ct.nii.gz")  # unlabelled: outside Train/, ignored
    return root


def test_patient_of_case():
    assert patient_of_case("volume-covid19-A-0003") == "volume-covid19-A-0003"
    assert patient_of_case("volume-covid19-A-0003_day004") == "volume-covid19-A-0003"


def test_sections_counts_and_patient_level(challenge):
    for seed in range(4):  # follow-up scans always share their patient's section
        datalist = build_covid19_20_datalist(challenge, seed=seed, validate=seed == 0)
        assert_patient_level(datalist)
        assert [datalist["counts"][k]["patients"] for k in SECTIONS] == [4, 1, 1]
        assert sum(len(datalist[k]) for k in SECTIONS) == len(CASES)
    assert datalist["labels"] == {"0": "background", "1": "lesion"}
    for k in SECTIONS:
        cases = [Path(e["image"]).name[: -len("_ct.nii.gz")] for e in datalist[k]]
        assert [Path(e["label"]).name for e in datalist[k]] == [f"{c}_seg.nii.gz" for c in cases]
        assert datalist["counts"][k]["cases"] == len(cases)
        assert datalist["counts"][k]["positive_slices"] == sum(len(CASES[c]) for c in cases)
        assert datalist["counts"][k]["negative_slices"] == sum(8 - len(CASES[c]) for c in cases)


def test_seeded_determinism(challenge):
    a = build_covid19_20_datalist(challenge, seed=7, validate=False, slice_counts=False)
    assert a == build_covid19_20_datalist(challenge / "Train", seed=7, validate=False, slice_counts=False) | {
        "source": a["source"],
        "description": a["description"],
    }


def test_written_paths_resolve_with_monai(challenge, tmp_path):
    out = tmp_path / "lists" / "covid.json"
    written = build_covid19_20_datalist(challenge, output_path=out, seed=0)
    assert written["test"][0]["image"].startswith("../COVID-19-20_v2/Train/volume-covid19-A-")
    assert_written_and_resolvable(out, written)


def test_main(challenge, tmp_path, caplog):
    out = tmp_path / "covid.json"
    with caplog.at_level(logging.INFO):
        assert main(["--root", str(challenge), "--output", str(out), "--no-validate", "--seed", "3"]) == 0
    assert json.loads(out.read_text())["seed"] == 3 and "positive slices" in caplog.text
    assert main(["--root", str(tmp_path / "nowhere"), "--output", str(out)]) == 1
    assert f"{tmp_path / 'nowhere'}: COVID-19-20 folder not found" in caplog.text


def test_errors_name_the_file(challenge, tmp_path):
    train = challenge / "Train"
    with pytest.raises(DataError, match="COVID-19-20 folder not found"):
        build_covid19_20_datalist(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=f"{tmp_path / 'empty'}: no <case>_ct.nii.gz"):
        build_covid19_20_datalist(tmp_path / "empty")
    (train / "volume-covid19-A-0014_seg.nii.gz").unlink()
    (train / "volume-covid19-A-0025_ct.nii.gz").unlink()
    with pytest.raises(DataError) as info:
        build_covid19_20_datalist(challenge, validate=False)
    assert f"{train / 'volume-covid19-A-0014_ct.nii.gz'}: has no label volume-covid19-A-0014_seg" in str(info.value)
    assert f"{train / 'volume-covid19-A-0025_seg.nii.gz'}: has no image volume-covid19-A-0025_ct" in str(info.value)


def test_unreadable_and_mismatched_files_are_named(challenge):
    train = challenge / "Train"
    (train / "volume-covid19-A-0031_ct.nii.gz").write_bytes(b"\x1f\x8b truncated")
    write_label(train / "volume-covid19-A-0047_seg.nii.gz", [1], shape=(16, 16, 9))
    with pytest.raises(DataError) as info:
        build_covid19_20_datalist(challenge)
    assert f"{train / 'volume-covid19-A-0031_ct.nii.gz'}: cannot be read" in str(info.value)
    assert f"{train / 'volume-covid19-A-0047_seg.nii.gz'}: shape" in str(info.value)
