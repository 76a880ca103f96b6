"""The MLflow UI, started the way users start it (``mlflow ui --backend-store-uri sqlite:///...``), shows a finished
training: the runs table with the run, its per-epoch metric charts and its artifacts, in headless Chromium.

MLflow 3.17 opens experiments on its GenAI pages unless the UI is in its "Model training" mode, which the
``workflowType=machine_learning`` query selects (the README's link has it); the experiments also carry the
``mlflow.experimentKind`` tag that earlier MLflow 3 releases read instead.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest

from pipelines.training.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG

from .test_reports_bundle import _chromium, needs_chromium

pytestmark = [pytest.mark.slow, needs_chromium]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _visible_text(html: str) -> str:
    html = re.sub(r"<script.*?</script>|<style.*?</style>", " ", html, flags=re.S)
    return "\n".join(line.strip() for line in re.sub(r"<[^>]+>", "\n", html).splitlines() if line.strip())


@pytest.fixture
def mlflow_ui(trained, tmp_path):
    """``(base URL, tracking URI)`` of a real ``mlflow ui`` process on the trained run's database."""
    uri = f"sqlite:///{Path(trained['output_dir']) / 'mlflow.db'}"
    port = _free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    log = open(tmp_path / "mlflow_ui.log", "w")
    server = subprocess.Popen(
        [str(mlflow_bin), "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (tmp_path / "mlflow_ui.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "mlflow ui did not answer in 120 s"
            time.sleep(1)
        yield base, uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()


def test_the_ui_shows_the_runs_table_metric_charts_and_artifacts(mlflow_ui, tmp_path):
    base, uri = mlflow_ui
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("test_liver")
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    (run,) = client.search_runs([experiment.experiment_id])
    page = f"{base}/#/experiments/{experiment.experiment_id}"
    query = "?workflowType=machine_learning"

    def lines(route: str, expected: set[str]) -> set[str]:
        """The page's visible lines, loaded again (up to 3 times) while the expected ones have not rendered: the
        charts draw after their data arrive, which a busy machine can delay past Chromium's time budget."""
        for attempt in range(3):
            home = tmp_path / f"browser_{len(list(tmp_path.glob('browser_*')))}_{attempt}"  # a new profile each time
            args = ["--run-all-compositor-stages-before-draw", "--window-size=1400,4000", "--virtual-time-budget=60000"]
            args.append("--dump-dom")  # a tall window: charts below the fold are not drawn
            dom = _chromium([*args, f"{page}{route}{query}"], home).stdout
            found = set(_visible_text(dom).splitlines())
            if expected <= found:
                break
        return found

    assert {"Run Name", run.info.run_name} <= lines("", {run.info.run_name})
    charts = {"train_loss", "val_mean_dice"}
    assert {"Model metrics", *charts} <= lines(f"/runs/{run.info.run_id}/model-metrics", charts)
    artifacts = {"model.pt", "configs", "README.md"}  # README.md: the model card
    assert artifacts <= lines(f"/runs/{run.info.run_id}/artifacts", artifacts)
