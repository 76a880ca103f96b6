"""The head CT phantom (MNI152 brain in skull, scalp and neck, in HU) and its use as negatives for the liver gate."""

import json

import nibabel as nib
import numpy as np
import pytest

from data_manifests.msd import build_msd_datalist
from pipelines.phantoms.head_ct import make_head_ct, write_head_ct_negatives
from pipelines.phantoms.liver_ct import write_liver_phantom_task
from pipelines.training.datalist_sections import optional_section, present_sections

TINY = (48, 48, 16)


@pytest.fixture(scope="module")
def head():
    """A head CT with 5 mm slices, as routine head CTs come."""
    return make_head_ct(0, slice_mm=5)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """A 5-case liver phantom task with one head CT negative, and its datalist."""
    task = write_liver_phantom_task(tmp_path_factory.mktemp("liver") / "Task03", 5, seed=1, shape=TINY, negatives=1)
    datalist = task / "datalist.json"
    build_msd_datalist(task, val_fraction=0.2, test_fraction=0.2, seed=0, output_path=datalist, relative_to=task)
    return task, datalist


def test_head_ct_geometry_and_hounsfield_units(head):
    image, affine = head
    assert image.dtype == np.int16 and image.ndim == 3 and image.shape[2] < image.shape[0]
    assert nib.aff2axcodes(affine) == ("R", "A", "S")
    np.testing.assert_allclose(np.diag(affine)[:3], (1.0, 1.0, 5.0))
    assert abs(np.median(image[:8, :8, :].astype(float)) + 1000) < 20  # air around the head
    middle = image[:, :, image.shape[2] * 2 // 3].astype(float)  # through the brain
    brain = middle[(middle > 0) & (middle < 80)]
    assert brain.size > 5000 and 20 <= np.median(brain) <= 45  # grey and white matter, CSF
    assert (middle > 700).sum() > 300  # the skull around it
    assert not ((image > -50) & (image < 80)).all(axis=(0, 1))[0]  # no slice is all soft tissue


def test_same_seed_same_head_and_thicker_slices_average(head):
    again, _ = make_head_ct(0, slice_mm=5)
    np.testing.assert_array_equal(again, head[0])
    thin, _ = make_head_ct(0, slice_mm=1)
    assert thin.shape[:2] == head[0].shape[:2] and thin.shape[2] // 5 == head[0].shape[2]
    with pytest.raises(ValueError, match="whole number of mm"):
        make_head_ct(0, slice_mm=2.5)


def test_negatives_are_written_with_empty_labels_and_kept(tmp_path):
    cases = write_head_ct_negatives(tmp_path, 1, seed=4)
    assert cases == [{"image": "negativesTr/head_ct_0.nii.gz", "label": "negativesLabelsTr/head_ct_0.nii.gz"}]
    image, label = (nib.load(tmp_path / cases[0][k]) for k in ("image", "label"))
    assert image.shape == label.shape and not np.asarray(label.dataobj).any()
    np.testing.assert_allclose(image.affine, label.affine)
    stamp = (tmp_path / cases[0]["image"]).stat().st_mtime_ns
    write_head_ct_negatives(tmp_path, 1, seed=4)
    assert (tmp_path / cases[0]["image"]).stat().st_mtime_ns == stamp  # not rewritten


def test_liver_task_lists_its_negatives_and_the_datalist_keeps_them_out_of_the_split(task):
    task_dir, datalist_path = task
    dataset = json.loads((task_dir / "dataset.json").read_text())
    assert dataset["phantom"]["negatives"] == 1 and len(dataset["training"]) == 5
    assert dataset["negatives"] == [
        {"image": "./negativesTr/head_ct_0.nii.gz", "label": "./negativesLabelsTr/head_ct_0.nii.gz"}
    ]
    datalist = json.loads(datalist_path.read_text())
    assert datalist["negatives"] == [
        {"image": "negativesTr/head_ct_0.nii.gz", "label": "negativesLabelsTr/head_ct_0.nii.gz"}
    ]
    split = [item["image"] for k in ("training", "validation", "test") for item in datalist[k]]
    assert len(split) == 5 and not any("negatives" in p for p in split)


def test_optional_section_reads_the_negatives_or_nothing(task, tmp_path):
    task_dir, datalist_path = task
    (negative,) = optional_section(datalist_path, "negatives", task_dir)
    assert negative["image"] == str(task_dir / "negativesTr" / "head_ct_0.nii.gz")
    assert present_sections(datalist_path, ["training", "negatives", None, "absent"]) == ("training", "negatives")
    assert optional_section(datalist_path, "absent", task_dir) == []
    assert optional_section(datalist_path, None, task_dir) == []
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"training": [], "validation": []}))
    assert optional_section(plain, "negatives") == [] and present_sections(plain, ["negatives"]) == ()
