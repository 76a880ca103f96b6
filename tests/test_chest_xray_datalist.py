"""Tests of the chest X-ray (COVID-19 Radiography Database, COVID-QU-Ex) -> MONAI datalist builder."""

import json
from pathlib import Path

import numpy as np
import pytest

from data_manifests.chest_xray import build_chest_xray_datalist, main
from pipelines.validation.errors import DataError
from tests.datalist_fixtures import SECTIONS, assert_patient_level, assert_written_and_resolvable, write_png

CLASSES = {"COVID": 4, "Lung_Opacity": 3, "Normal": 5, "Viral Pneumonia": 3}  # class -> images


def image_pixels(seed: int, size: int = 20) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, size=(size, size), dtype=np.uint8)


def mask_pixels(positive: bool, size: int = 20) -> np.ndarray:
    mask = np.zeros((size, size), dtype=np.uint8)
    if positive:
        mask[4:10, 3:8] = 255
    return mask


@pytest.fixture
def radiography(tmp_path) -> Path:
    """The Radiography Database layout: 15 images in 4 classes; COVID masks are 16 x 16 for 20 x 20 images."""
    root = tmp_path / "COVID-19_Radiography_Dataset"
    for name, count in CLASSES.items():
        for i in range(1, count + 1):
            stem = f"{name.replace(' ', '_')}-{i}"
            write_png(root / name / "images" / f"{stem}.png", image_pixels(i))
            write_png(root / name / "masks" / f"{stem}.png", mask_pixels(i % 2 == 1, 16 if name == "COVID" else 20))
    (root / "COVID.metadata.xlsx").write_bytes(b"PK")
    return root


@pytest.fixture
def qu_ex(tmp_path) -> Path:
    """The COVID-QU-Ex layout: Train/Val/Test with 3 classes, lung and infection masks."""
    root = tmp_path / "Infection Segmentation Data"
    for split, count in (("Train", 4), ("Val", 2), ("Test", 2)):
        for name in ("COVID-19", "Non-COVID", "Normal"):
            for i in range(count):
                stem = f"{split}_{name}_{i}"
                write_png(root / split / name / "images" / f"{stem}.png", image_pixels(i))
                write_png(root / split / name / "lung masks" / f"{stem}.png", mask_pixels(True))
                write_png(root / split / name / "infection masks" / f"{stem}.png", mask_pixels(name == "COVID-19"))
    return root


def test_random_split_classes_and_counts(radiography):
    datalist = build_chest_xray_datalist(radiography, seed=0)
    assert datalist["classes"] == ["COVID", "Lung_Opacity", "Normal", "Viral Pneumonia"]
    assert datalist["split"] == "random" and datalist["seed"] == 0
    assert "no patient ids" in datalist["description"]
    assert [len(datalist[k]) for k in SECTIONS] == [10, 3, 2]  # 15 images, split like patients
    assert_patient_level(datalist, patient_of=lambda e: e["image"])
    total = dict.fromkeys(CLASSES, 0)
    for k in SECTIONS:
        counts = datalist["counts"][k]
        assert counts["images"] == len(datalist[k]) and counts["without_mask"] == 0
        for e in datalist[k]:
            assert datalist["classes"][e["class"]] == e["class_name"] == Path(e["image"]).parent.parent.name
            assert Path(e["label"]).name == Path(e["image"]).name and Path(e["label"]).parent.name == "masks"
            total[e["class_name"]] += 1
        assert counts["classes"] == {n: sum(e["class_name"] == n for e in datalist[k]) for n in CLASSES}
        positive = sum(int(Path(e["image"]).stem.rsplit("-", 1)[1]) % 2 == 1 for e in datalist[k])
        assert (counts["positive_images"], counts["negative_images"]) == (positive, len(datalist[k]) - positive)
        assert counts["mask_size_differs"] == sum(e["class_name"] == "COVID" for e in datalist[k])
    assert total == CLASSES
    assert datalist["mask_sizes"] == [{"image": [20, 20], "mask": [16, 16], "count": 4}]


def test_seeded_determinism_and_class_choice(radiography):
    a = build_chest_xray_datalist(radiography, seed=3, validate=False)
    assert a == build_chest_xray_datalist(radiography, seed=3, validate=False)
    assert a != build_chest_xray_datalist(radiography, seed=4, validate=False)
    chosen = build_chest_xray_datalist(radiography, classes=["Normal", "COVID"], validate=False)
    assert chosen["classes"] == ["Normal", "COVID"]
    entries = [e for k in SECTIONS for e in chosen[k]]
    assert len(entries) == 9 and {(e["class"], e["class_name"]) for e in entries} == {(0, "Normal"), (1, "COVID")}
    with pytest.raises(DataError, match=f"{radiography / 'Pneumonia'}: class folder not found"):
        build_chest_xray_datalist(radiography, classes=["Normal", "Pneumonia"])


def test_missing_masks(radiography):
    missing = radiography / "Normal" / "masks" / "Normal-2.png"
    missing.unlink()
    with pytest.raises(DataError, match=f"{radiography / 'Normal' / 'images' / 'Normal-2.png'}: has no mask {missing}"):
        build_chest_xray_datalist(radiography)
    datalist = build_chest_xray_datalist(radiography, allow_missing_masks=True)
    entry = next(e for k in SECTIONS for e in datalist[k] if e["image"].endswith("Normal-2.png"))
    assert "label" not in entry
    assert sum(datalist["counts"][k]["without_mask"] for k in SECTIONS) == 1


def test_given_split_of_covid_qu_ex(qu_ex):
    lung = build_chest_xray_datalist(qu_ex, val_fraction=0.5, seed=9)
    assert lung["split"] == "given" and "seed" not in lung
    assert lung["classes"] == ["COVID-19", "Non-COVID", "Normal"]
    for section, split in zip(SECTIONS, ("Train", "Val", "Test"), strict=True):
        assert lung["counts"][section]["images"] == len(lung[section]) == {"Train": 12, "Val": 6, "Test": 6}[split]
        assert all(Path(e["image"]).parts[-4] == split for e in lung[section])
        assert all(Path(e["label"]).parent.name == "lung masks" for e in lung[section])
        assert lung["counts"][section]["negative_images"] == 0
    infection = build_chest_xray_datalist(qu_ex, mask_kind="infection")
    assert all(Path(e["label"]).parent.name == "infection masks" for k in SECTIONS for e in infection[k])
    assert infection["counts"]["training"]["positive_images"] == 4  # only COVID-19 images have infections
    assert infection["labels"]["1"] == "infection"


def test_written_paths_resolve_with_monai_and_main(radiography, qu_ex, tmp_path):
    out = tmp_path / "lists" / "cxr.json"
    assert main(["--root", str(radiography), "--output", str(out), "--classes", "Viral Pneumonia", "COVID"]) == 0
    written = json.loads(out.read_text())
    assert written["classes"] == ["Viral Pneumonia", "COVID"]
    assert written["training"][0]["image"].startswith("../COVID-19_Radiography_Dataset/")
    assert_written_and_resolvable(out, written)
    assert main(["--root", str(qu_ex), "--output", str(out), "--mask-kind", "infection", "--no-validate"]) == 0
    assert json.loads(out.read_text())["validation"][0]["label"].split("/")[-2] == "infection masks"
    assert main(["--root", str(tmp_path / "nowhere"), "--output", str(out)]) == 1


def test_other_errors_name_the_file(radiography, qu_ex, tmp_path):
    with pytest.raises(DataError, match="chest X-ray folder not found"):
        build_chest_xray_datalist(tmp_path / "nowhere")
    (tmp_path / "empty" / "COVID").mkdir(parents=True)
    with pytest.raises(DataError, match=f"{tmp_path / 'empty'}: no class folders with images"):
        build_chest_xray_datalist(tmp_path / "empty")
    bad = radiography / "Lung_Opacity" / "images" / "Lung_Opacity-2.png"
    bad.write_bytes(b"\x89PNG truncated")
    with pytest.raises(DataError, match=f"{bad}: cannot be read as an image"):
        build_chest_xray_datalist(radiography)
    with pytest.raises(DataError, match=f"{bad}: cannot be read"):  # its header is read to compare sizes
        build_chest_xray_datalist(radiography, validate=False)
    build_chest_xray_datalist(radiography, validate=False, slice_counts=False)  # nothing is read
    for folder in (qu_ex / "Val").iterdir():
        (folder / "infection masks").rename(folder / "other")
    with pytest.raises(DataError, match=f"{qu_ex / 'Val' / 'COVID-19' / 'infection masks'}: mask folder missing"):
        build_chest_xray_datalist(qu_ex, mask_kind="infection")
