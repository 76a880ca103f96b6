import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from pipelines.cli.main import main, parse_overrides
from pipelines.workflows import REPO_ROOT, WORKFLOWS, get_workflow


def test_parse_overrides_keeps_types():
    assert parse_overrides(["max_epochs=3", "roi_size=[64,64,32]", "amp=false", "output_dir=runs/x"]) == {
        "max_epochs": 3,
        "roi_size": [64, 64, 32],
        "amp": False,
        "output_dir": "runs/x",
    }


def test_parse_overrides_rejects_items_without_equals():
    with pytest.raises(ValueError, match="not of the form id=value"):
        parse_overrides(["max_epochs"])


def test_list_prints_every_workflow(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in WORKFLOWS:
        assert name in out


def test_registry_points_at_existing_bundle_files():
    for workflow in WORKFLOWS.values():
        for stage in workflow.stages:
            for path in workflow.config_files(stage):
                assert (REPO_ROOT / path).is_file(), path
        assert (workflow.bundle_dir / "configs" / "metadata.json").is_file()
        assert (workflow.bundle_dir / "docs" / "README.md").is_file()
        assert (REPO_ROOT / workflow.default_datalist).is_file()


def test_unknown_workflow_and_stage():
    with pytest.raises(ValueError, match="unknown workflow 'spleen'"):
        get_workflow("spleen")
    with pytest.raises(ValueError, match="has no stage 'deploy'"):
        get_workflow("liver").config_files("deploy")


def test_run_with_bad_datalist_prints_a_clear_error(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines",
            "run",
            "liver",
            "train",
            "--set",
            f"data_list_file_path={tmp_path / 'nope.json'}",
            "--set",
            f"output_dir={tmp_path}",
        ],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        cwd=REPO_ROOT,
    )
    assert result.returncode == 2
    assert f"{tmp_path / 'nope.json'}" in result.stderr and "Traceback" not in result.stderr


def test_ensure_default_data_leaves_other_folders_alone(tmp_path, monkeypatch):
    from pipelines import workflows

    calls = []
    monkeypatch.setattr(workflows, "prepare_default_data", lambda name: calls.append(name))
    workflows.ensure_default_data("liver", tmp_path)
    assert calls == []
    workflows.ensure_default_data("liver", REPO_ROOT / get_workflow("liver").default_data)
    assert calls == ["liver"]


def test_parse_overrides_rejects_bad_yaml():
    with pytest.raises(ValueError, match=r"roi_size=\[64,64: the value is not valid YAML"):
        parse_overrides(["roi_size=[64,64"])


def test_run_with_unknown_or_mistyped_override_exits_2_before_any_work(capsys):
    args = ["run", "liver", "train", "--set", "max_epoch=5", "--set", "validate_data=maybe", "--set", "roi_size=[64,"]
    assert main(args) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert main(args[:-2]) == 2
    err = capsys.readouterr().err
    assert "radcascade: 2 bad overrides:" in err and "Traceback" not in err
    assert "max_epoch=5: the liver train config defines no id 'max_epoch'; did you mean max_epochs?" in err
    assert "validate_data='maybe': expected true or false (the default is True), got a string" in err


def test_demo_overrides_are_checked_against_every_stage(capsys):
    assert main(["demo", "liver", "--set", "max_epochs=2", "--set", "classifier_epochs=x"]) == 2
    assert "defines no id 'classifier_epochs'" in capsys.readouterr().err


def _tiny_liver_data(folder):
    """A datalist of three tiny CT cases; the validation label has a value the liver classes lack."""
    ct = np.full((8, 8, 4), -1000, np.int16)
    ct[2:6, 2:6] = 40
    entries = {}
    for i, section in enumerate(("training", "validation", "test")):
        label = np.zeros((8, 8, 4), np.uint8)
        label[3:5, 3:5, 1:3] = 7 if section == "validation" else 1
        nib.save(nib.Nifti1Image(ct, np.eye(4)), str(folder / f"ct{i}.nii.gz"))
        nib.save(nib.Nifti1Image(label, np.eye(4)), str(folder / f"seg{i}.nii.gz"))
        entries[section] = [{"image": f"ct{i}.nii.gz", "label": f"seg{i}.nii.gz"}]
    datalist = folder / "datalist.json"
    datalist.write_text(json.dumps(entries))
    return datalist


def test_validate_command(tmp_path, capsys):
    datalist = _tiny_liver_data(tmp_path)
    where = ["--set", f"data_list_file_path={datalist}", "--set", f"dataset_dir={tmp_path}"]
    assert main(["validate", "liver", *where]) == 2
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{tmp_path / 'seg1.nii.gz'}: label has value(s) [7] outside the classes' values")
    assert out[-1] == f"liver: 1 problem found in {datalist}"
    assert main(["validate", "liver", str(tmp_path / "ct0.nii.gz"), "--headers-only"]) == 0
    assert capsys.readouterr().out.strip() == f"liver: no problems found in {tmp_path / 'ct0.nii.gz'} (1 image)"
    assert main(["validate", "liver", "--set", "dataset_dri=x"]) == 2
    assert "did you mean dataset_dir or dataset?" in capsys.readouterr().err
