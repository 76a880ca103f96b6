"""The MONAI Label app's helpers (``apps/radcascade_label/lib/bundles.py``), which need no MONAI Label: these run
in the main environment, in CI. The tasks built on them are tested against the real server in test_server.py."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor

from pipelines.workflows import WORKFLOWS
from tests.monailabel.app_modules import load_app_module

bundles = load_app_module("lib/bundles.py")
AFFINE = np.array([[-2.0, 0, 0, 90], [0, 2.0, 0, -120], [0, 0, 3.0, -60], [0, 0, 0, 1]])


def _spatial_dims(name: str) -> int:
    parser = ConfigParser()
    parser.read_config(WORKFLOWS[name].config_files("inference"))
    return parser.get("network_def#spatial_dims")


def test_default_models_are_the_registrys_workflows_with_an_inference_stage():
    models = bundles.AppConf.from_conf({}).models
    assert {"liver", "lung", "brain", "chest_xray"} <= set(models)
    assert set(models) == {n for n, w in WORKFLOWS.items() if "inference" in w.stages}
    assert bundles.served_workflows() == {n: _spatial_dims(n) for n in models}
    assert bundles.served_workflows()["chest_xray"] == 2 and bundles.served_workflows()["liver"] == 3


def test_conf_selects_models_and_rejects_unknown_ones():
    assert bundles.AppConf.from_conf({"models": "liver, lung"}).models == ("liver", "lung")
    with pytest.raises(ValueError, match="known workflows"):
        bundles.AppConf.from_conf({"models": "kidney"})


@pytest.mark.parametrize(
    "conf, message",
    [({"overrides": "{pixdim: 4"}, "--conf overrides"), ({"overrides": "[1]"}, "JSON object"),
     ({"full_models": "maybe"}, "--conf full_models")],
)  # fmt: skip
def test_conf_values_are_checked(conf, message):
    with pytest.raises(ValueError, match=message):
        bundles.AppConf.from_conf(conf)


def test_stage_overrides_set_checkpoints_outputs_and_device(tmp_path):
    conf = bundles.AppConf.from_conf(
        {"models": "liver", "ckpt_root": str(tmp_path / "ckpt"), "output_root": str(tmp_path / "runs"),
         "overrides": '{"pixdim": [4, 4, 6]}', "device": "cpu"}
    )  # fmt: skip
    overrides = conf.stage_overrides("liver")
    assert overrides["ckpt_dir"] == str(tmp_path / "ckpt" / "liver")
    assert overrides["output_dir"] == str(tmp_path / "runs" / "liver")
    assert overrides["pixdim"] == [4, 4, 6] and overrides["device"] == "$torch.device('cpu')"
    assert "ckpt_dir" not in bundles.AppConf.from_conf({"models": "liver"}).stage_overrides("liver")


def test_bundle_info_reads_the_layered_configs(tmp_path):
    brain = bundles.BundleInfo.read("brain", {"ckpt_dir": str(tmp_path)})
    assert brain.labels == {"necrotic core": 1, "oedema": 2, "enhancing tumour": 4}
    assert brain.in_channels == 4 and brain.channel_names == ("flair", "t1", "t1ce", "t2")
    assert brain.model_path == tmp_path / "model.pt" and brain.classifier_path == tmp_path / "classifier.pt"
    liver = bundles.BundleInfo.read("liver")
    assert liver.labels == {"liver": 1, "tumour": 2} and liver.channel_names == ("c0",)
    assert liver.ckpt_dir == WORKFLOWS["liver"].bundle_dir / "models"
    assert liver.max_epochs > 0 and liver.classifier_max_epochs > 0 and liver.dimension == 3
    xray = bundles.BundleInfo.read("chest_xray", {"ckpt_dir": str(tmp_path)})
    assert xray.dimension == 2 and xray.labels == {"lung": 1} and xray.in_channels == 1
    assert xray.model_path == tmp_path / "model_xray.pt" and xray.classifier_path == tmp_path / "classifier_xray.pt"


def test_label_value_map_follows_segment_names():
    slicer = [{"name": "Enhancing Tumour", "idx": 1}, {"name": "oedema", "idx": 3}, {"name": "scribbles", "idx": 4}]
    classes = ("background", "necrotic core", "oedema", "enhancing tumour")
    mapping = bundles.label_value_map(slicer, classes, (0, 1, 2, 4))
    assert mapping == {0: 0, 1: 4, 3: 2, 4: 0}
    with pytest.raises(ValueError, match="no name and integer idx"):
        bundles.label_value_map([{"name": "liver"}], ("background", "liver"), (0, 1))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])  # Slicer submits .nrrd by default
def test_remap_label_file_maps_values_and_keeps_geometry(tmp_path, suffix):
    values = np.zeros((6, 5, 4), dtype=np.uint8)
    values[1:3, 1:3, 1:3], values[4, 4, 3], values[0, 0, 0] = 1, 2, 7
    src = sitk.GetImageFromArray(values)
    src.SetSpacing((0.8, 0.9, 2.5))
    src.SetOrigin((10.0, -4.0, 3.0))
    sitk.WriteImage(src, str(tmp_path / f"label{suffix}"))
    out = bundles.remap_label_file(tmp_path / f"label{suffix}", tmp_path / "out" / "label.nii.gz", {0: 0, 1: 2, 2: 1})
    result = sitk.ReadImage(str(out))
    expected = np.select([values == 1, values == 2], [2, 1], 0)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result), expected)  # 7: unmapped, now background
    np.testing.assert_allclose(result.GetSpacing(), src.GetSpacing())
    np.testing.assert_allclose(result.GetOrigin(), src.GetOrigin())


def test_split_cases_is_seeded_and_holds_one_case_out_at_least():
    ids = [f"case_{i}" for i in range(10)]
    train, val = bundles.split_cases(ids, 0.2)
    assert len(val) == 2 and sorted(train + val) == ids
    assert bundles.split_cases(list(reversed(ids)), 0.2) == (train, val)
    assert [len(part) for part in bundles.split_cases(ids[:2], 0.01)] == [1, 1]
    with pytest.raises(ValueError, match="at least 2 labelled images"):
        bundles.split_cases(ids[:1], 0.2)


def test_split_channels_writes_one_file_per_sequence(tmp_path):
    volume = np.random.default_rng(0).random((5, 6, 7, 4)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, AFFINE), tmp_path / "study.nii.gz")
    files = bundles.split_channels(tmp_path / "study.nii.gz", tmp_path / "split", ["flair", "t1", "t1ce", "t2"])
    assert [f.rsplit("/", 1)[1] for f in files] == [f"study_{s}.nii.gz" for s in ("flair", "t1", "t1ce", "t2")]
    for c, path in enumerate(files):
        image = nib.load(path)
        np.testing.assert_allclose(image.affine, AFFINE)
        np.testing.assert_array_equal(np.asarray(image.dataobj), volume[..., c])
    with pytest.raises(ValueError, match="expected a 4D NIfTI"):
        bundles.split_channels(tmp_path / "study.nii.gz", tmp_path / "split", ["flair", "t1"])


def test_write_label_volume_writes_uint8_with_the_affine(tmp_path):
    values = torch.randint(0, 3, (1, 2, 3, 4), generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    mask = MetaTensor(values, affine=torch.as_tensor(AFFINE))  # (1, X, Y, Z), as Segmenter returns it
    image = nib.load(bundles.write_label_volume(mask, mask.affine, tmp_path / "label.nii.gz"))
    assert image.shape == (2, 3, 4) and image.get_data_dtype() == np.uint8
    np.testing.assert_allclose(image.affine, AFFINE)
    np.testing.assert_array_equal(np.asarray(image.dataobj), mask[0].numpy())


def _mask_of(width: int, height: int) -> torch.Tensor:
    """A (1, width, height) mask, as RadiographSegmenter returns it, with a block that shows its orientation."""
    mask = torch.zeros((1, width, height), dtype=torch.uint8)
    mask[0, 2:5, 1:3] = 1  # columns 2-4, rows 1-2
    return mask


def test_write_radiograph_label_lies_on_the_png_as_itk_reads_it(tmp_path):
    """Slicer loads the radiograph and the label with ``sitk.ReadImage``: same size, spacing, origin, direction,
    and the mask's pixel (column c, row r) at the image's (c, r)."""
    from PIL import Image

    Image.fromarray(np.zeros((6, 9), np.uint8)).save(tmp_path / "cxr.png")  # 9 wide, 6 high
    out = bundles.write_radiograph_label(_mask_of(9, 6), tmp_path / "cxr.png", tmp_path / "label.nii.gz")
    label, image = sitk.ReadImage(str(out)), sitk.ReadImage(str(tmp_path / "cxr.png"))
    assert label.GetSize() == image.GetSize() == (9, 6)
    assert label.GetSpacing() == image.GetSpacing() and label.GetOrigin() == image.GetOrigin()
    values = sitk.GetArrayFromImage(label)  # (rows, columns)
    assert values.dtype == np.uint8 and values.sum() == 6 and values[1:3, 2:5].all()
    with pytest.raises(ValueError, match="mask of 6 x 9 pixels"):
        bundles.write_radiograph_label(_mask_of(6, 9), tmp_path / "cxr.png", tmp_path / "bad.nii.gz")


def test_write_radiograph_label_keeps_a_dicom_radiographs_geometry_as_itk_reads_it(tmp_path):
    """A single DICOM radiograph is a one-slice volume to ITK; the label is the same one-slice volume."""
    from tests.radiograph_files import write_radiograph_dicom

    source = write_radiograph_dicom(
        tmp_path / "cxr.dcm", np.zeros((6, 9), np.uint16), modality="DX", PixelSpacing=[0.2, 0.15]
    )
    out = bundles.write_radiograph_label(_mask_of(9, 6), source, tmp_path / "label.nii.gz")
    label, image = sitk.ReadImage(str(out)), sitk.ReadImage(str(source))
    assert label.GetSize() == image.GetSize() == (9, 6, 1)
    np.testing.assert_allclose(label.GetSpacing(), image.GetSpacing())
    np.testing.assert_allclose(label.GetOrigin(), image.GetOrigin())
    np.testing.assert_allclose(label.GetDirection(), image.GetDirection())
    assert sitk.GetArrayFromImage(label)[0, 1:3, 2:5].all()
