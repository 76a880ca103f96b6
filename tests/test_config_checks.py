"""Tests of the checks driven by a bundle config: ``--set`` overrides and ``validate_workflow``."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from pipelines.cli import config_checks
from pipelines.cli.config_checks import (
    ConfigOverrideError,
    check_overrides,
    data_settings,
    load_stage_config,
    validate_workflow,
)
from pipelines.workflows import WORKFLOWS

SHAPE = (12, 10, 6)


@pytest.fixture(scope="module")
def liver_train():
    return [load_stage_config("liver", "train")]


# ---- overrides --------------------------------------------------------------------------------------------------
def test_known_ids_pass_and_values_are_converted(liver_train):
    overrides = {
        "max_epochs": 3,
        "learning_rate": "1e-4",  # YAML 1.1 reads this as a string
        "output_dir": 2024,
        "roi_size": [64, 64, 16],
        "validate_data": False,
        "train#trainer#max_epochs": 2,  # nested id
        "amp": "$False",  # an expression is never type-checked
    }
    checked = check_overrides(liver_train, overrides, {"my_new_id": "x"})
    assert checked["learning_rate"] == pytest.approx(1e-4)
    assert checked["output_dir"] == "2024"
    assert checked["my_new_id"] == "x" and checked["train#trainer#max_epochs"] == 2


def test_auto_defaults_take_numbers_booleans_and_null_unchanged(liver_train):
    """``auto`` stands for a computed number or switch: ``--set sw_stitch_on_cpu_above=50000000`` must reach the
    inferer as the integer, not as the string '50000000'."""
    overrides = {"sw_stitch_on_cpu_above": 50_000_000, "sw_fast_layers": False, "sw_precision": "fp32"}
    assert check_overrides(liver_train, overrides) == overrides
    assert check_overrides(liver_train, {"sw_stitch_on_cpu_above": None}) == {"sw_stitch_on_cpu_above": None}


def test_unknown_id_lists_close_matches(liver_train):
    with pytest.raises(ConfigOverrideError) as info:
        check_overrides(liver_train, {"max_epoch": 5}, where="the liver train config")
    assert info.value.problems == [
        "max_epoch=5: the liver train config defines no id 'max_epoch'; did you mean max_epochs? "
        "(use --set-new max_epoch=... to add an id on purpose)"
    ]
    with pytest.raises(
        ConfigOverrideError, match="defines no id 'train#trainer#max_epochz'; did you mean train#trainer#"
    ):
        check_overrides(liver_train, {"train#trainer#max_epochz": 5})
    with pytest.raises(ConfigOverrideError, match=r"defines no id 'max_epochs#x'"):
        check_overrides(liver_train, {"max_epochs#x": 5})  # max_epochs holds no items


def test_wrong_types_are_all_reported_at_once(liver_train):
    with pytest.raises(ConfigOverrideError) as info:
        check_overrides(
            liver_train,
            {"max_epochs": "abc", "roi_size": 64, "validate_data": "maybe", "learning_rate": True, "pixdim": "big"},
        )
    assert info.value.problems == [
        "max_epochs='abc': expected an integer (the default is 100), got a string",
        "roi_size=64: expected a list (the default is [96, 96, 32]), got an integer",
        "validate_data='maybe': expected true or false (the default is True), got a string",
        "learning_rate=True: expected a number (the default is 0.002), got true or false",
        "pixdim='big': expected a list (the default is [2.4, 2.4, 5.0]), got a string",
    ]
    assert str(info.value).startswith("5 bad overrides:")
    assert isinstance(info.value, ValueError)


def test_a_word_outside_its_choices_is_refused(liver_train):
    with pytest.raises(ConfigOverrideError) as info:
        check_overrides(liver_train, {"cascade_smoothing": "foo", "sw_precision": "fp64"})
    assert info.value.problems == [
        "cascade_smoothing='foo': must be one of mean, median",
        "sw_precision='fp64': must be one of auto, fp32, bf16, fp16",
    ]
    assert check_overrides(liver_train, {"cascade_smoothing": "mean"}) == {"cascade_smoothing": "mean"}


def test_an_id_of_another_stage_is_accepted_and_logged(caplog):
    train, inference = load_stage_config("liver", "train"), load_stage_config("liver", "inference")
    assert check_overrides([train, inference], {"input_path": "/data/ct"}) == {"input_path": "/data/ct"}
    with caplog.at_level("WARNING", logger="pipelines.cli.config_checks"):
        checked = check_overrides([inference], {"batch_size": 1}, where="the liver inference config", elsewhere=[train])
    assert checked == {"batch_size": 1}
    assert "override batch_size is not used by the liver inference config" in caplog.text
    with pytest.raises(ConfigOverrideError, match="expected an integer"):
        check_overrides([inference], {"batch_size": "two"}, elsewhere=[train])  # typed by the stage that uses it
    with pytest.raises(ConfigOverrideError, match="defines no id 'input_path'"):
        check_overrides([train], {"input_path": "/data/ct"})


# ---- a workflow's data settings ---------------------------------------------------------------------------------
def test_data_settings_come_from_the_bundles():
    brain = data_settings("brain")
    assert brain.label_values == (0, 1, 2, 4) and brain.modality == "MR" and brain.spatial_dims == 3
    liver = data_settings("liver", {"dataset_dir": "/data/liver", "allow_outside_root": "true"})
    assert liver.label_values == (0, 1, 2) and liver.modality == "CT"
    assert liver.dataset_dir == Path("/data/liver") and liver.allow_outside_root is True
    assert data_settings("liver", {"modality": "MR"}).modality == "MR"  # a modality id wins over metadata.json
    xray = data_settings("chest_xray")
    assert xray.spatial_dims == 2 and xray.label_values == (0, 1)


def test_registry_modality_matches_bundle_metadata():
    for workflow in WORKFLOWS.values():
        if not workflow.config_suffix:
            assert data_settings(workflow.name).modality == workflow.modality


# ---- validate_workflow ------------------------------------------------------------------------------------------
def _nifti(path: Path, array: np.ndarray) -> str:
    nib.save(nib.Nifti1Image(array, np.diag([1.5, 1.5, 2.5, 1.0])), str(path))
    return path.name


def _ct(offset: int = 0) -> np.ndarray:
    array = np.full(SHAPE, -1000, np.int16)
    array[2:10, 2:8] = 40
    return array + offset


def _liver_data(folder: Path, label_value: int = 2, offset: int = 0) -> Path:
    """A datalist of one CT case per section, in ``folder``."""
    sections = {}
    for section in ("training", "validation", "test"):
        label = np.zeros(SHAPE, np.uint8)
        label[3:6, 3:6, 2:4] = label_value if section == "training" else 1
        sections[section] = [
            {
                "image": _nifti(folder / f"{section}_ct.nii.gz", _ct(offset if section == "validation" else 0)),
                "label": _nifti(folder / f"{section}_seg.nii.gz", label),
            }
        ]
    path = folder / "datalist.json"
    path.write_text(json.dumps(sections))
    return path


def _settings(folder: Path, datalist: Path) -> dict:
    return {"data_list_file_path": str(datalist), "dataset_dir": str(folder)}


def test_validate_configured_datalist(tmp_path):
    datalist = _liver_data(tmp_path)
    problems, summary = validate_workflow("liver", overrides=_settings(tmp_path, datalist))
    assert problems == []
    assert summary == f"liver: no problems found in {datalist} (training=1, validation=1, test=1)"


def test_validate_checks_a_negatives_section_when_the_datalist_has_one(tmp_path):
    datalist = _liver_data(tmp_path)
    sections = json.loads(datalist.read_text())
    head = np.full(SHAPE, -1000, np.int16)
    head[2:10, 2:8] = 35
    sections["negatives"] = [{"image": _nifti(tmp_path / "head.nii.gz", head), "label": "missing_seg.nii.gz"}]
    datalist.write_text(json.dumps(sections))
    problems, summary = validate_workflow("liver", overrides=_settings(tmp_path, datalist))
    assert len(problems) == 1 and problems[0].startswith(str(tmp_path / "missing_seg.nii.gz"))
    _nifti(tmp_path / "missing_seg.nii.gz", np.zeros(SHAPE, np.uint8))
    problems, summary = validate_workflow("liver", overrides=_settings(tmp_path, datalist))
    assert problems == [] and summary.endswith("(training=1, validation=1, test=1, negatives=1)")


def test_validate_reports_label_values_and_hounsfield_units(tmp_path):
    datalist = _liver_data(tmp_path, label_value=3, offset=1024)
    problems, summary = validate_workflow("liver", overrides=_settings(tmp_path, datalist))
    assert len(problems) == 2
    assert problems[0].startswith(f"{tmp_path / 'training_seg.nii.gz'}: label has value(s) [3] outside the classes'")
    assert problems[1].startswith(f"{tmp_path / 'validation_ct.nii.gz'}: values span [24, 1064], none negative")
    assert summary == f"liver: 2 problems found in {datalist}"


def test_validate_paths_with_the_bundle_settings(tmp_path):
    ct = tmp_path / _nifti(tmp_path / "ct.nii.gz", _ct())
    raw = tmp_path / _nifti(tmp_path / "raw.nii.gz", _ct(1024))
    folder = tmp_path / "cases"
    folder.mkdir()
    _nifti(folder / "a.nii.gz", _ct())
    _nifti(folder / "b.nii.gz", np.zeros(SHAPE, np.int16))
    problems, summary = validate_workflow("lung", [ct, raw, folder, tmp_path / "nope.nii.gz"])
    assert [p.split(":")[0] for p in problems] == [str(raw), str(folder / "b.nii.gz"), str(tmp_path / "nope.nii.gz")]
    assert summary.startswith(f"lung: 3 problems found in {ct} (1 image); {raw} (1 image); {folder} (2 images);")


def test_validate_brain_accepts_brats_labels_only(tmp_path):
    label = np.zeros(SHAPE, np.uint8)
    label[2:4, 2:4, 2:4] = 4
    label[5, 5, 3] = 3  # BraTS 2023 numbering in a bundle set up for 0, 1, 2, 4
    flair = np.random.default_rng(0).uniform(0, 500, SHAPE).astype(np.float32)
    entry = {"image": [_nifti(tmp_path / f"{s}.nii.gz", flair) for s in ("flair", "t1")], "label": "seg.nii.gz"}
    _nifti(tmp_path / "seg.nii.gz", label)
    datalist = tmp_path / "brats.json"
    datalist.write_text(json.dumps({"training": [entry], "validation": [], "test": []}))
    problems, _ = validate_workflow("brain", [datalist], base_dir=tmp_path)
    assert problems == [
        f"{tmp_path / 'seg.nii.gz'}: label has value(s) [3] outside the classes' values [0, 1, 2, 4] "
        "(values found: [0, 3, 4])"
    ]  # reported once, not once per sequence


def test_validate_chest_xray_folder(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes((tmp_path / "a.png").read_bytes()[:60])
    problems, summary = validate_workflow("chest_xray", [tmp_path])
    assert len(problems) == 1 and problems[0].startswith(f"{tmp_path / 'b.png'}: cannot be read as an image")
    assert summary == f"chest_xray: 1 problem found in {tmp_path} (2 images)"


def test_default_data_not_written_yet(tmp_path, monkeypatch):
    monkeypatch.setattr(config_checks, "REPO_ROOT", tmp_path)
    overrides = {"dataset_dir": str(tmp_path / WORKFLOWS["liver"].default_data)}
    problems, _ = validate_workflow("liver", overrides=overrides)
    assert problems == [
        f"{overrides['dataset_dir']}: the default data is not written yet; run `radcascade prepare liver` first"
    ]
