"""Tests of the kaggle_3m (LGG segmentation dataset) TIFF slices -> NIfTI volumes + MONAI datalist builder."""

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from data_manifests.kaggle_3m import build_kaggle_3m_datalist, find_kaggle_3m_cases, main, patient_of_case
from pipelines.validation.errors import DataError
from tests.datalist_fixtures import SECTIONS, assert_patient_level, assert_written_and_resolvable, write_tif

H, W, N = 12, 10, 12  # rows, columns, slices: n = 1..12, so numeric and lexicographic order differ
# case folder -> positive slice numbers; TCGA_CS_4941 has two studies
CASES = {
    "TCGA_CS_4941_19960909": [3, 10, 11],
    "TCGA_CS_4941_19970214": [],
    "TCGA_CS_4942_19970222": [1],
    "TCGA_DU_5851_19950428": [2, 12],
    "TCGA_FG_6690_20020226": [5],
    "TCGA_HT_7602_19951103": [],
}


def slice_pixels(case_index: int, n: int) -> np.ndarray:
    """RGB slice whose channel c is ``10 * n + c + case_index``, with a marker at row 1, column 7."""
    image = np.empty((H, W, 3), dtype=np.uint8)
    for c in range(3):
        image[..., c] = 10 * n + c + case_index
    image[1, 7] = 255
    return image


def mask_pixels(positive: bool) -> np.ndarray:
    mask = np.zeros((H, W), dtype=np.uint8)
    if positive:
        mask[2:5, 6:9] = 255
    return mask


@pytest.fixture
def kaggle(tmp_path) -> Path:
    """Six case folders of twelve 12 x 10 RGB slices and masks, plus the dataset's data.csv and README."""
    root = tmp_path / "kaggle_3m"
    for i, (case, positive) in enumerate(CASES.items()):
        for n in range(1, N + 1):
            write_tif(root / case / f"{case}_{n}.tif", slice_pixels(i, n))
            write_tif(root / case / f"{case}_{n}_mask.tif", mask_pixels(n in positive))
    (root / "data.csv").write_text("Patient,RNASeqCluster\n")
    (root / "README.md").write_text("LGG segmentation dataset\n")
    return root


def test_patient_of_case_and_numeric_slice_order(kaggle):
    assert patient_of_case("TCGA_CS_4941_19960909") == "TCGA_CS_4941"
    cases = find_kaggle_3m_cases(kaggle)
    assert [c.name for c in cases] == list(CASES)
    assert [n for n, _, _ in cases[0].slices] == list(range(1, N + 1))
    assert cases[0].slices[1][1].name == "TCGA_CS_4941_19960909_2.tif"


def test_assembled_volumes(kaggle, tmp_path):
    out_dir = tmp_path / "nifti"
    datalist = build_kaggle_3m_datalist(kaggle, out_dir, seed=0)
    assert datalist["channels"] == ["pre-contrast", "FLAIR", "post-contrast"]
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        f"{c}_{s}.nii.gz" for c in CASES for s in ("precontrast", "flair", "postcontrast", "seg")
    )
    entry = next(e for k in SECTIONS for e in datalist[k] if e["case"] == "TCGA_DU_5851_19950428")
    i = list(CASES).index("TCGA_DU_5851_19950428")
    assert [Path(p).name for p in entry["image"]] == [
        f"TCGA_DU_5851_19950428_{s}.nii.gz" for s in ("precontrast", "flair", "postcontrast")
    ]
    for c, path in enumerate(entry["image"]):
        image = nib.load(path)
        data = np.asanyarray(image.dataobj)
        assert data.shape == (W, H, N) and data.dtype == np.uint8  # x = column, y = row, z = slice
        assert np.allclose(image.header.get_zooms(), (1, 1, 1))
        for k in range(N):  # slice k is n = k + 1 in numeric order
            assert data[0, 0, k] == 10 * (k + 1) + c + i
        assert data[7, 1, 0] == 255 and data[1, 7, 0] != 255  # orientation: marker at column 7, row 1
    seg = nib.load(entry["label"])
    mask = np.asanyarray(seg.dataobj)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    assert [k + 1 for k in range(N) if mask[..., k].any()] == [2, 12]
    assert mask[6:9, 2:5, 1].all() and mask[..., 1].sum() == 9
    assert np.allclose(seg.affine, nib.load(entry["image"][0]).affine)


def test_sections_counts_and_patient_level(kaggle, tmp_path):
    for seed in range(4):  # the two studies of TCGA_CS_4941 always share a section
        datalist = build_kaggle_3m_datalist(kaggle, tmp_path / "nifti", seed=seed, validate=seed == 0)
        assert_patient_level(datalist)
        assert [datalist["counts"][k]["patients"] for k in SECTIONS] == [3, 1, 1]
    counts = datalist["counts"]
    for k in SECTIONS:
        positive = sum(len(CASES[e["case"]]) for e in datalist[k])
        assert counts[k]["cases"] == len(datalist[k])
        assert counts[k]["positive_slices"] == positive
        assert counts[k]["negative_slices"] == N * len(datalist[k]) - positive
    assert datalist == build_kaggle_3m_datalist(kaggle, tmp_path / "nifti", seed=3, validate=False)


def test_idempotent_and_spacing(kaggle, tmp_path):
    out_dir = tmp_path / "nifti"
    build_kaggle_3m_datalist(kaggle, out_dir, validate=False, slice_counts=False)
    mtimes = {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()}
    build_kaggle_3m_datalist(kaggle, out_dir, validate=False, slice_counts=False)
    assert {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()} == mtimes  # nothing rewritten

    source = kaggle / "TCGA_FG_6690_20020226" / "TCGA_FG_6690_20020226_4.tif"
    newer = max(mtimes.values()) + 10**9
    os.utime(source, ns=(newer, newer))  # a changed slice: only its case is rebuilt
    build_kaggle_3m_datalist(kaggle, out_dir, validate=False, slice_counts=False)
    changed = {p.name for p in out_dir.iterdir() if p.stat().st_mtime_ns != mtimes[p.name]}
    assert changed == {f"TCGA_FG_6690_20020226_{s}.nii.gz" for s in ("precontrast", "flair", "postcontrast", "seg")}

    datalist = build_kaggle_3m_datalist(kaggle, out_dir, spacing=(0.5, 0.5, 3.0), validate=False, slice_counts=False)
    assert datalist["spacing"] == [0.5, 0.5, 3.0]  # another spacing rewrites every case
    assert all(np.allclose(nib.load(p).header.get_zooms(), (0.5, 0.5, 3.0)) for p in out_dir.iterdir())
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]  # atomic writes leave no temporary file
    with pytest.raises(ValueError, match="spacing must be three positive"):
        build_kaggle_3m_datalist(kaggle, out_dir, spacing=(1, 0, 1))


def test_written_paths_resolve_with_monai_and_main(kaggle, tmp_path):
    out = tmp_path / "lists" / "kaggle.json"
    args = ["--root", str(kaggle), "--out-dir", str(tmp_path / "nifti"), "--output", str(out)]
    args += ["--spacing", "1", "1", "2"]
    assert main(args) == 0
    written = json.loads(out.read_text())
    assert written["training"][0]["image"][0].startswith("../nifti/TCGA_")
    assert written["spacing"] == [1.0, 1.0, 2.0]
    assert_written_and_resolvable(out, written)
    assert main(["--root", str(tmp_path / "nowhere"), "--out-dir", str(tmp_path / "x"), "--output", str(out)]) == 1


def test_structure_errors_name_the_file(kaggle, tmp_path):
    case = kaggle / "TCGA_CS_4942_19970222"
    (case / "TCGA_CS_4942_19970222_7_mask.tif").unlink()
    other = kaggle / "TCGA_HT_7602_19951103"
    (other / "TCGA_HT_7602_19951103_5.tif").unlink()
    (other / "TCGA_HT_7602_19951103_5_mask.tif").unlink()
    with pytest.raises(DataError) as info:
        build_kaggle_3m_datalist(kaggle, tmp_path / "nifti")
    text = str(info.value)
    assert f"{case / 'TCGA_CS_4942_19970222_7.tif'}: slice without its mask TCGA_CS_4942_19970222_7_mask.tif" in text
    assert f"{other / 'TCGA_HT_7602_19951103_5.tif'}: slice 5 missing" in text
    assert not (tmp_path / "nifti").exists()  # names are checked before any volume is written
    with pytest.raises(DataError, match="kaggle_3m folder not found"):
        build_kaggle_3m_datalist(tmp_path / "nowhere", tmp_path / "nifti")
    (tmp_path / "empty" / "TCGA_CS_4941_19960909").mkdir(parents=True)
    with pytest.raises(DataError, match=f"{tmp_path / 'empty'}: no case folders"):
        build_kaggle_3m_datalist(tmp_path / "empty", tmp_path / "nifti")


def test_pixel_errors_name_the_file(kaggle, tmp_path):
    odd = kaggle / "TCGA_DU_5851_19950428" / "TCGA_DU_5851_19950428_9.tif"
    write_tif(odd, np.zeros((H + 2, W, 3), dtype=np.uint8))
    bad = kaggle / "TCGA_FG_6690_20020226" / "TCGA_FG_6690_20020226_3_mask.tif"
    bad.write_bytes(b"garbage, not a TIFF")
    gray = kaggle / "TCGA_CS_4942_19970222" / "TCGA_CS_4942_19970222_1.tif"
    write_tif(gray, np.zeros((H, W), dtype=np.uint8))
    with pytest.raises(DataError) as info:
        build_kaggle_3m_datalist(kaggle, tmp_path / "nifti")
    text = str(info.value)
    assert f"{odd}: slice is 14x10 but TCGA_DU_5851_19950428_8.tif before it is 12x10" in text
    assert f"{bad}: cannot be read as a TIFF image" in text
    assert f"{gray}: expected an RGB slice" in text
    written = {p.name.rsplit("_", 1)[0] for p in (tmp_path / "nifti").iterdir()}
    assert written == {"TCGA_CS_4941_19960909", "TCGA_CS_4941_19970214", "TCGA_HT_7602_19951103"}  # good cases kept
