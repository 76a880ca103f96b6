"""Tests of the brain MRI phantoms (MNI152 anatomy, synthetic contrasts and gliomas) and their BraTS folder."""

import json
import socket

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from data_manifests.brats import find_brats_cases
from pipelines.phantoms import brain_mr as phantoms_brain
from pipelines.phantoms.brain_mr import CHANNELS, main, make_brain_mri_phantom, write_brain_phantom_task

SPACING = 4.0  # 40 x 48 x 40 voxels: the same field of view as the default 2 mm, eight times fewer voxels
SHAPE = (40, 48, 40)
TUMOUR_SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def tumour_cases():
    """Three cases with a tumour at 4 mm, shared by the read-only tests of this module."""
    return {seed: make_brain_mri_phantom(seed, SPACING, tumour=True) for seed in TUMOUR_SEEDS}


def test_channels_label_and_affine(tumour_cases):
    channels, label, affine = tumour_cases[0]
    assert tuple(channels) == CHANNELS == ("flair", "t1", "t1ce", "t2")
    for image in channels.values():
        assert image.shape == SHAPE and image.dtype == np.float32
        assert np.isfinite(image).all() and image.min() >= 0.0
    assert label.shape == SHAPE and label.dtype == np.uint8
    assert affine.shape == (4, 4)
    np.testing.assert_allclose(np.diag(affine), (SPACING, SPACING, SPACING, 1.0))  # RAS+, about MNI mm
    centre = affine @ np.array([*((np.array(SHAPE) - 1) / 2), 1.0])
    assert np.abs(centre[:3]).max() < 25  # the field of view is centred on the brain, near the MNI origin


def test_same_seed_same_case_and_different_seeds_differ(tumour_cases):
    again = make_brain_mri_phantom(0, SPACING, tumour=True)
    for key in CHANNELS:
        np.testing.assert_array_equal(again[0][key], tumour_cases[0][0][key])
    np.testing.assert_array_equal(again[1], tumour_cases[0][1])
    np.testing.assert_array_equal(again[2], tumour_cases[0][2])
    assert not np.array_equal(tumour_cases[0][0]["t1"], tumour_cases[1][0]["t1"])
    assert not np.array_equal(tumour_cases[0][1], tumour_cases[1][1])


def test_skull_stripped_intensities(tumour_cases):
    channels, label, _ = tumour_cases[1]
    brain = channels["t1"] > 0
    assert 0.15 < brain.mean() < 0.6  # a brain inside a box of background
    for image in channels.values():
        assert ((image > 0) == brain).all()  # the same brain mask in every channel, exactly 0 outside
        assert 30 < np.median(image[brain]) < 1500  # scanner-like units
    assert not brain[0].any() and not brain[-1].any()  # background along the left-right edges


def test_labels_are_brats_values_inside_the_brain(tumour_cases):
    for channels, label, _ in tumour_cases.values():
        assert set(np.unique(label)) <= {0, 1, 2, 4}
        assert {1, 2} <= set(np.unique(label)) or {4, 2} <= set(np.unique(label))
        tumour = label > 0
        assert (channels["flair"][tumour] > 0).all()
        core = (label == 1) | (label == 4)
        # the core is away from the box edges and within the brain
        idx = np.argwhere(core)
        assert idx.min() >= 2 and (np.array(SHAPE) - 1 - idx.max(axis=0)).min() >= 2
        brain = ndimage.binary_fill_holes(channels["t1"] > 0)
        assert brain[core].all()
        # tumours span only part of the slices, and the core is 2-6 cm across (8 cm with lobulation)
        z = np.flatnonzero(tumour.any(axis=(0, 1)))
        assert len(z) < 0.8 * SHAPE[2]
        diameter = 2 * (3 * core.sum() * SPACING**3 / (4 * np.pi)) ** (1 / 3)
        assert 15 <= diameter <= 80


def test_contrast_relationships(tumour_cases):
    for channels, label, _ in tumour_cases.values():
        flair, t1, t1ce, t2 = (channels[k] for k in CHANNELS)
        normal = (t1 > 0) & (ndimage.distance_transform_edt(label == 0) > 3)
        wm = normal & (t1 > np.percentile(t1[normal], 75))  # white matter is the brightest normal tissue on T1
        csf = normal & (t2 > np.percentile(t2[normal], 95))  # CSF the brightest on T2 (partial volume at 4 mm)
        oedema, necrosis, enhancing = label == 2, label == 1, label == 4
        assert flair[oedema].mean() > 1.3 * flair[wm].mean()
        assert t2[oedema].mean() > 1.3 * t2[wm].mean()
        fluid_ratio = flair / np.maximum(t2, 1.0)  # FLAIR is T2-weighted with the fluid signal suppressed
        assert fluid_ratio[csf].mean() < 0.5 * fluid_ratio[wm].mean()
        assert t1[csf].mean() < 0.8 * t1[wm].mean() and t2[csf].mean() > 1.5 * t2[wm].mean()
        if enhancing.sum() >= 5:
            assert t1ce[enhancing].mean() > 1.2 * t1ce[wm].mean()
            if necrosis.sum() >= 5:
                assert t1ce[enhancing].mean() > 2 * t1ce[necrosis].mean()
        if necrosis.sum() >= 5:
            assert t1[necrosis].mean() < t1[wm].mean()
            assert t2[necrosis].mean() > 1.5 * t2[wm].mean()


def test_healthy_cases_have_no_tumour_and_the_seed_decides_about_one_in_six():
    channels, label, _ = make_brain_mri_phantom(5, SPACING, tumour=False)
    assert not label.any() and (channels["t1"] > 0).any()
    draws = [np.random.default_rng(seed).random() < phantoms_brain.HEALTHY_FRACTION for seed in range(600)]
    assert 0.1 < np.mean(draws) < 0.25  # tumour=None: healthy with probability 1/6, decided by the first draw


def test_invalid_spacing():
    with pytest.raises(ValueError, match="spacing"):
        make_brain_mri_phantom(0, 0.5)


def test_nothing_is_downloaded(monkeypatch):
    """The template comes from the installed nilearn files: generation works with every socket refused."""

    def refuse(*args, **kwargs):
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    phantoms_brain.load_mni152.cache_clear()
    phantoms_brain._template.cache_clear()
    assert (phantoms_brain.mni152_dir() / phantoms_brain.MNI152_FILES["t1"]).is_file()
    _, label, _ = make_brain_mri_phantom(1, SPACING, tumour=True)
    assert label.any()


def test_task_layout_healthy_cases_and_brats_reader(tmp_path):
    out = write_brain_phantom_task(tmp_path / "task", num_cases=4, seed=0, spacing=SPACING)
    assert out == tmp_path / "task"
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert names == [f"BraTS-Phantom-{i:03d}" for i in range(4)]
    record = json.loads((out / "phantom.json").read_text())
    assert record["params"] == {"seed": 0, "num_cases": 4, "spacing": SPACING, "generator_version": 1}
    assert [c["tumour"] for c in record["cases"]] == [True, True, True, False]  # case 3 of every 6 is healthy
    for i, name in enumerate(names):
        images = [nib.load(out / name / f"{name}_{k}.nii.gz") for k in CHANNELS]
        seg = nib.load(out / name / f"{name}_seg.nii.gz")
        assert all(img.get_data_dtype() == np.float32 for img in images)
        assert seg.get_data_dtype() == np.uint8
        for img in images:
            assert img.shape == seg.shape == SHAPE
            np.testing.assert_allclose(img.affine, seg.affine)
        labels = np.asarray(seg.dataobj)
        assert set(np.unique(labels)) <= {0, 1, 2, 4}
        assert labels.any() == record["cases"][i]["tumour"]
        assert record["cases"][i]["voxels"]["2"] == int((labels == 2).sum())
    entries, naming = find_brats_cases(out)
    assert naming == "2020" and [e["patient"] for e in entries] == names
    assert not list(out.rglob(".*"))  # no temporary files left behind


def test_task_is_idempotent_and_rewritten_when_parameters_change(tmp_path):
    out = write_brain_phantom_task(tmp_path, num_cases=2, seed=3, spacing=SPACING)
    files = sorted(p for p in out.rglob("*") if p.is_file())
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    write_brain_phantom_task(tmp_path, num_cases=2, seed=3, spacing=SPACING)
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes
    before = nib.load(out / "BraTS-Phantom-000" / "BraTS-Phantom-000_t1.nii.gz").get_fdata()
    write_brain_phantom_task(tmp_path, num_cases=2, seed=4, spacing=SPACING)
    after = nib.load(out / "BraTS-Phantom-000" / "BraTS-Phantom-000_t1.nii.gz").get_fdata()
    assert not np.array_equal(before, after)
    assert json.loads((out / "phantom.json").read_text())["params"]["seed"] == 4


def test_task_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="num_cases"):
        write_brain_phantom_task(tmp_path, num_cases=0)
    with pytest.raises(ValueError, match="spacing"):
        write_brain_phantom_task(tmp_path, num_cases=1, spacing=8.0)
    assert not any(tmp_path.iterdir())


def test_command_line(tmp_path):
    assert main(["--out", str(tmp_path / "cli"), "--num-cases", "1", "--seed", "2", "--spacing", str(SPACING)]) == 0
    name = "BraTS-Phantom-000"
    assert (tmp_path / "cli" / name / f"{name}_seg.nii.gz").is_file()
    assert json.loads((tmp_path / "cli" / "phantom.json").read_text())["params"]["seed"] == 2
