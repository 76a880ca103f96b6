"""Tests of the seeded abdominal CT phantoms and of the MSD task folder written from them."""

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from pipelines.phantoms.liver_ct import main, make_liver_ct_phantom, write_liver_phantom_task
from pipelines.phantoms.liver_ct_anatomy import gallbladder_mask, stomach_contents_hu

SMALL = (96, 96, 24)
SMALL_SPACING = (3.6, 3.6, 6.5)  # about the field of view of the default size, in fewer voxels
TINY = (48, 48, 16)


@pytest.fixture(scope="module")
def default_case():
    """One default-size case (224 x 224 x 64), shared by the read-only tests of this module."""
    return make_liver_ct_phantom(0)


def test_outputs_types_shapes_and_affine(default_case):
    image, label, affine = default_case
    assert image.shape == label.shape == (224, 224, 64)
    assert image.dtype == np.int16 and label.dtype == np.uint8
    assert set(np.unique(label)) <= {0, 1, 2}
    assert affine.shape == (4, 4)
    np.testing.assert_allclose(np.diag(affine)[:3], (1.6, 1.6, 2.5))  # RAS+, diag(spacing)
    centre = affine @ np.array([(224 - 1) / 2, (224 - 1) / 2, (64 - 1) / 2, 1.0])
    np.testing.assert_allclose(centre[:3], 0.0, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_liver_is_on_the_patients_right(seed):
    """NIfTI world x grows towards the patient's right (RAS+), where the liver is: a mirrored phantom would teach
    a model that the liver is on the left, and it would fail on real scans."""
    image, label, affine = make_liver_ct_phantom(seed, shape=TINY)
    assert nib.aff2axcodes(affine) == ("R", "A", "S")
    liver_x = affine[0, 0] * np.argwhere(label == 1)[:, 0] + affine[0, 3]
    assert liver_x.mean() > 0 and (liver_x > 0).mean() > 0.7


def test_same_seed_same_case_and_different_seeds_differ():
    a = make_liver_ct_phantom(7, shape=TINY)
    b = make_liver_ct_phantom(7, shape=TINY)
    c = make_liver_ct_phantom(8, shape=TINY)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[1], c[1])


def test_hounsfield_ranges_are_plausible(default_case):
    image, label, _ = default_case
    corner = image[:10, :10, :].astype(float)
    assert abs(corner.mean() - (-1000)) < 5  # air
    assert 5 < corner.std() < 20  # noise of about 8-15 HU
    assert image.min() >= -1024 and image.max() > 500  # bone present
    liver = image[label == 1].astype(float)
    assert 10 <= liver.mean() <= 135  # fatty, plain or portal-venous
    # subcutaneous fat and soft tissue are present in the body
    assert ((image > -150) & (image < -60)).mean() > 0.02
    assert ((image > 20) & (image < 80)).mean() > 0.05


@pytest.mark.parametrize("seed", [0, 2, 3])
def test_liver_mean_and_tumour_contrast(seed):
    image, label, _ = make_liver_ct_phantom(seed, shape=SMALL, spacing=SMALL_SPACING)
    liver = image[ndimage.binary_erosion(label == 1)].astype(float)
    assert 10 <= liver.mean() <= 135  # fatty, plain or portal-venous
    tumours, n = ndimage.label(label == 2)
    assert n >= 1, "these seeds have tumours"
    for i in range(1, n + 1):
        core = ndimage.binary_erosion(tumours == i)
        if core.sum() < 20:
            continue
        assert abs(image[core].mean() - liver.mean()) > 8


def test_tumours_are_inside_the_liver():
    for seed in range(6):
        _, label, _ = make_liver_ct_phantom(seed, shape=TINY)
        tumour = label == 2
        if not tumour.any():
            continue
        liver_region = ndimage.binary_fill_holes(label > 0)
        assert liver_region[tumour].all()
        # every tumour touches liver parenchyma
        tumours, n = ndimage.label(tumour)
        around = ndimage.binary_dilation(tumour) & ~tumour
        for i in range(1, n + 1):
            shell = ndimage.binary_dilation(tumours == i) & around
            assert (label[shell] == 1).any()


def test_some_slices_have_no_liver_and_some_cases_are_healthy():
    counts = []
    for seed in range(12):
        _, label, _ = make_liver_ct_phantom(seed, shape=TINY)
        per_slice = (label > 0).any(axis=(0, 1))
        assert per_slice[0] == 0 and not per_slice.all()  # bottom slices hold no liver
        assert per_slice.sum() >= label.shape[2] // 2  # but the liver spans most slices
        counts.append(int((label == 2).sum()))
    assert any(c == 0 for c in counts) and any(c > 0 for c in counts)


def test_bad_shape_is_a_value_error():
    with pytest.raises(ValueError, match="shape"):
        make_liver_ct_phantom(0, shape=(48, 48))


def test_written_task_loads_and_is_idempotent(tmp_path):
    task = write_liver_phantom_task(tmp_path / "Task03_Liver_phantom", num_cases=3, seed=5, shape=TINY)
    dataset = json.loads((task / "dataset.json").read_text())
    assert dataset["numTraining"] == 3 and len(dataset["training"]) == 3 and dataset["test"] == []
    assert dataset["labels"] == {"0": "background", "1": "liver", "2": "cancer"}
    assert dataset["modality"] == {"0": "CT"} and "synthetic" in dataset["description"].lower()
    for i, item in enumerate(dataset["training"]):
        assert item == {"image": f"./imagesTr/liver_{i}.nii.gz", "label": f"./labelsTr/liver_{i}.nii.gz"}
        img = nib.load(task / item["image"])
        lab = nib.load(task / item["label"])
        assert img.shape == lab.shape == TINY
        np.testing.assert_allclose(img.affine, lab.affine)
        assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
        assert img.get_data_dtype() == np.int16 and lab.get_data_dtype() == np.uint8
        assert set(np.unique(np.asarray(lab.dataobj))) <= {0, 1, 2}
    assert not [p for p in task.rglob("*") if p.name.startswith(".")]  # no temporary files left

    stamps = {p: p.stat().st_mtime_ns for p in task.rglob("*.nii.gz")}
    stamps[task / "dataset.json"] = (task / "dataset.json").stat().st_mtime_ns
    write_liver_phantom_task(task, num_cases=3, seed=5, shape=TINY)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    (task / "labelsTr" / "liver_1.nii.gz").unlink()  # an incomplete folder is completed
    write_liver_phantom_task(task, num_cases=3, seed=5, shape=TINY)
    assert (task / "labelsTr" / "liver_1.nii.gz").is_file()


def test_cli_writes_a_task(tmp_path):
    assert main(["--out", str(tmp_path / "t"), "--num-cases", "2", "--seed", "1", "--shape", "32", "32", "8"]) == 0
    dataset = json.loads((tmp_path / "t" / "dataset.json").read_text())
    assert dataset["numTraining"] == 2
    assert nib.load(tmp_path / "t" / "imagesTr" / "liver_1.nii.gz").shape == (32, 32, 8)


def test_long_scan_keeps_the_abdomen_and_adds_chest_and_pelvis():
    from pipelines.phantoms.liver_ct import make_liver_ct_phantom

    short_img, short_lab, _ = make_liver_ct_phantom(4, shape=(48, 48, 20), spacing=(6.0, 6.0, 8.0))
    long_img, long_lab, _ = make_liver_ct_phantom(4, shape=(48, 48, 52), spacing=(6.0, 6.0, 8.0), z_range=(-1.0, 1.6))
    short_fraction = (short_lab > 0).any(axis=(0, 1)).mean()
    long_fraction = (long_lab > 0).any(axis=(0, 1)).mean()
    assert long_fraction < 0.5 * short_fraction  # the liver covers far fewer slices of the long scan
    top = long_img[..., -1]
    assert (top < -700).sum() > 0.2 * (top > -900).sum()  # lungs fill the chest at the top
    assert (long_lab[..., :10] == 0).all()  # no liver in the pelvis
    with pytest.raises(ValueError, match="z_range must increase"):
        make_liver_ct_phantom(0, shape=(16, 16, 8), z_range=(1.0, 0.0))


# the regions around the abdomen: (-1, 1.6) in 40 slices of 10.4 mm is 160 mm per abdomen unit
LONG, LONG_SPACING, LONG_RANGE = (64, 64, 40), (5.0, 5.0, 10.4), (-1.0, 1.6)


def _zf(k: int) -> float:
    return LONG_RANGE[0] + (LONG_RANGE[1] - LONG_RANGE[0]) * k / (LONG[2] - 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pelvis_holds_femoral_heads_on_both_sides_and_no_liver(seed):
    image, label, _ = make_liver_ct_phantom(seed, shape=LONG, spacing=LONG_SPACING, z_range=LONG_RANGE)
    low = [k for k in range(LONG[2]) if -0.9 < _zf(k) < -0.65]  # the femoral heads' level
    bone = image[..., low] > 350
    half = LONG[0] // 2
    assert bone[:half].sum() > 20 and bone[half:].sum() > 20  # one femoral head on each side
    pelvis = [k for k in range(LONG[2]) if _zf(k) < -0.1]
    assert (label[..., pelvis] == 0).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lower_chest_holds_lungs_and_heart_and_no_liver(seed):
    image, label, _ = make_liver_ct_phantom(seed, shape=LONG, spacing=LONG_SPACING, z_range=LONG_RANGE)
    chest = [k for k in range(LONG[2]) if _zf(k) > 1.35]
    assert (label[..., chest] == 0).all()
    top = image[..., chest[-1]]
    body = top > -500
    lung = (top > -950) & (top < -700)
    assert lung.sum() > 0.35 * (body.sum() + lung.sum())  # the lungs fill much of the chest
    # the heart: soft tissue in front of the spine, between the lungs (axis 1 grows anteriorly)
    heart_level = [k for k in range(LONG[2]) if 1.1 < _zf(k) < 1.3]
    centre = image[LONG[0] // 2 - 6 : LONG[0] // 2 + 6, LONG[1] // 2 : LONG[1] // 2 + 10]
    assert max(np.median(centre[..., k]) for k in heart_level) > 0


def test_default_task_varies_the_field_of_view(tmp_path):
    from pipelines.phantoms.liver_ct import case_z_range

    ranges = [case_z_range(s) for s in range(40)]
    assert ranges == [case_z_range(s) for s in range(40)]  # seeded
    assert 0.1 < sum(r == (0.0, 1.0) for r in ranges) / len(ranges) < 0.5
    assert min(r[0] for r in ranges) < -0.6 and max(r[1] for r in ranges) > 1.3
    task = write_liver_phantom_task(tmp_path / "t", num_cases=4, seed=0, shape=(32, 32, 8), spacing=(9.0, 9.0, 20.0))
    dataset = json.loads((task / "dataset.json").read_text())
    assert dataset["phantom"]["z_range"] == "per case"
    z_spacings = {round(float(nib.load(task / item["image"]).header.get_zooms()[2]), 3) for item in dataset["training"]}
    assert len(z_spacings) > 1  # the slice spacing grows with the case's range
    assert all(nib.load(task / item["image"]).shape == (32, 32, 8) for item in dataset["training"])


def _grids(shape=(64, 64, 32), spacing=(5.0, 5.0, 5.0)):
    axes = [(np.arange(n, dtype=np.float32) - (n - 1) / 2) * s for n, s in zip(shape, spacing, strict=True)]
    zf = (np.arange(shape[2], dtype=np.float32) / (shape[2] - 1))[None, None, :]
    return axes[0][:, None, None], axes[1][None, :, None], zf


def test_gallbladder_lies_under_the_right_lobe_anterior_and_medial_or_is_absent():
    """Four cases in five have a gallbladder: a sac anterior and medial of the right lobe's centre, its fundus near
    the liver's lower edge, narrowing upwards; the rest had a cholecystectomy."""
    x, y, zf = _grids()
    full = (64, 64, 32)
    centre, z_bot = (-60.0, 0.0), 0.25
    present = 0
    for seed in range(20):
        mask = gallbladder_mask(np.random.default_rng(seed), x, y, zf, centre, 150.0, 110.0, 1.0, z_bot, full)
        assert mask.shape == full and mask.dtype == bool
        if not mask.any():
            continue
        present += 1
        idx = np.argwhere(mask)
        mx = x[idx[:, 0], 0, 0].mean()
        my = y[0, idx[:, 1], 0].mean()
        mz = zf[0, 0, idx[:, 2]]
        assert centre[0] < mx < 0 and my > 0  # medial of the right lobe's centre (towards the midline), anterior
        assert mz.min() < z_bot + 0.2 and mz.max() < z_bot + 0.5  # the fundus near the lower edge
        areas = mask.sum(axis=(0, 1))
        rows = np.nonzero(areas)[0]
        assert areas[rows[-1]] < areas[rows].max()  # the neck, at the top, is narrower than the body
    assert 10 <= present <= 19


def test_stomach_contents_are_water_food_or_oral_contrast():
    """Water (0-20 HU), food as dense as unenhanced liver (20-60 HU, mottled) or oral contrast (150-300 HU)."""
    kinds = set()
    for seed in range(40):
        hu = stomach_contents_hu(np.random.default_rng(seed), (16, 16, 8))
        mean = float(np.mean(hu))
        if np.isscalar(hu):
            assert 0 <= hu <= 20 or 150 <= hu <= 300
            kinds.add("water" if hu <= 20 else "contrast")
        else:
            assert hu.shape == (16, 16, 8) and 20 <= mean <= 60 and hu.std() > 1
            kinds.add("food")
    assert kinds == {"water", "food", "contrast"}
