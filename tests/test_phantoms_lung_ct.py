"""Tests of the seeded chest CT phantoms and of the COVID-19-20 style folder written from them."""

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from data_manifests.covid19_20 import find_covid19_20_cases
from pipelines.phantoms.common import case_seed
from pipelines.phantoms.lung_ct import (
    build_lung_ct,
    case_name,
    case_z_range,
    main,
    make_lung_ct_phantom,
    write_lung_ct_phantom_task,
)

SMALL = (64, 64, 24)
SMALL_SPACING = (5.4, 5.4, 8.0)  # the field of view of the default (192, 192, 64) at (1.8, 1.8, 3.0) mm
TINY = (40, 40, 12)
TINY_SPACING = (8.6, 8.6, 16.0)
SEEDS = (0, 1, 2, 3, 4, 7)  # 0 and 4 are healthy, 7 has solid nodules only, the others ground glass


@pytest.fixture(scope="module")
def cases():
    """Small cases of ``SEEDS`` (with lung masks and lesion records), shared by the read-only tests."""
    return {seed: build_lung_ct(seed, SMALL, SMALL_SPACING) for seed in SEEDS}


def test_outputs_types_shapes_and_affine(cases):
    image, label, affine = make_lung_ct_phantom(1, SMALL, SMALL_SPACING)
    case = cases[1]
    np.testing.assert_array_equal(image, case.image)
    np.testing.assert_array_equal(label, case.label)
    assert image.shape == label.shape == case.lungs.shape == SMALL
    assert image.dtype == np.int16 and label.dtype == np.uint8 and case.lungs.dtype == bool
    assert set(np.unique(label)) == {0, 1}
    np.testing.assert_allclose(np.diag(affine), (*SMALL_SPACING, 1.0))  # RAS+, diag(spacing)
    centre = affine @ np.array([(SMALL[0] - 1) / 2, (SMALL[1] - 1) / 2, (SMALL[2] - 1) / 2, 1.0])
    np.testing.assert_allclose(centre[:3], 0.0, atol=1e-6)


def test_the_right_lung_is_on_the_patients_right_and_larger(cases):
    """NIfTI world x grows towards the patient's right (RAS+). The right lung is the larger one (the heart takes
    room from the left), so most lung voxels lie at positive world x."""
    for seed, case in cases.items():
        assert nib.aff2axcodes(case.affine) == ("R", "A", "S")
        lung_x = case.affine[0, 0] * np.argwhere(case.lungs)[:, 0] + case.affine[0, 3]
        assert (lung_x > 0).sum() > (lung_x < 0).sum(), f"seed {seed}"


def test_same_seed_same_case_and_different_seeds_differ():
    a = make_lung_ct_phantom(3, TINY, TINY_SPACING)
    b = make_lung_ct_phantom(3, TINY, TINY_SPACING)
    c = make_lung_ct_phantom(5, TINY, TINY_SPACING)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[1], c[1])


def test_hounsfield_ranges_are_plausible(cases):
    for case in cases.values():
        image, label, lungs = case.image, case.label, case.lungs
        corner = image[:4, :4, :].astype(float)
        assert abs(corner.mean() + 1000) < 5 and 5 < corner.std() < 30  # air with noise
        assert image.min() >= -1024 and image.max() > 400  # bone present
        parenchyma = ndimage.binary_erosion(lungs) & ~ndimage.binary_dilation(label > 0, iterations=2)
        assert -900 <= np.median(image[parenchyma]) <= -780
        assert 0.1 < lungs.mean() < 0.5  # the lungs fill much of the chest
        assert ((image > -150) & (image < -60)).mean() > 0.01  # fat
        assert ((image > 20) & (image < 80)).mean() > 0.03  # muscle, heart, vessels


def test_lesion_intensities(cases):
    for case in cases.values():
        kinds = {lesion["kind"] for lesion in case.lesions}
        lesion = case.image[case.label > 0].astype(float)
        if kinds == {"ggo"}:
            assert -750 <= np.median(lesion) <= -200  # ground glass, sometimes with a consolidated core
        if kinds == {"nodule"}:
            assert lesion.max() > -100  # a solid nodule, diluted by partial volume at 5.4 mm
            assert all(case.image[lesion_["center"]] > -250 for lesion_ in case.lesions)


def test_lesions_are_inside_the_lungs_and_records_match(cases):
    for case in cases.values():
        assert not (case.label.astype(bool) & ~case.lungs).any()
        assert sum(lesion["voxels"] for lesion in case.lesions) >= (case.label > 0).sum()
        for lesion in case.lesions:
            assert case.lungs[lesion["center"]]


def test_some_cases_are_healthy_and_lesion_cases_have_negative_lung_slices(cases):
    kinds = {seed: sorted({lesion["kind"] for lesion in case.lesions}) for seed, case in cases.items()}
    assert kinds == {0: [], 1: ["ggo"], 2: ["ggo"], 3: ["ggo"], 4: [], 7: ["nodule"]}
    for seed, case in cases.items():
        with_lesion = case.label.any(axis=(0, 1))
        with_lung = case.lungs.any(axis=(0, 1))
        if not kinds[seed]:
            assert not with_lesion.any()
            continue
        assert 0 < with_lesion.sum() < 0.6 * with_lung.sum()
        assert (with_lung & ~with_lesion).sum() >= 0.4 * with_lung.sum()  # negative slices that show lungs


def test_ground_glass_is_large_enough_to_learn(cases):
    for seed in (1, 2, 3):
        components, n = ndimage.label(cases[seed].label)
        sizes = np.bincount(components.ravel())[1:]
        voxel_ml = np.prod(SMALL_SPACING) / 1000.0
        assert sizes.max() * voxel_ml > 3.0  # at least one opacity of a few cm


def test_bad_arguments_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        make_lung_ct_phantom(0, shape=(48, 48))
    with pytest.raises(ValueError, match="positive spacing"):
        make_lung_ct_phantom(0, shape=TINY, spacing=(1.0, -1.0, 2.0))
    with pytest.raises(ValueError, match="num_cases must be at least 1"):
        write_lung_ct_phantom_task(tmp_path / "t", num_cases=0)
    with pytest.raises(ValueError, match="at least 8 voxels"):
        write_lung_ct_phantom_task(tmp_path / "t", num_cases=1, shape=(4, 40, 12))
    assert not (tmp_path / "t").exists()


def test_written_task_layout_and_idempotency(tmp_path):
    out = write_lung_ct_phantom_task(tmp_path / "covid", num_cases=2, seed=5, shape=TINY, spacing=TINY_SPACING)
    record = json.loads((out / "phantom.json").read_text())
    expected = {"seed": 5, "shape": list(TINY), "spacing": list(TINY_SPACING), "axes": "RAS", "z_range": "per case"}
    expected["max_slice_mm"] = round(4 / 3 * TINY_SPACING[2], 4)
    assert record["params"] == expected
    assert record["labels"] == {"0": "background", "1": "lesion"} and record["numTraining"] == 2
    assert "synthetic" in record["description"].lower()
    assert case_name(0) == "volume-covid19-phantom-0000"
    for i, item in enumerate(record["cases"]):
        assert item["image"] == f"Train/volume-covid19-phantom-{i:04d}_ct.nii.gz"
        assert item["label"] == f"Train/volume-covid19-phantom-{i:04d}_seg.nii.gz"
        img, lab = nib.load(out / item["image"]), nib.load(out / item["label"])
        assert img.shape == lab.shape and img.shape[:2] == TINY[:2] and img.shape[2] >= TINY[2]
        assert img.get_data_dtype() == np.int16 and lab.get_data_dtype() == np.uint8
        np.testing.assert_allclose(img.affine, lab.affine)
        z_lo, z_hi = case_z_range(case_seed(5, i))  # its own range: the chest's slices, thicker or more of them
        np.testing.assert_allclose(img.header.get_zooms()[:2], TINY_SPACING[:2])
        extent = img.shape[2] * img.header.get_zooms()[2]
        np.testing.assert_allclose(extent, TINY[2] * TINY_SPACING[2] * (z_hi - z_lo), rtol=1e-5)
        assert img.header.get_zooms()[2] <= 4 / 3 * TINY_SPACING[2] + 1e-4
        assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
        assert item["lesion_voxels"] == int(np.asarray(lab.dataobj).sum())
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary files left
    found = find_covid19_20_cases(out)  # the challenge's datalist builder reads the folder
    assert [c["patient"] for c in found] == [case_name(0), case_name(1)]

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    write_lung_ct_phantom_task(out, num_cases=2, seed=5, shape=TINY, spacing=TINY_SPACING)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing rewritten


def test_interrupted_write_is_completed(tmp_path):
    out = write_lung_ct_phantom_task(tmp_path / "covid", num_cases=2, seed=1, shape=TINY, spacing=TINY_SPACING)
    first = nib.load(out / "Train" / f"{case_name(1)}_seg.nii.gz").get_fdata()
    (out / "phantom.json").unlink()  # as if killed before the record was written
    (out / "Train" / f"{case_name(1)}_seg.nii.gz").unlink()
    write_lung_ct_phantom_task(out, num_cases=2, seed=1, shape=TINY, spacing=TINY_SPACING)
    assert (out / "phantom.json").is_file()
    np.testing.assert_array_equal(nib.load(out / "Train" / f"{case_name(1)}_seg.nii.gz").get_fdata(), first)
    # other parameters do not match the record: the folder is rewritten for them
    write_lung_ct_phantom_task(out, num_cases=1, seed=1, shape=TINY, spacing=TINY_SPACING)
    assert json.loads((out / "phantom.json").read_text())["numTraining"] == 1


def test_cli_writes_a_task(tmp_path):
    argv = ["--out", str(tmp_path / "t"), "--num-cases", "1", "--seed", "2", "--shape", "40", "40", "12"]
    assert main([*argv, "--spacing", *map(str, TINY_SPACING)]) == 0
    record = json.loads((tmp_path / "t" / "phantom.json").read_text())
    assert record["numTraining"] == 1 and record["params"]["seed"] == 2
    assert nib.load(tmp_path / "t" / "Train" / f"{case_name(0)}_ct.nii.gz").shape[:2] == TINY[:2]
    assert main([*argv, "--spacing", *map(str, TINY_SPACING), "--z-range", "0", "1", "--out", str(tmp_path / "c")]) == 0
    assert nib.load(tmp_path / "c" / "Train" / f"{case_name(0)}_ct.nii.gz").shape == TINY  # the chest alone


LONG = (64, 64, 120)
LONG_RANGE = (-3.8, 1.8)  # thighs to neck (chest units)
LONG_SPACING = (5.4, 5.4, (LONG_RANGE[1] - LONG_RANGE[0]) * 192.0 / LONG[2])  # the chest 192 mm high, as by default


@pytest.fixture(scope="module")
def long_case():
    """A whole-body length scan: the chest of the default phantom with the abdomen, pelvis, thighs and neck."""
    return build_lung_ct(1, LONG, LONG_SPACING, LONG_RANGE)


def _body_parts(image: np.ndarray, k: int) -> tuple[int, int]:
    """The number of separate body outlines on slice ``k`` and their area in voxels."""
    body = ndimage.binary_fill_holes(image[:, :, k] > -500)
    _, n = ndimage.label(body)
    return n, int(body.sum())


def test_a_long_range_holds_the_lungs_on_a_quarter_of_the_slices(long_case):
    with_lung = long_case.lungs.any(axis=(0, 1))
    slices = np.flatnonzero(with_lung)
    assert 0.18 < with_lung.mean() < 0.32  # a chest-abdomen-pelvis length: the lungs on about a quarter
    assert slices[0] > 0.55 * LONG[2] and slices[-1] < LONG[2] - 5  # abdomen and pelvis below, the neck above
    assert np.all(np.diff(slices) == 1)  # one craniocaudal run
    assert not (long_case.label.astype(bool) & ~long_case.lungs).any()  # lesions stay in the lungs
    assert long_case.label.any()


def test_a_long_range_draws_thighs_below_and_a_neck_above(long_case):
    image = long_case.image
    chest = (
        np.flatnonzero(long_case.lungs.any(axis=(0, 1)))[0] + np.flatnonzero(long_case.lungs.any(axis=(0, 1)))[-1]
    ) // 2
    n_chest, chest_area = _body_parts(image, chest)
    n_thighs, _ = _body_parts(image, 0)
    n_neck, neck_area = _body_parts(image, LONG[2] - 1)
    assert n_chest == 1 and n_thighs == 2 and n_neck == 1
    assert neck_area < 0.4 * chest_area
    below = image[:, :, : int(0.45 * LONG[2])]
    assert (below > 600).any()  # the pelvis's and femurs' cortical bone
    assert ((below > -150) & (below < -60)).mean() > 0.01  # fat in the abdomen and thighs


def test_the_chest_alone_is_unchanged_by_the_range_argument():
    a = make_lung_ct_phantom(2, TINY, TINY_SPACING)
    b = make_lung_ct_phantom(2, TINY, TINY_SPACING, z_range=(0.0, 1.0))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_a_long_range_task_records_its_range_and_a_bad_range_is_refused(tmp_path):
    spacing = (8.6, 8.6, 16.0 * 3)
    out = write_lung_ct_phantom_task(tmp_path / "long", 1, seed=3, shape=TINY, spacing=spacing, z_range=(-1, 2))
    record = json.loads((out / "phantom.json").read_text())
    assert record["params"]["z_range"] == [-1.0, 2.0]
    with pytest.raises(ValueError, match="z_range must increase"):
        make_lung_ct_phantom(0, TINY, TINY_SPACING, z_range=(1.0, 0.0))
    with pytest.raises(ValueError, match="z_range must be two increasing numbers"):
        write_lung_ct_phantom_task(tmp_path / "bad", 1, shape=TINY, spacing=TINY_SPACING, z_range=(0.5, 0.5))
    assert not (tmp_path / "bad").exists()


def test_default_tasks_vary_the_range_from_the_chest_alone_to_the_thighs_and_neck():
    ranges = [case_z_range(case_seed(0, i)) for i in range(200)]
    assert 0.15 < sum(r == (0.0, 1.0) for r in ranges) / len(ranges) < 0.35  # a quarter: the chest alone
    longer = [r for r in ranges if r != (0.0, 1.0)]
    assert all(-2.4 <= lo <= -0.1 and 1.0 <= hi <= 1.6 for lo, hi in longer)
    assert any(lo < -1.9 for lo, _ in longer)  # some reach the thighs
    assert ranges == [case_z_range(case_seed(0, i)) for i in range(200)]  # reproducible
