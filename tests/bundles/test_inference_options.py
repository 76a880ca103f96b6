"""Inference options of the CT bundles read from the command line: use_cascade as a string, DICOM SEG output."""

import json
import logging
import shutil
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from monai.transforms import Lambdad, LoadImage

from tests.dicom_phantoms import write_ct_series


@pytest.mark.parametrize("value", ["false", "False", "0", "no"])
def test_use_cascade_false_as_a_string_runs_without_the_classifier(
    trained, liver_stage, tiny_liver_task, tmp_path, value
):
    # `trained` has the segmenter only: loading the classifier checkpoint, or running the cascade, would fail
    image = sorted((tiny_liver_task[0] / "imagesTr").glob("*.nii.gz"))[0]
    out = tmp_path / "out"
    overrides = {**trained, "input_path": str(image), "use_cascade": value, "output_dir": str(out)}
    workflow = liver_stage("inference", overrides)
    assert workflow.evaluator.inferer.enabled is False
    assert (out / "predictions" / f"{image.name[: -len('.nii.gz')]}_seg.nii.gz").is_file()
    assert not (out / "reports").exists()  # no cascade report: the cascade did not run


def test_use_cascade_junk_is_refused_by_name(trained, make_liver_workflow, tmp_path):
    workflow = make_liver_workflow("inference", {**trained, "use_cascade": "maybe", "output_dir": str(tmp_path)})
    with pytest.raises(Exception) as err:  # ConfigParser wraps the error of a failing expression
        workflow.initialize()
        workflow.run()
    text = []
    error = err.value
    while error is not None:
        text.append(str(error))
        error = error.__cause__ or error.__context__
    assert "use_cascade" in " ".join(text) and "must be true or false, got 'maybe'" in " ".join(text)


SHAPE = (10, 16, 18)  # slices, rows, columns


def _position_codes() -> np.ndarray:
    """CT pixel values that name their own (slice, row, column): -1000 + flat index."""
    return np.arange(np.prod(SHAPE)).reshape(SHAPE) - 1000


def _pattern(pred: torch.Tensor) -> torch.Tensor:
    """A label map of labels 0, 1, 2 that changes along every axis differently: any flip or transposition shows."""
    i, j, k = np.indices(pred.shape[1:])
    labels = (i // 3 + 2 * (j // 4) + k) % 3
    labels[0, 0, 0] = 0
    return pred * 0 + torch.as_tensor(labels[None], dtype=pred.dtype)


def test_dicom_seg_holds_the_nifti_prediction_on_the_source_slices(trained, liver_stage, tmp_path, caplog):
    series = tmp_path / "inputs" / "ct_dicom"
    datasets = write_ct_series(series, _position_codes(), pixel_spacing=(3.0, 3.5), slice_spacing=5.0)
    shutil.copy(sorted(Path(trained["dataset_dir"]).glob("imagesTr/*.nii.gz"))[0], tmp_path / "inputs" / "ct.nii.gz")
    out = tmp_path / "out"
    overrides = {
        **trained,
        "input_path": str(tmp_path / "inputs"),
        "use_cascade": False,
        "output_dir": str(out),
        "dicom_seg": "true",
        # a known, asymmetric prediction instead of the 1-epoch network's (wherever it is in the chain, the
        # NIfTI and the SEG must hold the same labels)
        "prediction_mapping": Lambdad(keys="pred", func=_pattern),
    }
    with caplog.at_level(logging.WARNING, logger="pipelines.io.dicom_seg"):
        liver_stage("inference", overrides)
    predictions = out / "predictions"
    assert sorted(p.name for p in predictions.iterdir()) == [
        "ct_dicom_seg.dcm", "ct_dicom_seg.nii.gz", "ct_seg.nii.gz", "failures.json",
    ]  # fmt: skip
    assert "ct.nii.gz is not one: wrote no .dcm" in caplog.text  # the NIfTI input: a warning, NIfTI only

    # Where each NIfTI voxel lies in the series, from the CT values as MONAI loads them (no shared geometry code)
    nifti = nib.load(predictions / "ct_dicom_seg.nii.gz")
    codes = np.rint(LoadImage(image_only=True)(str(series)).numpy()).astype(int) + 1000
    np.testing.assert_allclose(nifti.affine, LoadImage(image_only=True)(str(series)).affine.numpy(), atol=1e-4)
    expected = np.zeros(SHAPE, np.uint8)
    expected.flat[codes.ravel()] = np.asanyarray(nifti.dataobj).ravel()
    assert set(np.unique(expected)) == {0, 1, 2}

    seg = hd.seg.segread(predictions / "ct_dicom_seg.dcm")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == datasets[0].SeriesInstanceUID
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["liver", "tumour"]
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    metadata = json.loads((Path(__file__).resolve().parents[2] / "bundles/liver/configs/metadata.json").read_text())
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("Liver CT segmentation", metadata["version"])
    frames = seg.get_pixels_by_source_instance(
        [ds.SOPInstanceUID for ds in datasets], combine_segments=True, assert_missing_frames_are_empty=True
    )
    np.testing.assert_array_equal(frames, expected)
    assert pydicom.dcmread(predictions / "ct_dicom_seg.dcm").Modality == "SEG"
