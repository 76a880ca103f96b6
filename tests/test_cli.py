import subprocess
import sys

import pytest

from pipelines.cli import main, parse_overrides
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
