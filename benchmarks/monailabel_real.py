"""Benchmark: real public cases through the real MONAI Label server, sent as 3D Slicer's MONAI Label module sends
them (``PUT /datastore/`` to upload, ``POST /infer/<model>``), scored against their real labels.

The server starts through ``scripts/start_monailabel.sh`` with the trained checkpoints of the bundle
(``radcascade demo <workflow>``), serving one workflow, on an empty studies folder; every case is uploaded, then
segmented. Printed per case: Dice of the returned label against the real label on the image's own grid, what the
response says the input held, and the request's wall time; then the server's peak resident memory.

- ``chest_xray``: each real radiograph as it is (PNG); lung Dice and the classifier's answer.
- ``brain``: each real study as ``apps/radcascade_label/prepare_studies.py`` writes it (one 4D NIfTI, missing
  sequences as channels of zeros), once per ``--subsets`` entry for studies that have all the sequences (a subset
  is made by leaving the other files out of the patient folder, as a clinic's study lacks them), through ``brain``
  (the cascade: the slices its gate kept are printed) and ``brain_full`` (the whole volume); whole-tumour Dice.
  Studies without a label (with skull) go through as they are.

    radcascade prepare-real --output-dir runs/real --from DIR ...        # once: checks the files, writes datalists
    python benchmarks/monailabel_real.py chest_xray --max-cases 24
    python benchmarks/monailabel_real.py brain --subsets all FLAIR+T1ce FLAIR

Needs ``.venv-monailabel`` (``bash scripts/setup_monailabel_env.sh``). Real cases are for evaluation only: never
tune a threshold on these figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "apps" / "radcascade_label"))

from prepare_studies import prepare_studies  # noqa: E402
from rest_client import LabelServer  # noqa: E402

from benchmarks.real_scans import label_on_grid, real_cases  # noqa: E402
from pipelines.evaluation.metrics import mask_dice  # noqa: E402

SEQUENCE_SUFFIXES = {"FLAIR": "flair", "T1": "t1", "T1ce": "t1ce", "T2": "t2"}


def _peak_rss_mib(pid: int) -> float:
    """The high-water mark of a process's resident memory (Linux ``VmHWM``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _segment(server: LabelServer, model: str, image_id: str, path: Path) -> tuple[dict, bytes, float]:
    """Upload ``path`` as ``image_id`` (once), then segment it: ``(params, label bytes, seconds of the request)``."""
    if image_id not in server.json("GET", "/datastore/?output=all")["objects"]:
        status, _, data = server.upload(image_id, path)
        if status != 200:
            raise RuntimeError(f"upload refused: HTTP {status}: {data[:300].decode(errors='replace')}")
    t0 = time.perf_counter()
    status, params, label = server.infer(model, image_id)
    seconds = time.perf_counter() - t0
    if status != 200:
        raise RuntimeError(f"infer refused: HTTP {status}: {str(params)[:300]}")
    return params, label, seconds


def radiograph_rows(server: LabelServer, items: list[dict], work: Path) -> list[dict]:
    """Each radiograph through ``chest_xray``: lung Dice against its real mask, the classifier's answer."""
    import SimpleITK as sitk
    from PIL import Image

    rows = []
    for item in items:
        row = {"case": item["id"]}
        try:
            params, label, row["seconds"] = _segment(server, "chest_xray", item["id"], Path(item["image"]))
            (work / "label.nii.gz").write_bytes(label)
            pred = sitk.GetArrayFromImage(sitk.ReadImage(str(work / "label.nii.gz"))) > 0  # (rows, columns)
            row["class"] = params["classification"]["predicted_class"]
            row["p"] = params["classification"]["probabilities"][row["class"]]
            if item.get("label"):
                truth = np.asarray(Image.open(item["label"]).convert("L")) >= 128
                row["lung_dice"] = mask_dice(pred.reshape(truth.shape), truth)
        except (RuntimeError, ValueError, KeyError) as error:
            row["error"] = str(error)
        rows.append(row)
    return rows


def _subset_folder(item: dict, subset: str, root: Path) -> Path:
    """A patient folder holding ``subset``'s sequence files of ``item`` (symbolic links, BraTS suffixes)."""
    keep = list(item["sequences"]) if subset == "all" else subset.split("+")
    folder = root / f"{item['id']}__{subset.replace('+', '_')}"
    folder.mkdir(parents=True)
    for name, path in zip(item["sequences"], item["image"], strict=True):
        if name in keep:
            (folder / f"{item['id']}_{SEQUENCE_SUFFIXES[name]}.nii.gz").symlink_to(Path(path).resolve())
    return folder


def brain_rows(server: LabelServer, items: list[dict], subsets: list[str], work: Path) -> list[dict]:
    """Each study (each subset of its sequences, when it has them all) through ``brain`` and ``brain_full``:
    whole-tumour Dice, and the slices the cascade's gate kept."""
    import nibabel as nib

    rows = []
    for item in items:
        complete = set(item["sequences"]) == set(SEQUENCE_SUFFIXES)
        for subset in subsets if complete and item.get("label") else ["as acquired"]:
            try:
                folder = _subset_folder(item, "all" if subset == "as acquired" else subset, work / "patients")
                (study,) = prepare_studies(folder, work / "studies", "brain")
            except (RuntimeError, ValueError, OSError) as error:
                rows.append({"case": item["id"], "subset": subset, "error": str(error)})
                continue
            image_id = study.name.removesuffix(".nii.gz")
            for model in ("brain", "brain_full"):
                row = {"case": item["id"], "subset": f"{subset}, {model}"}
                try:
                    params, label, row["seconds"] = _segment(server, model, image_id, study)
                    row["input"] = dict(params.get("input", {}))
                    gate = params.get("cascade")
                    if gate:
                        row["input"]["gate kept"] = f"{gate['slices_kept']}/{gate['num_slices']} slices"
                    (work / "label.nii.gz").write_bytes(label)
                    pred = nib.load(work / "label.nii.gz")
                    if item.get("label"):
                        truth = label_on_grid(item["label"], pred)
                        row["wt_dice"] = mask_dice(np.asarray(pred.dataobj) > 0, truth > 0)
                except (RuntimeError, ValueError, OSError) as error:
                    row["error"] = str(error)
                rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workflow", choices=["chest_xray", "brain"])
    parser.add_argument("--datalist", default=None, help="default: runs/real/<workflow>_real.json")
    parser.add_argument("--subsets", nargs="+", default=["all", "FLAIR+T1ce", "FLAIR"], help="brain: sequences")
    parser.add_argument("--json", default=None, help="also write the rows here")
    parser.add_argument(
        "--max-cases", type=int, default=None, help="at most N cases, evenly spread over the datalist (e.g. 24 of 704)"
    )
    args = parser.parse_args(argv)
    found = real_cases(args.workflow, args.datalist)
    if found is None:
        return 2
    datalist_path, items = found
    if args.max_cases and len(items) > args.max_cases:  # every k-th case: both sources, both findings
        items = [items[i] for i in np.linspace(0, len(items) - 1, args.max_cases).round().astype(int)]
    with tempfile.TemporaryDirectory(prefix="monailabel_real_") as tmp:
        work = Path(tmp)
        (work / "datastore").mkdir()
        t0 = time.perf_counter()
        env = {"MONAI_LABEL_SESSION_PATH": str(work / "sessions"), "MLFLOW_DISABLE_TELEMETRY": "true"}
        conf = {"models": args.workflow, "skip_trainers": "true", "device": "cpu"}
        with LabelServer.start(work / "datastore", conf, log=work / "server.log", env=env) as server:
            print(f"MONAI Label server ({args.workflow}) up in {time.perf_counter() - t0:.1f} s")
            if args.workflow == "chest_xray":
                rows = radiograph_rows(server, items, work)
            else:
                rows = brain_rows(server, items, args.subsets, work)
            peak = _peak_rss_mib(server.process.pid)
    print(f"{args.workflow}: {len(rows)} request(s) on {len(items)} real case(s) from {datalist_path}")
    for row in rows:
        name = row["case"] + (f" [{row['subset']}]" if "subset" in row else "")
        if "error" in row:
            print(f"  {name}: FAILED {row['error']}")
            continue
        scores = ", ".join(f"{k.removesuffix('_dice')} Dice {v:.3f}" for k, v in row.items() if k.endswith("_dice"))
        facts = "; ".join(f"{k} {v}" for k, v in row.get("input", {}).items())
        answer = f"; class {row['class']} (p {row['p']:.2f})" if "class" in row else ""
        print(f"  {name}: {scores or 'no label'}{answer}{'; ' + facts if facts else ''}; {row['seconds']:.1f} s")
    for key in sorted({k for r in rows for k in r if k.endswith("_dice")}):
        for subset in sorted({r.get("subset", "") for r in rows}):
            scored = [r[key] for r in rows if key in r and r.get("subset", "") == subset]
            if scored:
                shown = f" [{subset}]" if subset else ""
                print(f"mean {key.removesuffix('_dice')} Dice{shown} {np.mean(scored):.3f} over {len(scored)} case(s)")
    print(f"server peak RSS {peak:.0f} MiB; {sum('error' in r for r in rows)} failed")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "server_peak_rss_mib": peak}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
