"""The real MONAI Label server on phantom studies, called the way 3D Slicer's MONAI Label module calls it.

Needs ``.venv-monailabel`` (``bash scripts/setup_monailabel_env.sh``); skipped without it. Run with
``pytest -m monailabel tests/monailabel``. The server starts through ``scripts/start_monailabel.sh`` on a free port
of 127.0.0.1, from a copy of the app (MONAI Label writes logs/ into the app folder), with the network shrunk by
``--conf overrides`` and checkpoints in a temporary ``--conf ckpt_root``; it is stopped by its PID.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipelines.phantoms.brain_mr import make_brain_mri_phantom
from pipelines.phantoms.liver_ct import write_liver_phantom_task
from pipelines.workflows import REPO_ROOT

VENV = REPO_ROOT / ".venv-monailabel"
APP = REPO_ROOT / "apps" / "radcascade_label"

pytestmark = [
    pytest.mark.monailabel,
    pytest.mark.skipif(
        not (VENV / "bin" / "monailabel").is_file() and not os.environ.get("CI"),
        reason="no .venv-monailabel: create it with bash scripts/setup_monailabel_env.sh to test the MONAI Label app "
        "(CI builds it, and fails without it)",
    ),
]

# The model-zoo smoke-test recipe: a network and patches small enough to train one epoch in seconds on a CPU.
SHRINK = {
    "channels": [4, 8, 16],
    "strides": [2, 2],
    "num_res_units": 1,
    "roi_size": [32, 32, 16],
    "pixdim": [4.0, 4.0, 6.0],
    "classifier_image_size": [32, 32],
    "sw_batch_size": 2,
}
# Per request only (the training run), as a Slicer user or a script would send them.
TRAIN_OVERRIDES = {"batch_size": 1, "num_samples": 1, "cache_rate": 0.0, "num_workers": 0, "slices_per_volume": 4}
LIVER_CLASSES = {"liver": 1, "tumour": 2}
# A real abdomen-pelvis CT (TotalSegmentator's example, Apache-2.0; provenance in its README)
REAL_CT = REPO_ROOT / "tests" / "data" / "real" / "totalsegmentator" / "example_ct.nii.gz"
START_TIMEOUT = 240.0
TRAIN_TIMEOUT = 600.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _multipart(fields: dict[str, str], files: dict[str, Path]) -> tuple[bytes, str]:
    """A multipart/form-data body, as the Slicer module encodes its requests."""
    boundary = uuid.uuid4().hex
    body = bytearray()
    for name, value in fields.items():
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    for name, path in files.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{path.name}"\r\n'
        body += f"{head}Content-Type: application/octet-stream\r\n\r\n".encode() + path.read_bytes() + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return bytes(body), f"multipart/form-data; boundary={boundary}"


class Server:
    """A MONAI Label server process and the HTTP calls of Slicer's MONAI Label client."""

    def __init__(self, url: str, process, log: Path, studies: Path, ckpt_root: Path, output_root: Path) -> None:
        self.url, self.process, self.log = url, process, log
        self.studies, self.ckpt_root, self.output_root = studies, ckpt_root, output_root

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None):
        """``(status, content type, body bytes)``; HTTP errors are returned, not raised."""
        headers = {"content-type": content_type} if content_type else {}
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=300) as response:
                return response.status, response.headers.get("content-type", ""), response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("content-type", ""), e.read()

    def json(self, method: str, path: str, payload: dict | None = None):
        body = json.dumps(payload).encode() if payload is not None else None
        status, _, data = self.request(method, path, body, "application/json" if body else None)
        assert status == 200, f"{method} {path}: HTTP {status}: {data[:2000]!r}\n{self.tail()}"
        return json.loads(data)

    def infer(self, model: str, image: str) -> tuple[int, dict | str, bytes | None]:
        """``POST /infer/<model>?image=<id>`` with a ``params`` form field, as ``MONAILabelClient.infer`` sends it.

        Returns ``(status, params, label file bytes)``; on an error ``params`` is the response text.
        """
        body, content_type = _multipart({"params": "{}"}, {})
        query = urllib.parse.urlencode({"image": image})
        status, response_type, data = self.request("POST", f"/infer/{model}?{query}", body, content_type)
        if status != 200:
            return status, data.decode(errors="replace"), None
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {response_type}\r\n\r\n".encode() + data
        )
        params, image_bytes = None, None
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "params":
                params = json.loads(part.get_content())
            else:
                image_bytes = part.get_payload(decode=True)
        return status, params, image_bytes

    def tail(self, chars: int = 6000) -> str:
        return "server log tail:\n" + self.log.read_text(errors="replace")[-chars:] if self.log.is_file() else ""


def _write_studies(root: Path) -> Path:
    """The studies folder: 4 liver CT phantoms (3 with a final label) and 3 four-channel brain MRI phantoms as 4D
    NIfTI (2 with a final label, BraTS values 0, 1, 2, 4); the liver task beside it keeps the true labels."""
    task = write_liver_phantom_task(root / "task", num_cases=4, seed=3, shape=(64, 64, 24), spacing=(4.0, 4.0, 6.0))
    studies = root / "studies"
    labels = studies / "labels" / "final"
    labels.mkdir(parents=True)
    for i in range(4):
        shutil.copy(task / "imagesTr" / f"liver_{i}.nii.gz", studies / f"liver_{i}.nii.gz")
        if i < 3:
            shutil.copy(task / "labelsTr" / f"liver_{i}.nii.gz", labels / f"liver_{i}.nii.gz")
    for i in range(3):
        channels, label, affine = make_brain_mri_phantom(seed=i, spacing=4.0, tumour=True)
        volume = np.stack([channels[k] for k in ("flair", "t1", "t1ce", "t2")], axis=-1).astype(np.float32)
        nib.save(nib.Nifti1Image(volume, affine), studies / f"brain_{i}.nii.gz")
        if i > 0:
            nib.save(nib.Nifti1Image(label, affine), labels / f"brain_{i}.nii.gz")
    return studies


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The server from ``scripts/start_monailabel.sh`` serving liver, lung and brain; stopped by PID afterwards."""
    root = tmp_path_factory.mktemp("monailabel")
    studies = _write_studies(root)
    ckpt_root, output_root = root / "checkpoints", root / "runs"
    app = root / "app"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("logs", "model", "bin", "__pycache__"))
    port = _free_port()
    env = {
        **os.environ,
        "MONAILABEL_PORT": str(port),
        "RADCASCADE_LABEL_APP": str(app),
        "MONAI_LABEL_SESSION_PATH": str(root / "sessions"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    env.pop("PYTHONPATH", None)
    command = ["bash", str(REPO_ROOT / "scripts" / "start_monailabel.sh"), str(studies)]
    for key, value in {
        "models": "liver,lung,brain",
        "ckpt_root": str(ckpt_root),
        "output_root": str(output_root),
        "overrides": json.dumps(SHRINK),
        "device": "cpu",
    }.items():
        command += ["--conf", key, value]
    log = root / "server.log"
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root)
    srv = Server(f"http://127.0.0.1:{port}", process, log, studies, ckpt_root, output_root)
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server exited with code {process.returncode}\n{srv.tail()}")
            if time.perf_counter() - t0 > START_TIMEOUT:
                pytest.fail(f"the server did not answer within {START_TIMEOUT:.0f} s\n{srv.tail()}")
            try:
                if srv.request("GET", "/info/")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(1.0)
        print(f"\nMONAI Label server up in {time.perf_counter() - t0:.1f} s (pid {process.pid})")
        yield srv
    finally:
        process.send_signal(signal.SIGTERM)  # bash exec'd monailabel: this PID is the server
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def _submit_label_as_slicer(server: Server, image_id: str) -> dict:
    """``PUT /datastore/label``: the phantom's label with Slicer's own segment numbering (tumour 1, liver 2)."""
    truth = nib.load(server.studies.parent / "task" / "labelsTr" / f"{image_id}.nii.gz")
    values = np.asarray(truth.dataobj)
    slicer_values = np.select([values == 2, values == 1], [1, 2], 0).astype(np.uint8)
    path = server.studies.parent / f"{image_id}_slicer.nii.gz"
    nib.save(nib.Nifti1Image(slicer_values, truth.affine), path)
    params = {"label_info": [{"name": "tumour", "idx": 1}, {"name": "liver", "idx": 2}]}
    body, content_type = _multipart({"params": json.dumps(params)}, {"label": path})
    query = urllib.parse.urlencode({"image": image_id, "tag": "final"})
    status, _, data = server.request("PUT", f"/datastore/label?{query}", body, content_type)
    assert status == 200, f"PUT /datastore/label: HTTP {status}: {data!r}\n{server.tail()}"
    return json.loads(data)


def _train(server: Server, model: str) -> dict:
    """``POST /train/<model>`` (one short epoch of each stage) and poll ``GET /train/`` until it ends."""
    request = {"max_epochs": 1, "classifier_max_epochs": 1, "val_split": 0.25, "overrides": TRAIN_OVERRIDES}
    t0 = time.perf_counter()
    started = server.json("POST", f"/train/{model}", request)
    while True:
        status = server.json("GET", "/train/")
        if status.get("id") == started["id"] and status["status"] not in ("SUBMITTED", "RUNNING"):
            break
        assert time.perf_counter() - t0 < TRAIN_TIMEOUT, f"training still {status['status']}\n{server.tail()}"
        time.sleep(2.0)
    print(f"\nPOST /train/{model} finished in {time.perf_counter() - t0:.1f} s: {status['status']}")
    assert status["status"] == "DONE", "\n".join(status.get("details", [])) + "\n" + server.tail()
    return status


@pytest.fixture(scope="module")
def trained(server):
    """Submit a label for liver_3 as Slicer does, then train the liver bundle through the server."""
    saved = _submit_label_as_slicer(server, "liver_3")
    return {"saved": saved, "task": _train(server, "liver")}


@pytest.fixture(scope="module")
def trained_brain(server, trained):
    """Train the brain bundle through the server (after the liver: MONAI Label runs one training at a time)."""
    return _train(server, "brain")


def _assert_label_volume(data: bytes, image: Path, allowed: set[int], tmp_path: Path) -> np.ndarray:
    out = tmp_path / "label.nii.gz"
    out.write_bytes(data)
    label, reference = nib.load(out), nib.load(image)
    assert label.shape == reference.shape[:3]
    np.testing.assert_allclose(label.affine, reference.affine, atol=1e-4)
    values = np.asarray(label.dataobj)
    assert set(np.unique(values).tolist()) <= allowed
    return values


def test_info_lists_models_labels_and_trainers(server):
    info = server.json("GET", "/info/")
    assert set(info["models"]) == {"liver", "liver_full", "lung", "lung_full", "brain", "brain_full"}
    assert info["models"]["liver"]["labels"] == LIVER_CLASSES
    assert info["models"]["liver"]["type"] == "segmentation"
    assert info["models"]["liver"]["dimension"] == 3
    assert info["models"]["brain"]["labels"] == {"necrotic core": 1, "oedema": 2, "enhancing tumour": 4}
    assert {"liver", "tumour", "lesion", "oedema"} <= set(info["labels"])
    assert set(info["trainers"]) == {"liver", "lung", "brain"}
    assert info["trainers"]["liver"]["config"]["max_epochs"] == 100
    assert {"random", "first"} <= set(info["strategies"])


def test_datastore_lists_studies_and_final_labels(server):
    datastore = server.json("GET", "/datastore/?output=all")
    objects = datastore["objects"]
    assert set(objects) == {f"liver_{i}" for i in range(4)} | {f"brain_{i}" for i in range(3)}
    for image_id in ("liver_0", "liver_1", "liver_2", "brain_1", "brain_2"):
        assert "final" in objects[image_id]["labels"]
    sample = server.json("POST", "/activelearning/first", {})  # Slicer's "Next Sample"
    assert sample["id"] in {"liver_3", "brain_0"} and os.path.isfile(sample["path"])


def test_infer_without_weights_says_how_to_get_them(server):
    status, text, _ = server.infer("lung", "liver_0")
    assert status == 409
    assert "no trained weights" in text and "POST /train/lung" in text and "ckpt_root" in text


def test_infer_rejects_an_image_with_the_wrong_channels(server):
    status, text, _ = server.infer("brain_full", "liver_0")  # a CT volume to the 4-sequence MRI model
    assert status == 422 and "4-channel" in text and "FLAIR, T1, T1ce, T2" in text


def test_put_label_saves_the_submitted_label(server, trained):
    assert trained["saved"]["image"] == "liver_3"
    label = server.json("GET", "/datastore/?output=all")["objects"]["liver_3"]["labels"]["final"]
    assert label["info"]["label_info"][0] == {"name": "tumour", "idx": 1}
    assert (server.studies / "labels" / "final" / "liver_3.nii.gz").is_file()


def test_train_runs_the_bundle_on_the_datastore_and_writes_checkpoints(server, trained):
    result = trained["task"]
    assert (server.ckpt_root / "liver" / "model.pt").is_file()
    assert (server.ckpt_root / "liver" / "classifier.pt").is_file()
    work = server.output_root / "liver" / "monailabel"
    datalist = json.loads((work / "datalist.json").read_text())
    assert len(datalist["training"]) == 3 and len(datalist["validation"]) == 1  # the brain studies skipped
    # Slicer's numbering (tumour 1, liver 2) was mapped back to the bundle's (liver 1, tumour 2) by segment name
    remapped = np.asarray(nib.load(work / "labels" / "liver_3.nii.gz").dataobj)
    truth = np.asarray(nib.load(server.studies.parent / "task" / "labelsTr" / "liver_3.nii.gz").dataobj)
    np.testing.assert_array_equal(remapped, truth)
    stats = server.json("GET", "/info/")["train_stats"]["liver"]
    assert stats["total_time"] > 0 and stats["epoch"] == stats["total_epochs"] == 1
    assert result["status"] == "DONE"


@pytest.mark.parametrize("model", ["liver", "liver_full"])
def test_infer_returns_a_label_volume_on_the_image_geometry(server, trained, model, tmp_path):
    status, params, data = server.infer(model, "liver_3")
    assert status == 200, f"{params}\n{server.tail()}"
    assert params["label_names"] == LIVER_CLASSES
    assert ("cascade" in params) == (model == "liver")
    if model == "liver":  # the slices the gate kept, and the slabs the segmenter ran on (those grown for context)
        cascade = params["cascade"]
        assert cascade["slices_kept"] == sum(s["stop"] - s["start"] for s in cascade["kept"])
        assert cascade["slices_kept"] <= cascade["slices_segmented"] <= cascade["num_slices"]
    _assert_label_volume(data, server.studies / "liver_3.nii.gz", {0, 1, 2}, tmp_path)


def test_brain_trains_and_serves_four_channel_nifti_studies(server, trained_brain, tmp_path):
    datalist = json.loads((server.output_root / "brain" / "monailabel" / "datalist.json").read_text())
    entries = datalist["training"] + datalist["validation"]
    assert len(entries) == 2 and all(len(e["image"]) == 4 for e in entries)  # one file per sequence
    assert (server.ckpt_root / "brain" / "classifier.pt").is_file()
    for model in ("brain", "brain_full"):
        status, params, data = server.infer(model, "brain_0")
        assert status == 200, f"{params}\n{server.tail()}"
        assert params["label_names"] == {"necrotic core": 1, "oedema": 2, "enhancing tumour": 4}
        _assert_label_volume(data, server.studies / "brain_0.nii.gz", {0, 1, 2, 4}, tmp_path)


def test_brain_serves_a_study_with_a_skull_and_two_sequences(server, trained_brain, tmp_path):
    """A clinical-style study (skull, FLAIR and T1ce only, T1 and T2 channels of zeros as prepare_studies.py
    writes them), uploaded as Slicer does: segmented, and the response says what was used."""
    from pipelines.phantoms.brain_mr_head import add_head

    channels, label, affine = make_brain_mri_phantom(seed=11, spacing=4.0, tumour=True)
    head = add_head({k: channels[k] for k in ("flair", "t1ce")}, label, affine, seed=11)
    zeros = np.zeros_like(head.channels["flair"])
    volume = np.stack([head.channels["flair"], zeros, head.channels["t1ce"], zeros], axis=-1)
    study = tmp_path / "clinic_head.nii.gz"
    nib.save(nib.Nifti1Image(volume, head.affine), study)
    body, content_type = _multipart({"params": "{}"}, {"file": study})
    status, _, data = server.request("PUT", "/datastore/?image=clinic_head", body, content_type)
    assert status == 200, f"PUT /datastore: HTTP {status}: {data[:2000]!r}\n{server.tail()}"
    status, params, data = server.infer("brain", "clinic_head")
    assert status == 200, f"{params}\n{server.tail()}"
    assert params["input"] == {"sequences_used": "FLAIR+T1ce", "brain_extraction": "extracted"}
    _assert_label_volume(data, study, {0, 1, 2, 4}, tmp_path)


def test_a_real_ct_uploaded_as_slicer_does_gets_a_liver_mask_on_its_grid(server, trained, trained_brain, tmp_path):
    """``PUT /datastore/?image=<id>`` with the file (``MONAILabelClient.upload_image``), then ``POST /infer/liver``
    on it: the mask is a NIfTI label map on the real scan's own grid, which Slicer loads as a segmentation."""
    body, content_type = _multipart({"params": "{}"}, {"file": REAL_CT})
    status, _, data = server.request("PUT", "/datastore/?image=real_ct", body, content_type)
    assert status == 200, f"PUT /datastore: HTTP {status}: {data[:2000]!r}\n{server.tail()}"
    assert "real_ct" in server.json("GET", "/datastore/?output=all")["objects"]
    for model in ("liver", "liver_full"):
        status, params, data = server.infer(model, "real_ct")
        assert status == 200, f"{params}\n{server.tail()}"
        assert params["label_names"] == LIVER_CLASSES
        _assert_label_volume(data, REAL_CT, {0, 1, 2}, tmp_path)


def _write_random_weights(server: Server, workflow: str) -> None:
    """``model.pt`` and ``classifier.pt`` for ``workflow``'s networks (shrunk as the server's), freshly initialised:
    enough to check the serving path, not the accuracy. Written to a temporary name, then renamed."""
    import torch

    from pipelines.workflows import get_workflow

    parser = get_workflow(workflow).config_parser("inference", dict(SHRINK))
    folder = server.ckpt_root / workflow
    folder.mkdir(parents=True, exist_ok=True)
    for name, network in (("model.pt", "network_def"), ("classifier.pt", "classifier_def")):
        torch.save(parser.get_parsed_content(network).state_dict(), folder / f"{name}.part")
        os.replace(folder / f"{name}.part", folder / name)


def test_lung_serves_a_ct_volume_on_its_geometry(server, tmp_path):
    """The lung models (weights written here, after the 409 test above) return a lesion mask on the CT's grid."""
    _write_random_weights(server, "lung")
    for model in ("lung", "lung_full"):
        status, params, data = server.infer(model, "liver_0")
        assert status == 200, f"{params}\n{server.tail()}"
        assert params["label_names"] == {"lesion": 1}
        _assert_label_volume(data, server.studies / "liver_0.nii.gz", {0, 1}, tmp_path)


def _assert_refused(response, status: int, *phrases: str) -> str:
    code, _, data = response
    text = data.decode(errors="replace")
    assert code == status, text
    reason = json.loads(text)["detail"]
    assert "\n" not in reason and "Traceback" not in reason
    for phrase in phrases:
        assert phrase in reason, reason
    return reason


def test_bad_requests_get_a_4xx_with_one_line_and_the_server_keeps_serving(server, tmp_path):
    body, content_type = _multipart({"params": "{}"}, {})
    _assert_refused(server.request("POST", "/infer/kidney?image=liver_0", body, content_type), 404, "'kidney'", "liver")
    _assert_refused(server.request("POST", "/infer/liver?image=nobody", body, content_type), 404, "'nobody'")

    notes = tmp_path / "notes.nii.gz"
    notes.write_text("minutes of the tumour board")
    body, content_type = _multipart({"params": "{}"}, {"file": notes})
    response = server.request("PUT", "/datastore/?image=notes", body, content_type)
    _assert_refused(response, 415, "'notes'", "not an image")
    assert "notes" not in server.json("GET", "/datastore/?output=all")["objects"]

    blank = tmp_path / "blank.nii.gz"
    nib.save(nib.Nifti1Image(np.full((32, 32, 12), -1000, np.int16), np.diag([4.0, 4.0, 6.0, 1.0])), blank)
    body, content_type = _multipart({"params": "{}"}, {"file": blank})
    assert server.request("PUT", "/datastore/?image=blank", body, content_type)[0] == 200  # a readable image
    body, content_type = _multipart({"params": "{}"}, {})
    for model in ("lung", "lung_full"):
        response = server.request("POST", f"/infer/{model}?image=blank", body, content_type)
        _assert_refused(response, 422, "all voxels are -1000")
    assert server.json("GET", "/info/")["name"] == "radcascade"


def test_delete_train_stops_a_running_training_and_the_models_still_serve(server, trained, trained_brain, tmp_path):
    """Slicer's "Stop": ``DELETE /train/`` while a long training runs; the checkpoint in use stays loadable."""
    request = {"max_epochs": 50, "classifier_max_epochs": 1, "val_split": 0.25, "overrides": TRAIN_OVERRIDES}
    started = server.json("POST", "/train/liver", request)
    t0 = time.perf_counter()
    while server.json("GET", "/train/").get("status") != "RUNNING" or time.perf_counter() - t0 < 5.0:
        assert time.perf_counter() - t0 < 120, server.tail()
        time.sleep(1.0)
    stopped = server.json("DELETE", "/train/")
    assert stopped["id"] == started["id"] and stopped["status"] == "STOPPED"
    assert server.json("GET", "/train/")["status"] == "STOPPED"
    status, params, data = server.infer("liver", "liver_3")
    assert status == 200, f"{params}\n{server.tail()}"
    _assert_label_volume(data, server.studies / "liver_3.nii.gz", {0, 1, 2}, tmp_path)
