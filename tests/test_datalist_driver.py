"""Tests of the driver the datalist builders share: options, the common build and the command line."""

import dataclasses
import json
import logging

import pytest

from data_manifests.driver import BuildOptions, Option, build_from_cases, run_command_line
from pipelines.validation.errors import DataError
from tests.datalist_fixtures import SECTIONS, assert_patient_level, write_label

LOGGER = logging.getLogger("tests.driver")


def test_build_options_defaults_and_checks():
    assert dataclasses.asdict(BuildOptions()) == {
        "output_path": None,
        "val_fraction": 0.2,
        "test_fraction": 0.1,
        "seed": 0,
        "validate": True,
        "relative_to": None,
        "slice_counts": True,
    }
    with pytest.raises(ValueError, match=r"val_fraction \+ test_fraction must be < 1"):
        BuildOptions(val_fraction=0.6, test_fraction=0.4)
    with pytest.raises(TypeError):
        BuildOptions(sed=1)


def test_build_from_cases(tmp_path):
    entries = [{"image": str(write_label(tmp_path / f"{i}.nii.gz", [i])), "patient": str(i // 2)} for i in range(8)]
    for e in entries:
        e["label"] = e["image"]
    calls = []

    def find(root):
        calls.append(root)
        return entries, {"name": "toy", "description": "Toy data;"}

    datalist = build_from_cases(tmp_path, find, seed=1, validate=False, output_path=tmp_path / "lists" / "toy.json")
    assert calls == [tmp_path]
    assert datalist["name"] == "toy" and datalist["seed"] == 1 and datalist["source"] == str(tmp_path)
    assert datalist["description"].startswith("Toy data; 4 patients split")
    assert [datalist["counts"][k]["patients"] for k in SECTIONS] == [2, 1, 1]
    assert json.loads((tmp_path / "lists" / "toy.json").read_text()) == datalist
    assert_patient_level(datalist)
    with pytest.raises(ValueError, match="test_fraction must be in"):
        build_from_cases(tmp_path, find, test_fraction=1.0)
    assert len(calls) == 1  # the options are checked before the cases are looked for


def test_run_command_line(tmp_path, caplog):
    seen = []

    def build(root, *, kind="a", **options):
        if root == "bad":
            raise DataError(f"{root}: not found")
        seen.append((root, kind, options))
        return {k: [] for k in SECTIONS}

    def run(argv, **kwargs):
        return run_command_line(
            argv, module="x.toy", doc="Toy builder.\n\nMore.", build=build, source=Option("--task-dir", help="folder"),
            options=[Option("--kind", default="a", help="kind")], logger=LOGGER, **kwargs,
        )  # fmt: skip

    out = str(tmp_path / "toy.json")
    assert run(["--task-dir", "d", "--kind", "b", "--output", out, "--seed", "3", "--no-validate"]) == 0
    assert seen == [("d", "b", {"output_path": out, "val_fraction": 0.2, "test_fraction": 0.1, "seed": 3,
                                "validate": False, "slice_counts": True, "relative_to": None})]  # fmt: skip
    with caplog.at_level(logging.ERROR):
        assert run(["--task-dir", "bad", "--output", out]) == 1
    assert "bad: not found" in caplog.text
    with pytest.raises(DataError):
        run(["--task-dir", "bad", "--output", out], errors=TypeError)
    reports = []
    assert run(["--task-dir", "d", "--output", out], on_success=lambda d, a: reports.append((d, a.output))) == 0
    assert reports == [({k: [] for k in SECTIONS}, out)]
    with pytest.raises(SystemExit) as info:
        run(["--output", out])  # --task-dir is required
    assert info.value.code == 2
