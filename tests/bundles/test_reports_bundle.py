"""Reports of the liver bundle on tiny phantoms: overlays, report.html and training curves, in MLflow, and the page
as headless Chromium renders it."""

import csv
import os
import re
import shutil
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import pytest
from PIL import Image

from .conftest import run_liver_stage

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK), reason=f"headless Chromium not installed ({CHROMIUM} missing)"
)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
# Appended to a copy of the page: after the load event, each <img> records whether it decoded, and its width.
IMAGE_CHECK = (
    "<script>window.addEventListener('load', () => { for (const img of document.images) {"
    " img.dataset.loaded = String(img.complete && img.naturalWidth > 0); img.dataset.width = String(img.naturalWidth);"
    " } document.body.dataset.checked = 'yes'; });</script>"
)


@pytest.fixture(scope="module")
def evaluated(trained):
    """The trained tiny liver bundle, evaluated once; returns its overrides."""
    run_liver_stage("evaluate", trained)
    return trained


def _client(overrides: dict) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{Path(overrides['output_dir']) / 'mlflow.db'}")


def _run(overrides: dict, prefix: str):
    client = _client(overrides)
    experiment = client.get_experiment_by_name(overrides["experiment_name"])
    (run,) = [r for r in client.search_runs([experiment.experiment_id]) if r.info.run_name.startswith(prefix)]
    return run


def _test_cases(eval_dir: Path) -> list[str]:
    with open(eval_dir / "test_mean_dice_raw.csv") as f:
        return [re.sub(r"\.nii(\.gz)?$", "", Path(row["filename"]).name) for row in csv.DictReader(f)]


def test_evaluate_writes_the_report_and_overlays_and_logs_them(evaluated):
    eval_dir = Path(evaluated["output_dir"]) / "eval"
    cases = _test_cases(eval_dir)
    page = (eval_dir / "report.html").read_text(encoding="utf-8")
    for case in cases:
        with Image.open(eval_dir / "overlays" / f"{case}.png") as png:
            assert png.format == "PNG" and png.size == (4 * 250, 830)  # 4 slices of 2.5 in, 3 rows + legend
        assert f'src="overlays/{case}.png"' in page and f">{case}</a>" in page
    for header in ("Dice", "HD95 (mm)", "Volume predicted (mL)", "Volume ground truth (mL)", "tumour"):
        assert f">{header}</th>" in page
    assert "mean of 1 case" in page
    client = _client(evaluated)
    run_id = _run(evaluated, "evaluate_").info.run_id
    assert "eval/report.html" in [a.path for a in client.list_artifacts(run_id, "eval")]
    assert [a.path for a in client.list_artifacts(run_id, "eval/overlays")] == [f"eval/overlays/{c}.png" for c in cases]


def test_training_writes_its_curves_and_logs_them_to_its_run(evaluated):
    with Image.open(Path(evaluated["output_dir"]) / "training_curves.png") as png:
        assert png.format == "PNG" and png.size == (1200, 380)
    run = _run(evaluated, "train_")
    assert "training_curves.png" in [a.path for a in _client(evaluated).list_artifacts(run.info.run_id)]


def _chromium(args: list[str], home: Path) -> subprocess.CompletedProcess:
    profile = home / "chromium-profile"
    command = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    env = {**os.environ, "HOME": str(home)}
    return subprocess.run(
        command, capture_output=True, encoding="utf-8", errors="replace", timeout=120, env=env, check=True
    )  # utf-8 whatever the locale: CI runs with none (ASCII)


@needs_chromium
def test_chromium_renders_the_table_and_loads_every_overlay(evaluated, tmp_path):
    copy = tmp_path / "eval"
    shutil.copytree(Path(evaluated["output_dir"]) / "eval", copy)
    page = (copy / "report.html").read_text(encoding="utf-8")
    (copy / "check.html").write_text(page.replace("</body>", IMAGE_CHECK + "</body>"), encoding="utf-8")
    dom = _chromium(["--dump-dom", (copy / "check.html").as_uri()], tmp_path).stdout
    assert 'data-checked="yes"' in dom, dom[-2000:]
    table = dom.split('<table id="metrics">')[1].split("</table>")[0]
    assert table.count('class="case"') == len(_test_cases(copy)) + 1  # the cases and the mean row
    images = re.findall(r"<img [^>]*>", dom)
    assert len(images) == len(_test_cases(copy))
    for img in images:
        assert 'data-loaded="true"' in img and 'data-width="1000"' in img, img


@needs_chromium
def test_chromium_screenshot_of_the_report_is_not_blank(evaluated, tmp_path):
    shot = tmp_path / "report.png"
    report = Path(evaluated["output_dir"]) / "eval" / "report.html"
    _chromium([f"--screenshot={shot}", "--window-size=1200,1600", report.as_uri()], tmp_path)
    with Image.open(shot) as png:
        assert png.size == (1200, 1600)
        grey = np.asarray(png.convert("L"), dtype=np.float32)
    assert grey.std() > 20  # text, table and overlays, not an empty page
    assert (grey[600:, :] < 50).mean() > 0.05  # the overlays' dark CT background below the table
