"""Inference over many cases: a bad case is skipped and reported, the others go on."""

import json
import logging
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import DataLoader
from monai.inferers import SimpleInferer
from monai.transforms import Compose, EnsureChannelFirstd, Lambdad, LoadImaged

from pipelines.inference.robust_inference import (
    FAILED_KEY,
    SOURCE_KEY,
    FailureReport,
    GuardedDataset,
    RobustEvaluator,
    describe_error,
    failed_cases,
    inference_inputs,
)
from pipelines.validation.errors import DataError


def _volume(path, shape=(8, 8, 4), dtype=np.int16):
    nib.save(nib.Nifti1Image(np.arange(np.prod(shape)).reshape(shape).astype(dtype), np.eye(4)), path)
    return path


def _truncated_data(path):
    """An uncompressed NIfTI whose header is intact but whose voxel data is cut short."""
    _volume(path, shape=(16, 16, 8))
    path.write_bytes(path.read_bytes()[:600])
    return path


@pytest.fixture
def folder(tmp_path):
    cases = tmp_path / "cases"
    cases.mkdir()
    _volume(cases / "good.nii.gz")
    _truncated_data(cases / "short.nii")
    nib.save(nib.Nifti1Image(np.zeros((8, 8), np.int16), np.eye(4)), cases / "flat.nii.gz")
    (cases / "empty.nii.gz").write_bytes(b"")
    return cases


def test_report_writes_json_and_summarises(tmp_path, caplog):
    report = FailureReport(tmp_path / "predictions" / "failures.json")
    report.start(3)
    report.record("/data/a.nii.gz", DataError("/data/a.nii.gz: is 2D"), stage="input check")
    report.succeeded("/data/b.nii.gz")
    with caplog.at_level(logging.INFO, logger="pipelines.inference.robust_inference"):
        assert report.finish() == 1
    saved = json.loads((tmp_path / "predictions" / "failures.json").read_text())
    assert saved == {
        "total": 3,
        "segmented": 1,
        "failed": 1,
        "failures": [{"case": "a", "file": "/data/a.nii.gz", "stage": "input check", "error": "/data/a.nii.gz: is 2D"}],
    }
    assert "3 case(s), 1 segmented, 1 failed" in caplog.text and "/data/a.nii.gz" in caplog.text
    report.start(1)  # a second run starts clean
    assert len(report) == 0 and json.loads(report.path.read_text())["failed"] == 0


def test_describe_error_finds_the_cause_behind_monai_wrapping():
    try:
        try:
            raise EOFError("compressed file ended before the end-of-stream marker")
        except EOFError as inner:
            raise RuntimeError("applying transform <LoadImaged>") from inner
    except RuntimeError as outer:
        assert describe_error(outer) == "EOFError: compressed file ended before the end-of-stream marker"
    assert describe_error(RuntimeError("x" * 1000)).endswith("...")


def test_inputs_drop_and_record_the_bad_cases(folder):
    report = FailureReport()
    good = inference_inputs(folder, report)
    names = sorted(p["image"].split("/")[-1] for p in good)
    assert names == ["good.nii.gz", "short.nii"]  # a header-only check cannot see the missing data
    failed = {f["case"]: f for f in report.failures}
    assert set(failed) == {"flat", "empty"} and report.total == 4
    assert "is 2D" in failed["flat"]["error"] and failed["flat"]["file"].endswith("flat.nii.gz")
    assert "empty" in failed["empty"]["error"] and failed["empty"]["stage"] == "input check"


def test_sequences_on_different_grids_are_refused_before_loading(tmp_path):
    """Raw clinical series are not co-registered: each sequence on its own grid is one line, not MONAI's error."""
    import nibabel as nib
    import numpy as np

    patient = tmp_path / "studies" / "p1"
    patient.mkdir(parents=True)
    volume = np.ones((10, 12, 6), np.float32)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), patient / "p1_flair.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((12, 12, 6), np.float32), np.eye(4)), patient / "p1_t2.nii.gz")
    report = FailureReport()
    assert inference_inputs(tmp_path / "studies", report, sequences=["flair", "t1", "t1ce", "t2"],
                            allow_missing_sequences=True) == []  # fmt: skip
    (failure,) = report.failures
    assert (
        "p1_t2.nii.gz: not on the grid of p1_flair.nii.gz (shape (12, 12, 6) against (10, 12, 6))" in failure["error"]
    )
    nib.save(nib.Nifti1Image(volume, np.diag([1.0, 1.0, 2.0, 1.0])), patient / "p1_t2.nii.gz")
    report = FailureReport()
    inference_inputs(tmp_path / "studies", report, sequences=["flair", "t2"], allow_missing_sequences=True)
    assert "spacing" in report.failures[0]["error"]
    nib.save(nib.Nifti1Image(volume, np.eye(4)), patient / "p1_t2.nii.gz")
    report = FailureReport()
    assert len(inference_inputs(tmp_path / "studies", report, sequences=["flair", "t2"])) == 1 and not report.failures


def test_inputs_reading_voxels_catch_truncated_data(folder):
    report = FailureReport()
    good = inference_inputs(folder, report, check_intensity=True)
    assert [p["image"].split("/")[-1] for p in good] == ["good.nii.gz"]
    assert {f["case"] for f in report.failures} == {"flat", "empty", "short"}


def test_missing_input_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        inference_inputs(tmp_path / "nope", FailureReport())


def test_datalist_paths_outside_the_root_are_refused(tmp_path):
    root = tmp_path / "dataset"
    root.mkdir()
    _volume(root / "inside.nii.gz")
    _volume(tmp_path / "outside.nii.gz")
    datalist = root / "datalist.json"
    datalist.write_text(json.dumps({"test": [{"image": "inside.nii.gz"}, {"image": "../outside.nii.gz"}]}))
    report = FailureReport()
    good = inference_inputs(datalist, report, base_dir=root)
    assert [p["image"] for p in good] == [str(root / "inside.nii.gz")]
    assert "outside the dataset root" in report.failures[0]["error"]
    assert len(inference_inputs(datalist, FailureReport(), base_dir=root, allow_outside_root=True)) == 2


def test_guarded_dataset_marks_a_case_that_cannot_load(folder):
    load = Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image")])
    dataset = GuardedDataset([{"image": str(folder / "good.nii.gz")}, {"image": str(folder / "short.nii")}], load)
    assert tuple(dataset[0]["image"].shape) == (1, 8, 8, 4)
    marked = dataset[1]
    assert set(marked) == {FAILED_KEY, SOURCE_KEY} and marked[SOURCE_KEY] == str(folder / "short.nii")
    assert marked[FAILED_KEY]


def _evaluator(items, report, post=None):
    load = Compose(
        [LoadImaged("image", image_only=True), EnsureChannelFirstd("image"), Lambdad("image", torch.Tensor.float)]
    )
    loader = DataLoader(GuardedDataset(items, load), batch_size=1)
    return RobustEvaluator(
        device=torch.device("cpu"),
        val_data_loader=loader,
        network=torch.nn.Conv3d(1, 2, 1),
        inferer=SimpleInferer(),
        postprocessing=post,
        failures=report,
    )


def test_evaluator_skips_failed_cases_and_goes_on(folder, tmp_path):
    other = _volume(tmp_path / "other.nii.gz")
    items = [{"image": str(p)} for p in (folder / "good.nii.gz", folder / "short.nii", other)]

    def fail_on_other(pred):
        if "other" in str(pred.meta["filename_or_obj"]):
            raise OSError("disk full")
        return pred

    report = FailureReport(tmp_path / "failures.json")
    report.start(len(items))
    evaluator = _evaluator(items, report, post=Lambdad("pred", fail_on_other))
    evaluator.run()
    assert report.segmented == [str(folder / "good.nii.gz")]
    stages = {f["case"]: (f["stage"], f["error"]) for f in report.failures}
    assert stages["short"][0] == "loading"
    assert stages["other"] == ("inference", "OSError: disk full")
    assert json.loads((tmp_path / "failures.json").read_text())["failed"] == 2


def test_the_previous_case_is_released_before_the_next_is_read(folder, tmp_path):
    # ignite keeps state.output until the next batch has arrived: a folder of scans would hold two cases at once
    items = [{"image": str(folder / "good.nii.gz")}, {"image": str(_volume(tmp_path / "second.nii.gz"))}]
    seen_while_reading = []

    def note_held_output(image):
        seen_while_reading.append(evaluator.state.output)
        return image

    report = FailureReport()
    report.start(len(items))
    evaluator = _evaluator(items, report)
    evaluator.data_loader.dataset.transform.transforms += (Lambdad("image", note_held_output),)
    evaluator.run()
    assert len(report.segmented) == 2
    assert seen_while_reading == [None, None]


def test_evaluator_lets_an_interrupt_through(folder):
    def interrupt(pred):
        raise KeyboardInterrupt

    evaluator = _evaluator([{"image": str(folder / "good.nii.gz")}], FailureReport(), post=Lambdad("pred", interrupt))
    with pytest.raises(KeyboardInterrupt):
        evaluator.run()


def test_failed_cases_of_a_workflow():
    parser = ConfigParser({"failures": {"_target_": "pipelines.inference.robust_inference.FailureReport"}})
    report = parser.get_parsed_content("failures")
    report.record("/x.nii.gz", "broken", stage="loading")
    assert failed_cases(SimpleNamespace(parser=parser)) == report.failures
    assert failed_cases(SimpleNamespace(parser=ConfigParser({}))) == []


def test_a_report_shared_by_several_stages_counts_each_case_once(tmp_path):
    report = FailureReport(tmp_path / "failures.json")
    report.start(3)
    report.succeeded("/in/a.png")  # segmented ...
    report.succeeded("/in/b.png")
    report.record("/in/c.png", "unreadable", stage="loading")
    report.succeeded("/in/a.png")  # ... and classified
    report.record("/in/b.png", "classifier failed", stage="inference")  # segmented, then failed
    report.record("/in/c.png", "unreadable again", stage="loading")  # the second stage meets it again
    report.succeeded("/in/c.png")
    saved = json.loads((tmp_path / "failures.json").read_text())
    assert (saved["total"], saved["segmented"], saved["failed"]) == (3, 1, 2)
    assert [(f["case"], f["stage"], f["error"]) for f in saved["failures"]] == [
        ("c", "loading", "unreadable"),
        ("b", "inference", "classifier failed"),
    ]
