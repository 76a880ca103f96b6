"""``radcascade prepare-real``: the real public cases of data_manifests/real_public.json checked and listed, on the
real files this repository carries (TotalSegmentator's example CTs and liver label, Apache-2.0)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from data_manifests.real_public import MANIFEST, load_manifest, prepare_real, sha256_of
from pipelines.cli.main import main
from pipelines.validation.errors import DataError
from pipelines.validation.volume_checks import check_pair, same_grid
from pipelines.workflows import REPO_ROOT

REAL = REPO_ROOT / "tests" / "data" / "real" / "totalsegmentator"


def test_the_manifest_records_every_case_and_the_files_in_the_repository_match_it():
    manifest = load_manifest()
    source = manifest["sources"]["totalsegmentator"]
    assert source["licence"] == "Apache-2.0" and len(source["commit"]) == 40
    modalities = {"liver": "CT", "brain": "MR", "chest_xray": "DX"}
    for case in manifest["cases"]:
        assert modalities[case["workflow"]] == case["modality"]
        assert (
            len(manifest["sources"][case["source"]]["commit"]) == 40 and manifest["sources"][case["source"]]["licence"]
        )
        if case["in_repository"]:
            folder = REPO_ROOT / case["in_repository"]
            assert sha256_of(folder / case["image"]["path"]) == case["image"]["sha256"]
            if case["label"]:
                assert sha256_of(folder / case["label"]["path"]) == case["label"]["sha256"]
        else:
            assert case["why_not_in_repository"]


def test_prepare_real_writes_a_datalist_of_the_cases_found_and_lists_the_missing(tmp_path, capsys):
    assert main(["prepare-real", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "missing  totalseg_ct_dicom: get it from https://github.com/wasserth/TotalSegmentator" in out
    datalist = json.loads((tmp_path / "liver_real.json").read_text())
    assert datalist["training"] == []  # evaluation only
    test_images = [e["image"] for e in datalist["test"]]
    assert test_images == [str(REAL / "example_ct_sm.nii.gz"), str(REAL / "example_ct.nii.gz")]
    assert datalist["unlabelled"] == []
    whole = np.asarray(nib.load(datalist["test"][1]["label"]).dataobj)
    np.testing.assert_array_equal(np.flatnonzero(whole.any(axis=(0, 1)))[[0, -1]], [69, 111])  # the liver's slices
    label = nib.load(datalist["test"][0]["label"])
    source = nib.load(REAL / "example_seg.nii.gz")
    values = np.asarray(label.dataobj)
    assert set(np.unique(values).tolist()) == {0, 1}  # TotalSegmentator's 5 (liver) -> 1, the other organs -> 0
    np.testing.assert_array_equal(values == 1, np.asarray(source.dataobj) == 5)
    np.testing.assert_allclose(label.affine, source.affine)
    assert check_pair(datalist["test"][0]["image"], datalist["test"][0]["label"]) == []


def test_sequence_cases_and_radiograph_masks_become_datalist_entries(tmp_path):
    """A brain case lists one file per sequence (named), a radiograph's anti-aliased mask is thresholded."""
    from PIL import Image

    fetched = tmp_path / "fetched"
    (fetched / "case").mkdir(parents=True)
    for name in ("flair", "t1ce", "seg"):
        data = np.arange(24, dtype=np.int16).reshape(2, 3, 4) % (3 if name == "seg" else 100)
        nib.save(nib.Nifti1Image(data, np.eye(4)), fetched / "case" / f"case_{name}.nii.gz")
    mask = np.zeros((6, 8), np.uint8)
    mask[2:4, 1:5], mask[1, 1] = 255, 100  # an anti-aliased edge pixel below the threshold
    Image.fromarray(mask).save(fetched / "mask.png")
    Image.fromarray(np.full((6, 8), 90, np.uint8)).save(fetched / "cxr.png")
    files = {n: {"path": f"case/case_{n}.nii.gz", "sha256": sha256_of(fetched / "case" / f"case_{n}.nii.gz")}
             for n in ("flair", "t1ce", "seg")}  # fmt: skip
    manifest = {
        "sources": {"src": {"repository": "https://example.org/repo", "commit": "0" * 40, "licence": "MIT"}},
        "cases": [
            {"id": "mri", "source": "src", "workflow": "brain", "modality": "MR",
             "sequences": {"FLAIR": files["flair"], "T1ce": files["t1ce"]},
             "label": {**files["seg"], "map": {"1": 1, "2": 4}}},
            {"id": "xr", "source": "src", "workflow": "chest_xray", "modality": "DX",
             "image": {"path": "cxr.png", "sha256": sha256_of(fetched / "cxr.png")},
             "label": {"path": "mask.png", "sha256": sha256_of(fetched / "mask.png"), "threshold": 128}},
        ],
    }  # fmt: skip
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    prepared = prepare_real([fetched], tmp_path / "out", tmp_path / "manifest.json")
    (brain,) = json.loads(Path(prepared.datalists["brain"]).read_text())["test"]
    assert brain["id"] == "mri" and brain["sequences"] == ["FLAIR", "T1ce"]
    assert brain["image"] == [str(fetched / "case" / "case_flair.nii.gz"), str(fetched / "case" / "case_t1ce.nii.gz")]
    values = np.asarray(nib.load(brain["label"]).dataobj)
    assert set(np.unique(values).tolist()) == {0, 1, 4}
    (xray,) = json.loads(Path(prepared.datalists["chest_xray"]).read_text())["test"]
    written = np.asarray(Image.open(xray["label"]))
    np.testing.assert_array_equal(written, np.where(mask >= 128, 255, 0))


def test_a_file_that_differs_from_the_manifest_is_refused(tmp_path):
    fetched = tmp_path / "fetched" / "tests" / "reference_files"
    fetched.mkdir(parents=True)
    shutil.copy(REAL / "example_seg.nii.gz", fetched / "example_seg.nii.gz")
    shutil.copy(REAL / "example_ct.nii.gz", fetched / "example_ct_sm.nii.gz")  # the wrong file under the name
    with pytest.raises(DataError, match=r"example_ct_sm.nii.gz: sha256 dbd3ae6d.* differs from e50c00b2"):
        prepare_real([tmp_path / "fetched"], tmp_path / "out", MANIFEST)
    assert not (tmp_path / "out" / "liver_real.json").exists()


def test_a_label_stored_with_flipped_rows_lies_on_its_images_grid(tmp_path):
    """dicom2nifti and some viewers store a label with the rows flipped: the same voxel centres, another affine."""
    image = nib.load(REAL / "example_ct_sm.nii.gz")
    rows_flipped = image.affine.copy()
    rows_flipped[:3, 3] += rows_flipped[:3, 1] * (image.shape[1] - 1)  # the first row is the image's last
    rows_flipped[:3, 1] *= -1
    values = np.asarray(nib.load(REAL / "example_seg.nii.gz").dataobj)[:, ::-1]
    nib.save(nib.Nifti1Image(values, rows_flipped), tmp_path / "flipped.nii.gz")
    assert same_grid(image.affine, image.shape, rows_flipped, values.shape)
    assert check_pair(REAL / "example_ct_sm.nii.gz", tmp_path / "flipped.nii.gz") == []

    shifted = rows_flipped.copy()
    shifted[0, 3] += 3.0  # one voxel off: another grid
    nib.save(nib.Nifti1Image(values, shifted), tmp_path / "shifted.nii.gz")
    problems = check_pair(REAL / "example_ct_sm.nii.gz", tmp_path / "shifted.nii.gz")
    assert len(problems) == 1 and "affine (origin/direction) differs" in problems[0]


def test_a_collection_lists_many_radiographs_by_a_checksum_file(tmp_path, capsys):
    """A collection's checksum file (sha256sum's format) gives one case per image with a same-named mask; found
    and missing collection cases are counted in one line each, not listed one by one."""
    from PIL import Image

    fetched = tmp_path / "fetched" / "data"
    for folder in ("cxr", "masks"):
        (fetched / folder).mkdir(parents=True)
    lines = []
    for name in ("MCUCXR_0001_0.png", "CHNCXR_0002_1.png", "CHNCXR_0003_0.png"):
        Image.fromarray(np.full((6, 8), 90, np.uint8)).save(fetched / "cxr" / name)
        Image.fromarray(np.full((6, 8), 255, np.uint8)).save(fetched / "masks" / name)
        lines += [f"{sha256_of(fetched / f / name)}  {f}/{name}" for f in ("cxr", "masks")]
    lines.append(f"{'0' * 64}  cxr/no_mask.png")  # an image without a mask is no case
    (tmp_path / "checksums").mkdir()
    (tmp_path / "checksums" / "src.sha256").write_text("\n".join(lines) + "\n")
    manifest = {
        "sources": {"src": {"repository": "https://example.org/repo", "commit": "0" * 40, "licence": "MIT",
                            "folder": "data"}},
        "collections": [{"id_prefix": "cxr_", "source": "src", "workflow": "chest_xray", "modality": "DX",
                         "checksums": "checksums/src.sha256", "images": "cxr/", "labels": "masks/",
                         "label": {"threshold": 128}, "in_repository": None, "why_not_in_repository": "licence"}],
    }  # fmt: skip
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    cases = load_manifest(tmp_path / "manifest.json")["cases"]
    assert [c["id"] for c in cases] == ["cxr_chncxr_0002_1", "cxr_chncxr_0003_0", "cxr_mcucxr_0001_0"]
    assert cases[0]["label"] == {"threshold": 128, "path": "masks/CHNCXR_0002_1.png",
                                 "sha256": sha256_of(fetched / "masks" / "CHNCXR_0002_1.png")}  # fmt: skip

    (fetched / "cxr" / "CHNCXR_0003_0.png").unlink()  # one case not fetched
    prepared = prepare_real([tmp_path / "fetched"], tmp_path / "out", tmp_path / "manifest.json")
    assert sorted(prepared.found) == ["cxr_chncxr_0002_1", "cxr_mcucxr_0001_0"]
    assert list(prepared.missing) == ["cxr_chncxr_0003_0"]
    assert len(json.loads(Path(prepared.datalists["chest_xray"]).read_text())["test"]) == 2

    Image.fromarray(np.zeros((6, 8), np.uint8)).save(fetched / "masks" / "MCUCXR_0001_0.png")  # changed
    with pytest.raises(DataError, match=r"masks/MCUCXR_0001_0.png: sha256 \w+ differs"):
        prepare_real([tmp_path / "fetched"], tmp_path / "out", tmp_path / "manifest.json")

    (tmp_path / "checksums" / "src.sha256").write_text("not a checksum line\n")
    with pytest.raises(DataError, match=r"src.sha256:1: expected '<sha256>  <path>'"):
        load_manifest(tmp_path / "manifest.json")


def test_a_collection_of_radiographs_with_findings_and_no_masks(tmp_path):
    """A collection with a findings CSV: one case per listed image with a finding, the classifier's class for it
    (null: none), in the datalist's ``findings`` section; a finding the manifest does not map is refused."""
    from PIL import Image

    fetched = tmp_path / "fetched" / "images"
    fetched.mkdir(parents=True)
    lines = []
    for name in ("COVID-00001.jpg", "COVID-00002.png", "COVID-00003.png"):
        Image.fromarray(np.full((6, 8), 90, np.uint8)).save(fetched / name)
        lines.append(f"{sha256_of(fetched / name)}  images/{name}")
    (tmp_path / "checksums").mkdir()
    (tmp_path / "checksums" / "f.sha256").write_text("\n".join(lines) + "\n")
    findings = "path,finding,view\nimages/COVID-00001.jpg,COVID-19,PA\nimages/COVID-00003.png,Pneumonia,\n"
    (tmp_path / "checksums" / "f.csv").write_text(findings)  # COVID-00002 has no finding: no case
    manifest = {
        "sources": {"f": {"repository": "https://example.org/f", "commit": "0" * 40, "licence": "research use"}},
        "collections": [{"id_prefix": "cxr_f_", "source": "f", "workflow": "chest_xray", "modality": "DX",
                         "checksums": "checksums/f.sha256", "images": "images/", "findings": "checksums/f.csv",
                         "finding_classes": {"COVID-19": "COVID", "Pneumonia": None},
                         "in_repository": None, "why_not_in_repository": "licence"}],
    }  # fmt: skip
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    cases = load_manifest(tmp_path / "manifest.json")["cases"]
    assert [(c["id"], c["finding"], c["class_name"]) for c in cases] == [
        ("cxr_f_covid-00001", "COVID-19", "COVID"),
        ("cxr_f_covid-00003", "Pneumonia", None),
    ]
    assert all("label" not in c and "findings" not in c for c in cases)

    prepared = prepare_real([tmp_path / "fetched"], tmp_path / "out", tmp_path / "manifest.json")
    datalist = json.loads(Path(prepared.datalists["chest_xray"]).read_text())
    assert datalist["test"] == [] and [e["class_name"] for e in datalist["findings"]] == ["COVID", None]
    assert datalist["findings"][0]["image"] == str((fetched / "COVID-00001.jpg").resolve())

    (tmp_path / "checksums" / "f.csv").write_text(findings + "images/COVID-00002.png,Tuberculosis,PA\n")
    with pytest.raises(DataError, match=r"f.csv:4: finding 'Tuberculosis' of 'images/COVID-00002.png' is not in"):
        load_manifest(tmp_path / "manifest.json")


def test_prepare_real_counts_a_collections_cases_in_one_line(tmp_path, capsys):
    assert main(["prepare-real", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "missing  704 cases of the collection rochadiego_cxr.sha256 (cxr_chncxr_0001_0 ...): get them from " \
           "https://github.com/rochadiego/MultiResUNet-lung-segmentation at 234c65b" in out  # fmt: skip
    assert "cxr_mcucxr_0001_0" not in out
