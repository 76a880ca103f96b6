"""The real MONAI Label server on phantom studies, called the way 3D Slicer's MONAI Label module calls it.

Needs ``.venv-monailabel`` (``bash scripts/setup_monailabel_env.sh``); skipped without it. Run with
``pytest -m monailabel tests/monailabel``. The server starts through ``scripts/start_monailabel.sh`` on a free port
of 127.0.0.1, from a copy of the app (MONAI Label writes logs/ into the app folder), with the network shrunk by
``--conf overrides`` and checkpoints in a temporary ``--conf ckpt_root``; it is stopped by its PID. The client
(``apps/radcascade_label/rest_client.py``) sends what Slicer's MONAI Label client sends.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.parse
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipelines.phantoms.brain_mr import make_brain_mri_phantom
from pipelines.phantoms.liver_ct import write_liver_phantom_task
from pipelines.workflows import REPO_ROOT
from tests.monailabel.app_modules import load_app_module

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


rest = load_app_module("rest_client.py")
_multipart = rest.multipart


class Server(rest.LabelServer):
    """The server under test, with the folders it was started on."""

    studies: Path
    ckpt_root: Path
    output_root: Path

    def json(self, method: str, path: str, payload: dict | None = None):
        try:
            return super().json(method, path, payload)
        except RuntimeError as e:
            pytest.fail(str(e))


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
    """The server from ``scripts/start_monailabel.sh`` serving liver, lung, brain and chest X-ray; stopped by PID
    afterwards."""
    root = tmp_path_factory.mktemp("monailabel")
    studies = _write_studies(root)
    ckpt_root, output_root = root / "checkpoints", root / "runs"
    app = root / "app"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("logs", "model", "bin", "__pycache__"))
    env = {
        "RADCASCADE_LABEL_APP": str(app),
        "MONAI_LABEL_SESSION_PATH": str(root / "sessions"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    conf = {
        "models": "liver,lung,brain,chest_xray",
        "ckpt_root": str(ckpt_root),
        "output_root": str(output_root),
        "overrides": json.dumps(SHRINK),
        "device": "cpu",
    }
    t0 = time.perf_counter()
    try:
        started = rest.LabelServer.start(
            studies, conf, log=root / "server.log", env=env, cwd=root, timeout=START_TIMEOUT
        )
    except RuntimeError as e:
        pytest.fail(str(e))
    srv = Server(started.url, started.process, started.log)
    srv.studies, srv.ckpt_root, srv.output_root = studies, ckpt_root, output_root
    print(f"\nMONAI Label server up in {time.perf_counter() - t0:.1f} s (pid {srv.process.pid})")
    try:
        yield srv
    finally:
        srv.stop()


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
    assert set(info["models"]) == {"liver", "liver_full", "lung", "lung_full", "brain", "brain_full", "chest_xray"}
    assert info["models"]["liver"]["labels"] == LIVER_CLASSES
    assert info["models"]["liver"]["type"] == "segmentation"
    assert info["models"]["liver"]["dimension"] == 3
    assert info["models"]["brain"]["labels"] == {"necrotic core": 1, "oedema": 2, "enhancing tumour": 4}
    assert {"liver", "tumour", "lesion", "oedema", "lung"} <= set(info["labels"])
    assert info["models"]["chest_xray"]["dimension"] == 2 and info["models"]["chest_xray"]["labels"] == {"lung": 1}
    assert set(info["trainers"]) == {"liver", "lung", "brain"}  # chest X-ray: inference only
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
    if model == "liver":  # the slices kept (the gate's and those where the organ went on past its edge), and the
        cascade = params["cascade"]  # slabs the segmenter ran on (those grown for context)
        kept_runs = cascade["kept"] + cascade["followed"]
        assert cascade["slices_kept"] == sum(s["stop"] - s["start"] for s in kept_runs)
        assert isinstance(cascade["one_pass"], bool)
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
    status, _, data = server.upload("clinic_head", study)
    assert status == 200, f"PUT /datastore: HTTP {status}: {data[:2000]!r}\n{server.tail()}"
    status, params, data = server.infer("brain", "clinic_head")
    assert status == 200, f"{params}\n{server.tail()}"
    assert params["input"] == {"sequences_used": "FLAIR+T1ce", "brain_extraction": "extracted"}
    _assert_label_volume(data, study, {0, 1, 2, 4}, tmp_path)


def test_a_real_ct_uploaded_as_slicer_does_gets_a_liver_mask_on_its_grid(server, trained, trained_brain, tmp_path):
    """``PUT /datastore/?image=<id>`` with the file (``MONAILabelClient.upload_image``), then ``POST /infer/liver``
    on it: the mask is a NIfTI label map on the real scan's own grid, which Slicer loads as a segmentation."""
    status, _, data = server.upload("real_ct", REAL_CT)
    assert status == 200, f"PUT /datastore: HTTP {status}: {data[:2000]!r}\n{server.tail()}"
    assert "real_ct" in server.json("GET", "/datastore/?output=all")["objects"]
    for model in ("liver", "liver_full"):
        status, params, data = server.infer(model, "real_ct")
        assert status == 200, f"{params}\n{server.tail()}"
        assert params["label_names"] == LIVER_CLASSES
        _assert_label_volume(data, REAL_CT, {0, 1, 2}, tmp_path)


def _write_random_weights(server: Server, workflow: str) -> None:
    """The segmenter's and classifier's checkpoints (``model.pt``, ``classifier.pt``; chest X-ray: ``model_xray.pt``,
    ``classifier_xray.pt``) for ``workflow``'s networks (shrunk as the server's), freshly initialised: enough to
    check the serving path, not the accuracy. Written to a temporary name, then renamed."""
    import torch

    from pipelines.workflows import get_workflow

    parser = get_workflow(workflow).config_parser("inference", dict(SHRINK))
    folder = server.ckpt_root / workflow
    folder.mkdir(parents=True, exist_ok=True)
    for path, network in (("ckpt_path", "network_def"), ("classifier_ckpt_path", "classifier_def")):
        name = Path(parser.get_parsed_content(path)).name
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


def _assert_radiograph_label(data: bytes, image: Path, tmp_path: Path) -> np.ndarray:
    """The label lies on the radiograph as ITK (and so Slicer) reads both: same size, spacing, origin, direction."""
    import SimpleITK as sitk

    out = tmp_path / "label.nii.gz"
    out.write_bytes(data)
    label, reference = sitk.ReadImage(str(out)), sitk.ReadImage(str(image))
    assert label.GetSize() == reference.GetSize()
    np.testing.assert_allclose(label.GetSpacing(), reference.GetSpacing())
    np.testing.assert_allclose(label.GetOrigin(), reference.GetOrigin())
    np.testing.assert_allclose(label.GetDirection(), reference.GetDirection())
    values = sitk.GetArrayFromImage(label)
    assert set(np.unique(values).tolist()) <= {0, 1}
    return values


def test_chest_xray_serves_radiographs_uploaded_as_slicer_does(server, tmp_path):
    """A PNG radiograph (260 x 300, not the network's square) and a DX DICOM (``.dcm``, MONOCHROME1) uploaded as
    Slicer uploads them; ``POST /infer/chest_xray`` returns the lung mask on each one's own pixel grid and the
    classifier's answer. Volumes, colour photographs and lateral views are refused with a reason."""
    from PIL import Image

    from pipelines.phantoms.chest_xray import make_chest_xray_phantom
    from tests.radiograph_files import write_radiograph_dicom

    image, _ = make_chest_xray_phantom(seed=5, category="Normal", size=300)
    png = tmp_path / "cxr_front.png"
    Image.fromarray(np.asarray(image)[:, 20:280].astype(np.uint8)).save(png)
    dicom = tmp_path / "cxr_dx.dcm"
    stored = (4095 - np.asarray(image).astype(np.uint16) * 16).astype(np.uint16)
    write_radiograph_dicom(dicom, stored, modality="DX", photometric="MONOCHROME1", ViewPosition="PA",
                           PixelSpacing=[0.2, 0.2], WindowCenter=2048, WindowWidth=4096)  # fmt: skip
    for image_id, path in (("cxr_front", png), ("cxr_dx", dicom)):
        status, _, data = server.upload(image_id, path)
        assert status == 200, f"PUT /datastore: HTTP {status}: {data[:2000]!r}\n{server.tail()}"

    status, text, _ = server.infer("chest_xray", "cxr_front")
    assert status == 409 and "no trained weights" in text and "model_xray.pt" in text
    _write_random_weights(server, "chest_xray")
    classes = {"COVID", "Lung_Opacity", "Normal", "Viral Pneumonia"}
    for image_id, path, size in (("cxr_front", png, (260, 300)), ("cxr_dx", dicom, (300, 300))):
        status, params, data = server.infer("chest_xray", image_id)
        assert status == 200, f"{params}\n{server.tail()}"
        assert params["label_names"] == {"lung": 1}
        answer = params["classification"]
        assert answer["predicted_class"] in classes and set(answer["probabilities"]) == classes
        assert abs(sum(answer["probabilities"].values()) - 1.0) < 1e-4
        assert (params["input"]["width"], params["input"]["height"]) == size
        _assert_radiograph_label(data, path, tmp_path)

    body, content_type = _multipart({"params": "{}"}, {})
    response = server.request("POST", "/infer/chest_xray?image=liver_0", body, content_type)
    _assert_refused(response, 422, "segments radiographs", "liver_0")
    response = server.request("POST", "/infer/liver_full?image=cxr_front", body, content_type)
    assert response[0] == 422, response
    photo = tmp_path / "holiday.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(photo)
    _assert_refused(server.upload("holiday", photo), 422, "colour image")
    lateral = tmp_path / "cxr_lat.dcm"
    write_radiograph_dicom(lateral, stored, modality="DX", ViewPosition="LL")
    assert server.upload("cxr_lat", lateral)[0] == 200  # a radiograph; the model refuses it
    response = server.request("POST", "/infer/chest_xray?image=cxr_lat", body, content_type)
    _assert_refused(response, 422, "lateral")


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
    _assert_refused(server.upload("notes", notes), 415, "'notes'", "not an image")
    assert "notes" not in server.json("GET", "/datastore/?output=all")["objects"]

    blank = tmp_path / "blank.nii.gz"
    nib.save(nib.Nifti1Image(np.full((32, 32, 12), -1000, np.int16), np.diag([4.0, 4.0, 6.0, 1.0])), blank)
    assert server.upload("blank", blank)[0] == 200  # a readable image
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
