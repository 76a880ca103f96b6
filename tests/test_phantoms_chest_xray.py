"""Tests of the seeded chest radiograph phantoms and of the COVID-19 Radiography Database style folder."""

import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from data_manifests.chest_xray import find_chest_xray_images
from pipelines.phantoms.chest_xray import (
    CATEGORIES,
    GENERATOR_VERSION,
    main,
    make_chest_xray_phantom,
    write_chest_xray_phantom_dataset,
)

SIZE = 128
SEEDS = range(6)


@pytest.fixture(scope="module")
def images():
    """``{(seed, category): (image, mask)}`` at 128 pixels, shared by the read-only tests."""
    return {(seed, c): make_chest_xray_phantom(seed, c, size=SIZE) for seed in SEEDS for c in CATEGORIES}


def _lungs_and_rows(mask):
    lungs = mask > 0
    rows = np.broadcast_to(np.arange(mask.shape[0])[:, None], mask.shape)
    return lungs, rows


def test_shapes_dtypes_and_values(images):
    for (_, category), (image, mask) in images.items():
        assert image.shape == mask.shape == (SIZE, SIZE), category
        assert image.dtype == np.uint8 and mask.dtype == np.uint8
        assert set(np.unique(mask)) == {0, 255}
        assert image.std() > 20  # not a flat image
    image, mask = make_chest_xray_phantom(0, "Normal", size=40)
    assert image.shape == mask.shape == (40, 40)


def test_same_seed_same_image_and_different_seeds_differ(images):
    again = make_chest_xray_phantom(2, "COVID", size=SIZE)
    for a, b in zip(again, images[2, "COVID"], strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(images[2, "COVID"][0], images[3, "COVID"][0])
    assert not np.array_equal(images[2, "COVID"][1], images[3, "COVID"][1])


def test_mask_is_two_lungs_with_the_left_one_smaller(images):
    for (seed, category), (image, mask) in images.items():
        components, n = ndimage.label(mask > 0)
        assert n == 2, (seed, category)
        centres = ndimage.center_of_mass(mask > 0, components, [1, 2])
        sizes = ndimage.sum(mask > 0, components, [1, 2])
        (_, x1), (_, x2) = centres
        right, left = (sizes[0], sizes[1]) if x1 < x2 else (sizes[1], sizes[0])  # patient right is image left
        assert x1 < SIZE / 2 < x2 or x2 < SIZE / 2 < x1
        assert left < right  # the heart takes room from the left lung
        assert 0.1 < (mask > 0).mean() < 0.5  # 0.1: a wide field of view
        lungs = mask > 0
        around = ndimage.binary_dilation(lungs, iterations=SIZE // 16) & ~lungs  # chest wall, mediastinum, heart
        assert image[lungs].mean() < image[around].mean()  # dark lung fields (air beside the body is darker still)


def test_categories_show_the_same_patient_with_different_lungs(images):
    for seed in SEEDS:
        normal, mask = images[seed, "Normal"]
        lungs = mask > 0
        outside = ~ndimage.binary_dilation(lungs, iterations=4)
        for category in CATEGORIES:
            image, other_mask = images[seed, category]
            np.testing.assert_array_equal(other_mask, mask)
            np.testing.assert_array_equal(image[outside], normal[outside])  # pathology only in the lungs
            if category != "Normal":
                assert image[lungs].mean() > normal[lungs].mean() + 2, (seed, category)


def test_categories_have_their_own_pattern(images):
    lower_minus_upper, focal = [], []
    for seed in SEEDS:
        normal, mask = images[seed, "Normal"]
        lungs, rows = _lungs_and_rows(mask)
        mid = np.median(rows[lungs])
        diff = {c: images[seed, c][0].astype(float) - normal for c in CATEGORIES}
        covid = diff["COVID"]
        lower_minus_upper.append(covid[lungs & (rows > mid)].mean() - covid[lungs & (rows <= mid)].mean())
        # consolidation is focal: its brightest part stands out from its mean more than diffuse patterns
        spread = {c: np.percentile(diff[c][lungs], 95) / diff[c][lungs].mean() for c in CATEGORIES if c != "Normal"}
        focal.append(spread["Lung_Opacity"] > max(spread["COVID"], spread["Viral Pneumonia"]))
        # the interstitial pattern adds fine detail: more high-frequency energy in the lungs than a normal film
        core = ndimage.binary_erosion(lungs, iterations=2)

        def detail(image, core=core):
            return np.abs(ndimage.laplace(ndimage.gaussian_filter(image.astype(float), 0.5)))[core].mean()

        assert detail(images[seed, "Viral Pneumonia"][0]) > detail(normal) + 0.5
    assert np.mean(lower_minus_upper) > 5  # COVID-19 haze is lower-zone predominant
    assert all(focal)


def test_acquisition_varies_outside_the_lungs():
    """Some radiographs have air beside the body (a wide field of view), markers, labels and film edges; none of it
    touches the lungs."""
    from pipelines.phantoms.chest_xray import burn_in

    edges = []
    for seed in range(12):
        image, mask = make_chest_xray_phantom(seed, "Normal", size=SIZE)
        edges.append(np.concatenate([image[:, : SIZE // 20], image[:, -(SIZE // 20) :]]).mean())
        clean = image.copy()
        burn_in(np.random.default_rng(seed), clean, mask > 0)
        np.testing.assert_array_equal(clean[mask > 0], image[mask > 0])
    assert min(edges) < 40 < max(edges)  # black air beside some bodies, arms and shoulders filling others
    marked = np.zeros((SIZE, SIZE), np.uint8)
    lungs = np.zeros((SIZE, SIZE), bool)
    lungs[40:90, 20:100] = True
    for seed in range(20):
        burn_in(np.random.default_rng(seed), marked, lungs)
    assert (marked > 200).any() and not marked[lungs].any()


def test_bad_arguments_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown chest X-ray category 'Pneumothorax'"):
        make_chest_xray_phantom(0, "Pneumothorax")
    with pytest.raises(ValueError, match="at least 32 pixels"):
        make_chest_xray_phantom(0, "Normal", size=16)
    with pytest.raises(ValueError, match="num_per_class must be at least 1"):
        write_chest_xray_phantom_dataset(tmp_path / "x", num_per_class=0)
    with pytest.raises(ValueError, match="unknown: \\['covid'\\]"):
        write_chest_xray_phantom_dataset(tmp_path / "x", classes=("covid", "Normal"))
    with pytest.raises(ValueError, match="distinct"):
        write_chest_xray_phantom_dataset(tmp_path / "x", classes=("Normal", "Normal"))
    assert not (tmp_path / "x").exists()


def test_written_dataset_layout_and_idempotency(tmp_path):
    out = write_chest_xray_phantom_dataset(tmp_path / "cxr", num_per_class=2, seed=3, size=64)
    record = json.loads((out / "phantom.json").read_text())
    assert record["params"] == {
        "seed": 3, "size": 64, "num_per_class": 2, "classes": list(CATEGORIES), "generator_version": GENERATOR_VERSION
    }  # fmt: skip
    assert record["numImages"] == 8 and record["classes"] == list(CATEGORIES)
    for category in CATEGORIES:
        names = sorted(p.name for p in (out / category / "images").iterdir())
        assert names == [f"{category}-1.png", f"{category}-2.png"]
        assert sorted(p.name for p in (out / category / "masks").iterdir()) == names
        with Image.open(out / category / "images" / names[0]) as image:
            assert image.mode == "L" and image.size == (64, 64)
        with Image.open(out / category / "masks" / names[0]) as mask:
            assert set(np.unique(np.asarray(mask))) == {0, 255}
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary files left
    entries, classes = find_chest_xray_images(out)  # the database's datalist builder reads the folder
    assert classes == sorted(CATEGORIES) and len(entries) == 8 and all("label" in e for e in entries)

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    write_chest_xray_phantom_dataset(out, num_per_class=2, seed=3, size=64)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing rewritten


def test_interrupted_write_is_completed_and_images_do_not_depend_on_other_classes(tmp_path):
    out = write_chest_xray_phantom_dataset(tmp_path / "cxr", num_per_class=2, seed=4, size=48, classes=["COVID"])
    first = np.asarray(Image.open(out / "COVID" / "images" / "COVID-2.png"))
    (out / "phantom.json").unlink()  # as if killed before the record was written
    (out / "COVID" / "masks" / "COVID-2.png").unlink()
    write_chest_xray_phantom_dataset(out, num_per_class=2, seed=4, size=48, classes=["COVID"])
    assert (out / "phantom.json").is_file() and (out / "COVID" / "masks" / "COVID-2.png").is_file()
    both = write_chest_xray_phantom_dataset(
        tmp_path / "both", num_per_class=2, seed=4, size=48, classes=["Normal", "COVID"]
    )
    np.testing.assert_array_equal(np.asarray(Image.open(both / "COVID" / "images" / "COVID-2.png")), first)


def test_cli_writes_a_dataset(tmp_path):
    argv = ["--out", str(tmp_path / "d"), "--num-per-class", "1", "--seed", "2", "--size", "48"]
    assert main([*argv, "--classes", "Normal", "Viral Pneumonia"]) == 0
    record = json.loads((tmp_path / "d" / "phantom.json").read_text())
    assert record["numImages"] == 2 and record["params"]["classes"] == ["Normal", "Viral Pneumonia"]
    assert (tmp_path / "d" / "Viral Pneumonia" / "images" / "Viral Pneumonia-1.png").is_file()
