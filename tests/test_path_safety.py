"""Datalist paths cannot leave the dataset root unless the user allows it."""

import json
import os

import pytest

from pipelines.validation.errors import DataError
from pipelines.validation.path_safety import check_datalist_paths, is_inside, resolve_inside


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "dataset"
    (root / "imagesTr").mkdir(parents=True)
    (root / "imagesTr" / "a.nii.gz").write_bytes(b"")
    (tmp_path / "secret.nii.gz").write_bytes(b"")
    return root


@pytest.mark.parametrize("path", ["imagesTr/a.nii.gz", "./imagesTr/../imagesTr/a.nii.gz", "imagesTr/missing.nii.gz"])
def test_relative_paths_inside_resolve_against_the_root(root, path):
    assert resolve_inside(root, path) == root / os.path.normpath(path)


def test_absolute_path_inside_is_accepted(root):
    assert resolve_inside(root, str(root / "imagesTr" / "a.nii.gz")) == root / "imagesTr" / "a.nii.gz"


@pytest.mark.parametrize(
    "path", ["../secret.nii.gz", "imagesTr/../../secret.nii.gz", "/etc/passwd", "..", "../dataset2/x"]
)
def test_paths_that_escape_are_refused_naming_the_entry(root, path):
    with pytest.raises(DataError, match="outside the dataset root") as err:
        resolve_inside(root, path, entry="list.json: training[3] image")
    assert err.value.problems[0].startswith(f"list.json: training[3] image: {path}")
    assert "allow_outside_root" in str(err.value)


def test_allow_outside_accepts_and_normalises(root):
    assert resolve_inside(root, "../secret.nii.gz", allow_outside=True) == root.parent / "secret.nii.gz"


def test_symbolic_link_out_of_the_root_is_refused(root):
    (root / "imagesTr" / "link.nii.gz").symlink_to(root.parent / "secret.nii.gz")
    with pytest.raises(DataError, match="through a symbolic link"):
        resolve_inside(root, "imagesTr/link.nii.gz")
    assert resolve_inside(root, "imagesTr/link.nii.gz", allow_outside=True) == root / "imagesTr" / "link.nii.gz"


def test_root_reached_through_a_link_is_fine(root, tmp_path):
    (tmp_path / "alias").symlink_to(root)
    assert resolve_inside(tmp_path / "alias", "imagesTr/a.nii.gz") == tmp_path / "alias" / "imagesTr" / "a.nii.gz"


@pytest.mark.parametrize("path", ["", None, 3, "a\0b.nii.gz"])
def test_values_that_are_not_paths(root, path):
    with pytest.raises(DataError, match="path"):
        resolve_inside(root, path, entry="e")


def test_is_inside_is_not_fooled_by_a_common_prefix(tmp_path):
    assert is_inside(str(tmp_path / "data" / "x"), str(tmp_path / "data"))
    assert not is_inside(str(tmp_path / "data2" / "x"), str(tmp_path / "data"))


def test_check_datalist_reports_every_escaping_entry(root):
    datalist = {
        "training": [
            {"image": "imagesTr/a.nii.gz", "label": "../secret.nii.gz"},
            {"image": ["imagesTr/a.nii.gz", "/etc/hosts"], "label": "imagesTr/a.nii.gz"},
            {"image": 7},  # not a path: validate_datalist's business
        ],
        "test": ["../../x.nii.gz"],
    }
    path = root / "datalist.json"
    path.write_text(json.dumps(datalist))
    with pytest.raises(DataError) as err:
        check_datalist_paths(path)
    problems = err.value.problems
    assert len(problems) == 3
    assert problems[0].startswith(f"{path}: training[0] label: ../secret.nii.gz")
    assert problems[1].startswith(f"{path}: training[1] image: /etc/hosts")
    assert problems[2].startswith(f"{path}: test[0] image: ../../x.nii.gz")
    check_datalist_paths(path, allow_outside=True)
    check_datalist_paths(datalist, base_dir=root, keys=("validation",))  # a missing section is not this check's


def test_default_phantom_datalists_stay_inside_their_roots():
    from pipelines.workflows import REPO_ROOT, WORKFLOWS

    for workflow in WORKFLOWS.values():
        check_datalist_paths(REPO_ROOT / workflow.default_datalist, base_dir=REPO_ROOT / workflow.default_data)


@pytest.mark.parametrize("flag", ["false", "False", "no", "0", 0, False])
def test_a_false_flag_given_as_text_still_refuses(root, flag):
    with pytest.raises(DataError, match="outside the dataset root"):
        resolve_inside(root, "../secret.nii.gz", allow_outside=flag)


@pytest.mark.parametrize("flag", ["maybe", 2, None])
def test_a_flag_that_is_neither_true_nor_false_is_an_error(root, flag):
    with pytest.raises(ValueError, match="allow_outside_root must be true or false"):
        check_datalist_paths({"training": []}, base_dir=root, allow_outside=flag)


def test_unreadable_datalist_is_left_to_validate_datalist(tmp_path):
    check_datalist_paths(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{not json")
    check_datalist_paths(tmp_path / "broken.json", base_dir=tmp_path)
