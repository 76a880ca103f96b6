"""data_manifests.native: a downloaded dataset folder's layout is recognised and its datalist written, for the GPU
training preset (bundles/<bundle>/train_gpu.yaml)."""

import json
from pathlib import Path

import pytest
import torch
from monai.data import load_decathlon_datalist

from data_manifests.native import NATIVE_LAYOUTS, detect_layout, write_native_datalist
from pipelines.cli.stage_checks import MissingGPUError, check_stage
from pipelines.validation.errors import DataError
from tests.datalist_fixtures import write_image, write_label


def _msd(root: Path, cases: int = 6) -> Path:
    training = []
    for n in range(cases):
        write_image(root / "imagesTr" / f"liver_{n}.nii.gz", seed=n)
        write_label(root / "labelsTr" / f"liver_{n}.nii.gz", [1, 2], value=1 + n % 2)
        training.append({"image": f"./imagesTr/liver_{n}.nii.gz", "label": f"./labelsTr/liver_{n}.nii.gz"})
    (root / "dataset.json").write_text(
        json.dumps({"name": "Liver", "labels": {"0": "background"}, "training": training})
    )
    return root


def _lits(root: Path, cases: int = 6) -> Path:
    for n in range(cases):
        write_image(root / "Training Batch 1" / f"volume-{n}.nii", seed=n)
        write_label(root / "Training Batch 1" / f"segmentation-{n}.nii", [1, 2])
    return root


def _covid(root: Path, cases: int = 6) -> Path:
    for n in range(cases):
        write_image(root / "Train" / f"volume-covid19-A-{n:04d}_ct.nii.gz", seed=n)
        write_label(root / "Train" / f"volume-covid19-A-{n:04d}_seg.nii.gz", [1])
    return root


def _brats(root: Path, cases: int = 6) -> Path:
    for n in range(cases):
        patient = f"BraTS20_Training_{n:03d}"
        for sequence in ("flair", "t1", "t1ce", "t2"):
            write_image(root / patient / f"{patient}_{sequence}.nii.gz", seed=n)
        write_label(root / patient / f"{patient}_seg.nii.gz", [1], value=2)
    return root


@pytest.mark.parametrize(
    "workflow, make, layout",
    [
        ("liver", _msd, "Medical Segmentation Decathlon"),
        ("liver", _lits, "LiTS"),
        ("lung", _covid, "COVID-19-20"),
        ("lung", _msd, "Medical Segmentation Decathlon"),
        ("brain", _brats, "BraTS"),
    ],
)
def test_each_layout_is_recognised_and_its_datalist_loads_from_the_dataset_folder(tmp_path, workflow, make, layout):
    root = make(tmp_path / "download")
    assert detect_layout(workflow, root).name == layout
    out = tmp_path / "run" / "datalist.json"
    messages = []
    assert write_native_datalist(workflow, root, out, seed=0, log=messages.append) == str(out)
    assert layout in messages[0] and str(root) in messages[0]
    sections = {k: load_decathlon_datalist(str(out), True, k, str(root)) for k in ("training", "validation", "test")}
    assert [len(sections[k]) for k in sections] == [4, 1, 1]
    for items in sections.values():
        for item in items:
            images = item["image"] if isinstance(item["image"], list) else [item["image"]]
            assert all(Path(p).is_file() and Path(p).is_relative_to(root) for p in [*images, item["label"]])
    # paths are written relative to the dataset folder, as the bundles load them (base_dir=@dataset_dir)
    written = json.loads(out.read_text())
    assert not Path(str(written["training"][0]["label"])).is_absolute()


def test_the_same_folder_and_seed_give_the_same_split_and_another_seed_another(tmp_path):
    root = _lits(tmp_path / "LiTS", cases=10)
    splits = []
    for seed in (0, 0, 1):
        out = tmp_path / f"datalist_{len(splits)}.json"
        write_native_datalist("liver", root, out, seed=seed)
        splits.append(json.loads(out.read_text())["validation"])
    assert splits[0] == splits[1]
    assert splits[0] != splits[2]


def test_a_folder_of_another_layout_is_refused_naming_the_layouts_the_bundle_reads(tmp_path):
    root = _brats(tmp_path / "BraTS")
    with pytest.raises(DataError) as caught:
        write_native_datalist("liver", root, tmp_path / "datalist.json")
    message = str(caught.value)
    assert str(root) in message and "Medical Segmentation Decathlon" in message and "LiTS" in message
    assert not (tmp_path / "datalist.json").exists()


def test_a_missing_folder_and_a_broken_dataset_are_named(tmp_path):
    with pytest.raises(DataError, match="dataset folder not found"):
        detect_layout("liver", tmp_path / "nowhere")
    root = _lits(tmp_path / "LiTS")
    (root / "Training Batch 1" / "segmentation-3.nii").unlink()
    with pytest.raises(DataError, match="volume-3"):
        write_native_datalist("liver", root, tmp_path / "datalist.json")


def test_every_3d_workflow_has_layouts_and_others_are_refused():
    assert set(NATIVE_LAYOUTS) == {"liver", "lung", "brain"}
    with pytest.raises(ValueError, match="chest_xray"):
        detect_layout("chest_xray", ".")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_the_gpu_preset_stops_at_once_without_a_gpu_unless_told_not_to():
    with pytest.raises(MissingGPUError, match="train_gpu.yaml trains on a CUDA GPU.*--require_gpu false"):
        check_stage("liver", "train_gpu", require_gpu=True)
    with pytest.raises(MissingGPUError):
        check_stage("liver", "train_gpu", require_gpu="true")
    check_stage("liver", "train_gpu", require_gpu=False)
    check_stage("liver", "train_gpu", require_gpu="false")
