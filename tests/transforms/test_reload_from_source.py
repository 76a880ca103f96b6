"""``ReloadFromSource(d)``: a volume read back from its file, in the axis order of a reference when given."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImage

from pipelines.validation.errors import DataError
from transforms import ReloadFromSource, ReloadFromSourced

AFFINE = np.diag([1.5, 1.5, 3.0, 1.0])


def _write(path, values, affine):
    nib.save(nib.Nifti1Image(values, affine), path)
    return LoadImage(image_only=True, ensure_channel_first=True)(str(path))


def test_a_label_with_flipped_rows_is_read_back_in_the_references_order(tmp_path):
    values = np.zeros((6, 5, 4), np.uint8)
    values[1, 0, 2] = 1  # one voxel near the first row
    image = _write(tmp_path / "image.nii.gz", values.astype(np.int16), AFFINE)
    flipped = AFFINE.copy()
    flipped[:3, 3] += flipped[:3, 1] * (values.shape[1] - 1)
    flipped[:3, 1] *= -1
    label = _write(tmp_path / "label.nii.gz", values[:, ::-1].copy(), flipped)  # the same place, rows stored flipped
    assert label[0, 1, 4, 2] == 1 and label[0, 1, 0, 2] == 0

    as_stored = ReloadFromSource()(label)
    assert as_stored[0, 1, 4, 2] == 1  # without a reference: the file's own order
    aligned = ReloadFromSourced("label", ref_key="pred")({"label": label, "pred": image})["label"]
    assert aligned[0, 1, 0, 2] == 1 and int(aligned.sum()) == 1
    np.testing.assert_allclose(aligned.affine.numpy(), image.affine.numpy(), atol=1e-6)


def test_a_volume_without_a_source_file_is_refused():
    with pytest.raises(DataError, match="without a source file"):
        ReloadFromSource()(MetaTensor(torch.zeros(1, 2, 2, 2)))
