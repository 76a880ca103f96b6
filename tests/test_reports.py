"""Evaluation report: volumes in mL, RAS reordering, the HTML page (escaping, content) and the ignite handler."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from PIL import Image

from pipelines.reports.html_report import CaseResult, Column, read_classifier_results, render_report_html
from pipelines.reports.segmentation_reports import SegmentationReportHandler, class_volumes_ml, to_ras, voxel_volume_mm3

AFFINE = np.diag([0.8, 0.8, 2.5, 1.0])  # 1.6 mm³ per voxel


def test_volumes_in_ml_from_the_voxel_spacing():
    class_map = np.zeros((10, 10, 10), np.uint8)
    class_map[:5, :5, :4] = 1  # 100 voxels
    class_map[0, 0, 0] = 2  # 1 voxel (taken from class 1: 99 left)
    voxel = voxel_volume_mm3(AFFINE)
    assert voxel == pytest.approx(1.6)
    # 99 x 1.6 mm³ = 158.4 mm³ = 0.1584 mL; 1 x 1.6 mm³ = 0.0016 mL; the rest is background
    assert class_volumes_ml(class_map, 3, voxel) == pytest.approx([(1000 - 100) * 0.0016, 0.1584, 0.0016])
    assert class_volumes_ml(np.zeros((2, 2, 2)), 4, 1000.0) == [8.0, 0.0, 0.0, 0.0]  # absent classes: 0 mL


def test_voxel_volume_of_a_flipped_oblique_grid():
    c, s = math.cos(0.3), math.sin(0.3)
    rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([-2.0, 0.5, 3.0])
    assert voxel_volume_mm3(affine) == pytest.approx(3.0)


def test_class_volumes_reject_values_outside_the_classes():
    with pytest.raises(ValueError, match="0..1"):
        class_volumes_ml(np.array([0, 1, 2]), 2, 1.0)


def test_to_ras_reorders_an_lps_volume_and_its_spacing():
    lps = np.diag([-0.5, -0.7, 2.0, 1.0])  # x to the left, y posterior
    volume = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    ras, spacing = to_ras(volume, lps)
    np.testing.assert_array_equal(ras, volume[::-1, ::-1, :])
    np.testing.assert_allclose(spacing, [0.5, 0.7, 2.0])
    swapped = np.array([[0, 1.5, 0, 0], [1.0, 0, 0, 0], [0, 0, 3.0, 0], [0, 0, 0, 1]])  # array axis 0 is world y
    ras, spacing = to_ras(volume, swapped)
    assert ras.shape == (3, 2, 4)
    np.testing.assert_allclose(spacing, [1.5, 1.0, 3.0])


COLUMNS = [Column("Dice", "liver"), Column("Dice", "tumour"), Column("Volume (mL)", "tumour", digits=2)]


def _cases() -> list[CaseResult]:
    return [
        CaseResult(
            "a<b>&\"c'", "overlays/a_b_c.png", {"Dice/liver": 0.9, "Dice/tumour": 0.5, "Volume (mL)/tumour": 1.0}
        ),
        CaseResult("case 2", None, {"Dice/liver": 0.7, "Dice/tumour": float("nan"), "Volume (mL)/tumour": 2.5}),
    ]


def test_html_escapes_every_text_and_quotes_links():
    page = render_report_html(
        "<script>alert(1)</script>", COLUMNS, _cases(), notes=["x < y"], classifier=None
    ) + render_report_html("t", [Column("<b>", "<i>")], [CaseResult("n", "overlays/a b#?.png")])
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a&lt;b&gt;&amp;&quot;c&#x27;" in page and "x &lt; y" in page
    assert "<th>&lt;i&gt;</th>" in page and '<th colspan="1">&lt;b&gt;</th>' in page
    assert 'src="overlays/a%20b%23%3F.png"' in page


def test_html_table_has_a_row_per_case_and_a_mean_of_the_finite_values():
    page = render_report_html("Evaluation", COLUMNS, _cases())
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page
    assert '<th colspan="2">Dice</th>' in page and '<th colspan="1">Volume (mL)</th>' in page
    rows = page.split('<table id="metrics">')[1].split("</table>")[0].split("<tr")
    case_rows = [r for r in rows if 'class="case"' in r]
    assert len(case_rows) == 3
    assert "<td>0.900</td>" in case_rows[0] and "<td>1.00</td>" in case_rows[0]
    assert "<td></td>" in case_rows[1]  # NaN: empty cell
    mean = case_rows[2]
    assert "mean of 2 cases" in mean and "<td>0.800</td>" in mean and "<td>0.500</td>" in mean
    assert "<td>1.75</td>" in mean
    # only the case with an overlay has a figure, linked from its row
    assert page.count("<img ") == 1 and 'href="#case-0"' in page and 'id="case-0"' in page
    assert 'loading="lazy"' not in page  # every image loads with the page


def test_classifier_results_are_included_when_present(tmp_path):
    assert read_classifier_results(tmp_path) is None and read_classifier_results(None) is None
    metrics = {"accuracy": 0.9, "f1": 0.8, "roc_auc": float("nan"), "tp": 8, "fp": 1, "tn": 10, "fn": 3}
    (tmp_path / "classification_metrics.json").write_text(json.dumps(metrics))
    classifier = read_classifier_results(tmp_path)
    assert classifier["metrics"]["tp"] == 8 and classifier["source"].endswith("classification_metrics.json")
    page = render_report_html("t", COLUMNS, _cases(), classifier, classifier_class_names=["no <liver>", "liver"])
    table = page.split('<table id="confusion-matrix">')[1].split("</table>")[0]
    assert "<th>no &lt;liver&gt;</th><td>10</td><td>1</td>" in table  # true negative row: tn, fp
    assert "<th>liver</th><td>3</td><td>8</td>" in table  # true positive row: fn, tp
    assert "<th>accuracy</th><td>0.900</td>" in page and "<th>roc_auc</th><td></td>" in page
    (tmp_path / "classification_metrics.json").write_text("{not json")
    assert read_classifier_results(tmp_path) is None


def test_multiclass_classifier_results_have_per_class_rows_and_a_k_by_k_matrix():
    names = ["COVID", "Normal", "<Viral>"]
    metrics = {
        "accuracy": 0.6,
        "macro_f1": 0.5,
        "class_names": names,
        "per_class": {n: {"precision": 0.5, "recall": 0.25, "f1": 0.33, "support": 4} for n in names},
        "confusion_matrix": [[1, 2, 1], [0, 4, 0], [3, 0, 1]],
    }
    page = render_report_html("t", COLUMNS, _cases(), {"metrics": metrics}, classifier_title="Radiograph classifier")
    assert "<h2>Radiograph classifier</h2>" in page and "<th>macro_f1</th><td>0.500</td>" in page
    per_class = page.split('<table id="classifier-per-class">')[1].split("</table>")[0]
    assert per_class.count("<tr>") == 1 + 3 and '<td class="case">&lt;Viral&gt;</td><td>0.500</td>' in per_class
    matrix = page.split('<table id="confusion-matrix">')[1].split("</table>")[0]
    assert "<th>&lt;Viral&gt;</th><td>3</td><td>0</td><td>1</td>" in matrix  # the true class's row
    assert "tp" not in metrics and "<th>true \\ predicted</th><th>COVID</th>" in matrix


def _one_hot(class_map: np.ndarray, num_classes: int, affine: np.ndarray) -> MetaTensor:
    onehot = torch.nn.functional.one_hot(torch.as_tensor(class_map, dtype=torch.long), num_classes)
    return MetaTensor(onehot.permute(3, 0, 1, 2).float(), affine=torch.as_tensor(affine))


def test_handler_writes_overlays_volumes_and_the_report(tmp_path):
    names = ["background", "liver", "tumour"]
    label = np.zeros((12, 10, 8), np.uint8)
    label[2:8, 2:8, 2:6] = 1  # 144 voxels
    label[4:6, 4:6, 3] = 2  # 4 of them tumour: liver 140
    pred = np.zeros_like(label)
    pred[2:8, 2:8, 2:5] = 1  # 108 voxels, no tumour
    image = MetaTensor(torch.rand(2, 12, 10, 8), affine=torch.as_tensor(AFFINE))
    image.meta["filename_or_obj"] = "/data/imagesTs/ct <1>.nii.gz"
    item = {"image": image, "label": _one_hot(label, 3, AFFINE), "pred": _one_hot(pred, 3, AFFINE)}
    details = {"test_mean_dice": torch.tensor([[0.75, 0.0]]), "test_hd95_mm": torch.tensor([[2.5, float("nan")]])}
    engine = SimpleNamespace(state=SimpleNamespace(output=[item], metric_details=details))
    handler = SegmentationReportHandler(
        tmp_path, names, pathology_classes=[2], metrics={"test_mean_dice": "Dice", "test_hd95_mm": "HD95 (mm)"},
        channel=1, channel_names=["T1", "FLAIR"], num_slices=2,
    )  # fmt: skip
    (tmp_path / "overlays").mkdir()
    (tmp_path / "overlays" / "earlier_case.png").write_bytes(b"")
    handler.reset()
    handler.collect(engine)
    assert [p.name for p in (tmp_path / "overlays").iterdir()] == ["ct_1_.png"]
    (case,) = handler.cases
    assert case.name == "ct <1>" and case.overlay == "overlays/ct_1_.png"
    # 1.6 mm³ voxels: liver 140 -> 0.224 mL, tumour 4 -> 0.0064 mL; predicted liver 108 -> 0.1728 mL
    assert case.values["Volume ground truth (mL)/liver"] == pytest.approx(0.224)
    assert case.values["Volume ground truth (mL)/tumour"] == pytest.approx(0.0064)
    assert case.values["Volume predicted (mL)/liver"] == pytest.approx(0.1728)
    assert case.values["Volume predicted (mL)/tumour"] == 0.0
    with Image.open(tmp_path / "overlays" / "ct_1_.png") as png:
        assert png.size == (2 * 250, 830)
    other = dict(item, image=image.clone())
    other["image"].meta["filename_or_obj"] = "/data/imagesTs/ct_1_.nii.gz"  # another name, the same file name
    handler.collect(SimpleNamespace(state=SimpleNamespace(output=[other])))
    assert [c.overlay for c in handler.cases] == ["overlays/ct_1_.png", "overlays/ct_1__1.png"]
    handler.cases.pop()
    path = handler.write(engine)
    page = path.read_text(encoding="utf-8")
    assert path == tmp_path / "report.html" and "ct &lt;1&gt;" in page
    assert "<td>0.750</td>" in page and "<td>2.500</td>" in page and "<td>0.22</td>" in page
    assert 'src="overlays/ct_1_.png"' in page


def test_handler_needs_the_preprocessing_when_the_image_is_on_another_grid(tmp_path):
    label = _one_hot(np.zeros((6, 6, 4), np.uint8), 2, AFFINE)
    image = MetaTensor(torch.rand(1, 5, 6, 4), affine=torch.as_tensor(AFFINE))
    engine = SimpleNamespace(state=SimpleNamespace(output=[{"image": image, "label": label, "pred": label}]))
    handler = SegmentationReportHandler(tmp_path, ["background", "lesion"])
    with pytest.raises(ValueError, match="preprocessing"):
        handler.collect(engine)
    with pytest.raises(ValueError, match="pathology_classes"):
        SegmentationReportHandler(tmp_path, ["background", "lesion"], pathology_classes=[0])
