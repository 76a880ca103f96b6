"""Every stage runs from one file, by the paths the README and the model cards name, and each fact has one source.

The users' own commands are ``python -m monai.bundle run --config_file bundles/<bundle>/<stage>.yaml`` (and the
zoo's ``configs/<stage>.yaml``); those files are composed by :mod:`pipelines.cli.compose_configs` from layers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from monai.bundle import ConfigParser, ConfigWorkflow

from pipelines.cli import compose_configs
from pipelines.cli.stage_checks import command_line_overrides, under_bundle_run
from pipelines.workflows import REPO_ROOT, STAGE_TYPES, WORKFLOWS

# (workflow, stage) for every stage file, the chest X-ray ones included
STAGE_FILES = [(wf.name, stage) for wf in WORKFLOWS.values() for stage in wf.composed_stages]


def _literal_paths(workflow, stage: str) -> list[str]:
    name = f"{stage}{workflow.config_suffix}.yaml"
    bundle = f"bundles/{workflow.bundle or workflow.name}"
    return [f"{bundle}/{name}", f"{bundle}/configs/{name}"]


def test_the_written_stage_files_links_and_metadata_are_up_to_date():
    assert compose_configs.check() == []


@pytest.mark.parametrize("name,stage", STAGE_FILES)
def test_a_stage_file_is_its_layers_merged_as_monai_bundle_merges_a_list(name, stage):
    workflow = WORKFLOWS[name]
    composed = ConfigParser.load_config_files(workflow.config_files(stage)[0])
    layered = ConfigParser.load_config_files([str(p) for p in workflow.config_sources(stage)])
    assert composed == layered


@pytest.mark.parametrize("name,stage", STAGE_FILES)
def test_every_literal_path_initialises_alone_and_in_the_list_form(name, stage, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # the paths are the README's, from the repo root
    workflow = WORKFLOWS[name]
    common = f"bundles/{workflow.bundle or workflow.name}/configs/common{workflow.config_suffix}.yaml"
    for config_file in [*_literal_paths(workflow, stage), [common, _literal_paths(workflow, stage)[1]]]:
        flow = ConfigWorkflow(
            config_file=config_file,
            logging_file=False,
            workflow_type=STAGE_TYPES.get(stage, "train"),
            output_dir=str(tmp_path),
        )
        flow.parser.parse()
        assert flow.parser.get_parsed_content("workflow_name") == name
        assert flow.parser.get_parsed_content("bundle_root") == str(workflow.bundle_dir)
        assert "initialize" in flow.parser and "run" in flow.parser
        # the metadata beside the file is found, as ConfigWorkflow looks for it
        assert flow.parser["_meta_"]["version"]
        network = "classifier_network" if "classifier" in stage and workflow.family == "3d" else "network_def"
        assert flow.parser.get_parsed_content(network, instantiate=True) is not None


@pytest.mark.parametrize("name", [n for n, wf in WORKFLOWS.items() if wf.family == "3d"])
def test_a_scan_shorter_than_the_window_is_padded_with_its_own_edge_slices(name):
    """A 30-slice CT is shorter than the liver window: padded with zeros (the HU window's floor), the liver model
    labelled the spleen and back muscles as liver (docs/real_scans.md). Each window must see only the scan's own
    values: a uniform volume gives every voxel the same window mean."""
    import torch

    parser = ConfigParser()
    parser.read_config(WORKFLOWS[name].config_files("inference"))
    parser["sw_precision"] = "fp32"
    inferer = parser.get_parsed_content("inferer", instantiate=True)
    roi = parser.get_parsed_content("roi_size")
    short = [max(1, r // 2) for r in roi]
    volume = torch.full((1, 1, *short), 0.7)

    def window_mean(windows: torch.Tensor) -> torch.Tensor:
        return windows.mean(dim=(2, 3, 4), keepdim=True).expand_as(windows).clone()

    out = inferer(volume, window_mean)
    assert out.shape[-3:] == volume.shape[-3:]
    assert torch.allclose(out, torch.full_like(out, 0.7), atol=1e-5)


@pytest.mark.parametrize("name", [n for n, wf in WORKFLOWS.items() if wf.family == "3d"])
def test_metadata_states_the_configs_classes_channels_patch_and_spacing(name):
    workflow = WORKFLOWS[name]
    metadata = json.loads((workflow.bundle_dir / "configs" / "metadata.json").read_text())
    parser = ConfigParser()
    parser.read_config(workflow.config_files("inference"))
    classes = parser.get_parsed_content("class_names")
    pred = metadata["network_data_format"]["outputs"]["pred"]
    assert list(pred["channel_def"].values()) == list(classes)
    assert pred["spatial_shape"] == list(parser.get_parsed_content("roi_size"))
    image = metadata["network_data_format"]["inputs"]["image"]
    assert image["num_channels"] == parser.get_parsed_content("in_channels")
    spacing = "x".join(f"{float(s):g}" for s in parser.get_parsed_content("pixdim"))
    assert f"resampled to {spacing} mm" in metadata["image_classes"]


def test_a_changed_source_makes_the_check_fail_and_write_mends_it(tmp_path, monkeypatch):
    workflow = WORKFLOWS["liver"]
    stage_file = Path(workflow.config_files("evaluate")[0])
    original = stage_file.read_text()
    try:
        stage_file.write_text(original.replace("eval_section: test", "eval_section: validation"))
        assert any("bundles/liver/configs/evaluate.yaml is out of date" in p for p in compose_configs.check([workflow]))
        assert stage_file in compose_configs.write([workflow])
        assert compose_configs.check([workflow]) == []
    finally:
        stage_file.write_text(original)


def test_command_line_overrides_are_read_as_fire_reads_them():
    argv = [
        "/x/monai/bundle/__main__.py",
        "run",
        "--config_file",
        "['a.yaml','b.yaml']",
        "--max_epochs",
        "2",
        "--roi_size=[64,64,32]",
        "--tracking",
        "mlflow",
    ]
    assert under_bundle_run(argv)
    assert command_line_overrides(argv) == (["a.yaml", "b.yaml"], {"max_epochs": 2, "roi_size": [64, 64, 32]})
    assert not under_bundle_run(["radcascade", "run"])


def _bundle_run(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", *args],
        cwd=cwd,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=300,
        env={**__import__("os").environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )


def test_bad_command_lines_get_one_line_each_not_a_traceback(tmp_path):
    """An unknown override, a bundle without weights and a missing input, each named, in a real process."""
    typo = _bundle_run("--config_file", "bundles/liver/train.yaml", "--max_epoch", "1", "--output_dir", str(tmp_path))
    assert typo.returncode != 0
    assert "max_epoch=1: bundles/liver/train.yaml defines no id 'max_epoch'; did you mean max_epochs?" in typo.stderr
    assert "Traceback" not in typo.stderr

    missing = tmp_path / "no_scan.nii.gz"
    run = _bundle_run(
        "--config_file",
        "bundles/lung/inference.yaml",
        "--input_path",
        str(missing),
        "--ckpt_dir",
        str(tmp_path / "empty_models"),
        "--output_dir",
        str(tmp_path),
    )
    assert run.returncode != 0
    assert "Traceback" not in run.stderr
    assert f"{tmp_path}/empty_models/model.pt: no trained weights (ckpt_path)" in run.stderr
    assert "python -m monai.bundle run --config_file bundles/lung/train.yaml" in run.stderr
    assert f"{missing}: no such file or folder" in run.stderr


@pytest.mark.parametrize("name", [n for n, wf in WORKFLOWS.items() if wf.family == "3d"])
def test_resampling_to_pixdim_never_copies_a_large_volume_to_float(name):
    """MONAI's Spacingd converts the whole input to its computation dtype before sampling: a float64 copy of a
    512x512x600 CT is 1.2 GiB, a float32 one 0.59 GiB beside the int16 volume, the largest allocation of the
    inference stage (docs/performance.md). The bundles' SlabSpacingd samples a large volume slab by slab from its
    own dtype; here the test volume counts as large (``slab_above`` 0)."""
    import torch
    from monai.data import MetaTensor
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    from transforms import SlabSpacingd

    parser = ConfigParser()
    parser.read_config(WORKFLOWS[name].config_files("inference"))
    spacing = [t for t in parser.get_parsed_content("preprocessing_transforms") if isinstance(t, SlabSpacingd)]
    assert len(spacing) == 1
    spacing[0].spacing_transform.sp_resample.slab_above = 0
    volume = MetaTensor(torch.zeros(1, 64, 64, 40, dtype=torch.int16), affine=torch.diag(torch.tensor([0.8] * 3 + [1])))
    copies = []

    class RecordFloatCopies(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() >= volume.numel():
                    copies.append(f"{func} {t.dtype}")
            return out

    with RecordFloatCopies():
        out = spacing[0]({"image": volume})
    assert out["image"].shape[1:] != volume.shape[1:]  # it did resample
    assert not copies, f"{name}: the resampling made float copies of the whole volume ({copies})"
