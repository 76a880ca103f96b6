"""Benchmark: one whole CT (512x512x600) through inference, stage by stage, against its I/O floor and the pipeline
a model-zoo user would write, in one run.

The volume is the real abdomen-pelvis CT in ``tests/data/real/totalsegmentator`` (TotalSegmentator's example,
Apache-2.0) resampled onto a 512x512x600 grid over its field of view, written once as NIfTI and as a DICOM series
of the same voxels under ``data/``. Each measurement runs in a fresh child process, so start-up and peak resident
memory are its own. Printed:

* ``import monai``: a bare ``python -c "import monai"``, the floor of any start-up;
* the inference command users run (``radcascade run <workflow> inference``) on the NIfTI and on the DICOM series:
  wall time and peak RSS;
* the same stages in one process, timed one by one: start-up to the first read, read, preprocess, gate, network,
  resample back, post-process, write, each with the process's peak RSS during it (Linux ``VmHWM``, reset before
  each stage; start-up: the peak before the first read);
* the inference command on a folder of ``--batch`` scans (10 by default; links to the same file): scans per minute
  after start-up, and its wall time against as many single-scan commands;
* the I/O floor: nibabel reading the NIfTI and writing a uint8 mask of its size (and SimpleITK reading the series);
  and the same through ISA-L's gzip, the codec the pipeline reads and writes ``.nii.gz`` with;
* the zoo-style pipeline (LoadImaged, EnsureChannelFirstd, Orientationd, Spacingd, ScaleIntensityRanged, MONAI's
  SlidingWindowInferer, Invertd, AsDiscreted, SaveImaged) with the same network and weights, and the Dice of its
  mask against ours (agreement, not accuracy: no label exists for this volume);
* the ratios: ours after start-up vs the I/O floor, start-up vs ``import monai``, zoo vs ours, peak RSS vs the
  volume's float32 size.

* with ``--nnunet-python PYTHON`` (an interpreter that has ``nnunetv2``; this project does not install it): nnU-Net
  v2's predictor as its users run it, with the same network and weights (``benchmarks/nnunet_peer.py``), its time
  and its agreement with ours.

    python benchmarks/whole_scan.py liver
    python benchmarks/whole_scan.py liver --shape 512 512 300 --skip-dicom --batch 0
    python benchmarks/whole_scan.py liver --nnunet-python ~/nnunet-env/bin/python

Needs trained checkpoints (``radcascade demo <workflow>``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REAL_CT = REPO_ROOT / "tests" / "data" / "real" / "totalsegmentator" / "example_ct.nii.gz"

# Run in a child process: the stages of the inference stage, one by one, with their times (JSON on stdout).
_STAGES = r"""
import json, sys, time
t0 = time.perf_counter()
from pipelines.workflows import get_workflow
import torch
from monai.transforms import Compose
from pipelines.api import load_weights
workflow, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
p = get_workflow(workflow).config_parser("inference", {"output_dir": out})
net = load_weights(p.get_parsed_content("network"), p.get_parsed_content("ckpt_path"))
load_weights(p.get_parsed_content("classifier_network"), p.get_parsed_content("classifier_ckpt_path"))
inferer = p.get_parsed_content("cascade_inferer")
load = p.get_parsed_content("load_transforms")
read, checks = Compose(load[:1]), Compose(load[1:] + p.get_parsed_content("spatial_transforms"))
post = p.get_parsed_content("prediction_postprocessing")
resample, label_post = Compose(post[:2]), Compose(post[2:] + [p.get_parsed_content("prediction_mapping")])
write = Compose(p.get_parsed_content("output_transforms")[1:2])
times = {"startup": 0.0}  # the parent takes the process's wall time less the stages
def rss(field):  # MiB, Linux
    return next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith(field + ":"))
peaks = {"startup": rss("VmHWM")}
def step(name, fn, *a):
    open("/proc/self/clear_refs", "w").write("5")  # VmHWM starts again from VmRSS: this stage's own peak
    s = time.perf_counter(); r = fn(*a); times[name] = time.perf_counter() - s; peaks[name] = rss("VmHWM"); return r
d = step("read", read, {"image": path})
d = step("preprocess", checks, d)
with torch.inference_mode():
    pred = step("gate + network", inferer, d["image"][None].to(p.get_parsed_content("device")), net)
d["pred"] = pred[0]
report = inferer.reports[-1] if getattr(inferer, "reports", None) else {}
for k, v in (report.get("seconds") or {}).items():
    times[f"  of which {k}"] = v
d = step("resample back", resample, d)
d = step("post-process", label_post, d)
step("write", write, d)
times["kept"] = f"{report.get('slices_kept', '?')}/{report.get('num_slices', '?')}"
times["peaks"] = peaks
print(json.dumps(times))
"""

# The pipeline a model-zoo user would write, with the same network and weights.
_ZOO = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
from monai.data import decollate_batch
from monai.inferers import SlidingWindowInferer
from monai.transforms import (Activationsd, AsDiscreted, Compose, EnsureChannelFirstd, Invertd, LoadImaged,
                              Orientationd, SaveImaged, ScaleIntensityRanged, Spacingd)
from pipelines.api import load_weights
from pipelines.workflows import get_workflow
workflow, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
p = get_workflow(workflow).config_parser("inference")
net = load_weights(p.get_parsed_content("network"), p.get_parsed_content("ckpt_path"))
lo, hi = p.get_parsed_content("hu_window")
pre = Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image"),
               Orientationd("image", axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
               Spacingd("image", pixdim=p.get_parsed_content("pixdim"), mode="bilinear"),
               ScaleIntensityRanged("image", a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)])
post = Compose([Activationsd("pred", softmax=True),
                Invertd("pred", transform=pre, orig_keys="image", nearest_interp=False, to_tensor=True),
                AsDiscreted("pred", argmax=True),
                SaveImaged("pred", output_dir=out, output_postfix="zoo", separate_folder=False, print_log=False,
                           output_dtype="uint8")])
inferer = SlidingWindowInferer(roi_size=p.get_parsed_content("roi_size"),
                               sw_batch_size=p.get_parsed_content("sw_batch_size"),
                               overlap=p.get_parsed_content("sw_overlap"), mode="gaussian")
startup = time.perf_counter() - t0
s = time.perf_counter()
d = pre({"image": path})
with torch.inference_mode():
    d["pred"] = inferer(d["image"][None], net)[0]
post(d)
print(json.dumps({"startup": startup, "after start-up": time.perf_counter() - s}))
"""

# The bundle's network with its weights as TorchScript, and the ids the nnU-Net peer needs (JSON on stdout).
_EXPORT = r"""
import json, sys, torch
from pipelines.api import load_weights
from pipelines.workflows import get_workflow
p = get_workflow(sys.argv[1]).config_parser("inference")
net = load_weights(p.get_parsed_content("network_def"), p.get_parsed_content("ckpt_path")).eval()
torch.jit.script(net).save(sys.argv[2])
ids = {k: p.get_parsed_content(k) if k in p else None  # no hu_window: not a CT workflow
       for k in ("pixdim", "roi_size", "hu_window", "num_classes", "sw_overlap")}
print(json.dumps(ids))
"""

_FLOOR = r"""
import json, sys, time
import numpy as np, nibabel as nib
path, out = sys.argv[1], sys.argv[2]
s = time.perf_counter(); img = nib.load(path); data = np.asanyarray(img.dataobj); read = time.perf_counter() - s
mask = (data > 0).astype(np.uint8)
s = time.perf_counter(); nib.save(nib.Nifti1Image(mask, img.affine), out); write = time.perf_counter() - s
# the same through ISA-L's gzip (the codec the pipeline uses, pipelines.io.gzip_streams)
from isal import igzip
s = time.perf_counter()
with igzip.open(path, "rb") as stream:
    data = np.asanyarray(nib.Nifti1Image.from_file_map({"image": nib.FileHolder(fileobj=stream)}).dataobj)
isal_read = time.perf_counter() - s
s = time.perf_counter()
with igzip.open(out, "wb", compresslevel=1) as stream:
    nib.Nifti1Image(mask, img.affine).to_file_map({"image": nib.FileHolder(fileobj=stream)})
isal_write = time.perf_counter() - s
print(json.dumps({"read": read, "write": write, "isal_read": isal_read, "isal_write": isal_write}))
"""

_SERIES_FLOOR = r"""
import json, sys, time
import SimpleITK as sitk
s = time.perf_counter()
r = sitk.ImageSeriesReader(); r.SetFileNames(r.GetGDCMSeriesFileNames(sys.argv[1])); img = r.Execute()
print(json.dumps({"read": time.perf_counter() - s, "size": list(img.GetSize())}))
"""


def _whole_scan(shape: tuple[int, int, int]) -> tuple[Path, Path]:
    """The real CT resampled to ``shape`` over its field of view: a NIfTI file and a DICOM series (written once)."""
    import nibabel as nib
    import numpy as np
    import SimpleITK as sitk
    from scipy.ndimage import zoom

    name = "x".join(map(str, shape))
    nifti = REPO_ROOT / "data" / f"whole_scan_{name}.nii.gz"
    series = REPO_ROOT / "data" / f"whole_scan_{name}_dicom"
    if not nifti.is_file():
        image = nib.load(REAL_CT)
        data = np.asanyarray(image.dataobj).astype(np.float32)
        factors = [n / s for n, s in zip(shape, data.shape, strict=True)]
        large = np.round(zoom(data, factors, order=1)).astype(np.int16)
        affine = image.affine @ np.diag([1 / f for f in factors] + [1.0])
        affine[:3, 3] = image.affine[:3, 3] + image.affine[:3, :3] @ (0.5 / np.array(factors) - 0.5)
        nifti.parent.mkdir(parents=True, exist_ok=True)
        tmp = nifti.with_name(".tmp_" + nifti.name)
        nib.save(nib.Nifti1Image(large, affine), tmp)
        tmp.replace(nifti)
    if not series.is_dir():
        volume = sitk.ReadImage(str(nifti))
        volume = sitk.Cast(volume, sitk.sitkInt16)
        tmp = series.with_name(".tmp_" + series.name)
        tmp.mkdir(parents=True, exist_ok=True)
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        uid = "1.2.826.0.1.3680043.8.498." + str(abs(hash(name)) % 10**12)
        direction = volume.GetDirection()
        for k in range(volume.GetDepth()):
            sl = volume[:, :, k]
            tags = {
                "0008|0060": "CT", "0020|000d": uid + ".1", "0020|000e": uid + ".2", "0020|0011": "1",
                "0020|0013": str(k + 1), "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
                "0008|0018": f"{uid}.3.{k + 1}", "0020|0052": uid + ".4",
                "0020|0032": "\\".join(map(str, volume.TransformIndexToPhysicalPoint((0, 0, k)))),
                "0020|0037": "\\".join(map(str, direction[0:7:3] + direction[1:8:3])),
                "0028|1050": "40", "0028|1051": "400", "0028|1052": "0", "0028|1053": "1",
            }  # fmt: skip
            for tag, value in tags.items():
                sl.SetMetaData(tag, value)
            writer.SetFileName(str(tmp / f"ct_{k:04d}.dcm"))
            writer.Execute(sl)
        tmp.replace(series)
    return nifti, series


def _child(
    code_or_cmd, *args: str, python: bool = True, log: list[str] | None = None
) -> tuple[dict | None, float, float]:
    """Run ``code`` (python) or a command in a fresh process: its JSON output, wall time, and its own peak RSS in
    GiB (``os.wait4`` of that process, not the maximum over every child so far); its stdout and stderr are appended
    to ``log`` when given."""
    import os

    cmd = [sys.executable, "-c", code_or_cmd, *args] if python else list(code_or_cmd)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", errors="replace")
        stderr = err.read().decode("utf-8", errors="replace")
    if process.returncode:
        raise SystemExit(f"{cmd[:4]} failed ({process.returncode}):\n{stderr[-3000:]}")
    if log is not None:
        log.append(stdout + stderr)
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    return (json.loads(lines[-1]) if lines else None), wall, usage.ru_maxrss / 2**20


def _batch(workflow: str, nifti: Path, tmp: Path, n: int, single_wall: float) -> None:
    """The inference command on a folder of ``n`` scans (links to ``nifti``), one process: its scans per minute
    after start-up (the command's closing line), its wall time against ``n`` separate commands (``single_wall``
    each), and its peak RSS."""
    import re

    folder = tmp / "batch_inputs"
    folder.mkdir()
    for k in range(n):
        (folder / f"scan_{k:02d}.nii.gz").symlink_to(nifti)
    cmd = ["radcascade", "run", workflow, "inference", "--set", f"input_path={folder}",
           "--set", f"output_dir={tmp}/batch", "--set", "register_model=false"]  # fmt: skip
    log: list[str] = []
    _, wall, peak = _child(cmd, python=False, log=log)
    rate = re.search(r"\(([\d.]+) scans per minute\)", log[-1])
    print(
        f"  a folder of {n} scans, one command: {rate.group(1) if rate else '?'} scans per minute after start-up, "
        f"{wall:.1f} s wall (x{n * single_wall / wall:.2f} against {n} commands of {single_wall:.1f} s), "
        f"peak RSS {peak:.2f} GiB"
    )


def _dice_of_files(a: Path, b: Path) -> float:
    import nibabel as nib
    import numpy as np

    from pipelines.evaluation.metrics import mask_dice

    return mask_dice(np.asarray(nib.load(a).dataobj) > 0, np.asarray(nib.load(b).dataobj) > 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workflow")
    parser.add_argument("--shape", nargs=3, type=int, default=[512, 512, 600])
    parser.add_argument("--skip-dicom", action="store_true", help="NIfTI only")
    parser.add_argument(
        "--batch", type=int, default=10, metavar="N",
        help="also run the inference command once on a folder of N scans (links to this CT; 0: skip)",
    )  # fmt: skip
    parser.add_argument(
        "--nnunet-python", default=None, metavar="PYTHON",
        help="a Python interpreter with nnunetv2 installed: also run nnU-Net v2's predictor with the same network",
    )  # fmt: skip
    args = parser.parse_args(argv)
    nifti, series = _whole_scan(tuple(args.shape))
    float32_gib = 4 * args.shape[0] * args.shape[1] * args.shape[2] / 2**30
    print(f"{args.workflow}: one {'x'.join(map(str, args.shape))} CT ({nifti.name}; float32 {float32_gib:.2f} GiB)")

    _, import_monai, _ = _child("import monai")
    print(f"  python -c 'import monai': {import_monai:.1f} s")

    with tempfile.TemporaryDirectory() as tmp:
        inputs = [("NIfTI", nifti)] + ([] if args.skip_dicom else [("DICOM series", series)])
        walls = {}
        for label, path in inputs:
            cmd = ["radcascade", "run", args.workflow, "inference", "--set", f"input_path={path}",
                   "--set", f"output_dir={tmp}/{label[:5]}", "--set", "register_model=false"]  # fmt: skip
            _, walls[label], peak = _child(cmd, python=False)
            print(
                f"  radcascade run {args.workflow} inference, {label}: {walls[label]:.1f} s wall, "
                f"peak RSS {peak:.2f} GiB"
            )
        if args.batch > 0:
            _batch(args.workflow, nifti, Path(tmp), args.batch, walls["NIfTI"])

        stages, wall, peak = _child(_STAGES, args.workflow, str(nifti), f"{tmp}/stages")
        peaks = stages.pop("peaks")
        peak = max(peaks.values()) / 1024  # resetting VmHWM per stage leaves wait4 only the last stage's peak
        after = sum(v for k, v in stages.items() if k not in ("startup", "kept") and not k.startswith("  "))
        startup = wall - after  # process start to the first read: interpreter, imports, config, weights
        stages["startup"] = startup
        print(
            f"  stage by stage (NIfTI), {wall:.1f} s wall, peak RSS {peak:.2f} GiB ({peak / float32_gib:.1f}x the "
            f"float32 volume); gate kept {stages['kept']} slices"
        )
        for key, value in stages.items():
            if key != "kept":
                peak_mib = f"   peak RSS {peaks[key] / 1024:.2f} GiB" if key in peaks else ""
                print(f"    {key:<28s} {value:7.2f} s{peak_mib}")
        floor, _, _ = _child(_FLOOR, str(nifti), f"{tmp}/floor.nii.gz")
        io_floor = floor["read"] + floor["write"]
        print(f"  I/O floor: nibabel read {floor['read']:.2f} s + write {floor['write']:.2f} s = {io_floor:.2f} s")
        isal_floor = floor["isal_read"] + floor["isal_write"]
        print(
            f"  I/O floor through ISA-L's gzip (ours): read {floor['isal_read']:.2f} s + write "
            f"{floor['isal_write']:.2f} s = {isal_floor:.2f} s"
        )
        if not args.skip_dicom:
            series_floor, _, _ = _child(_SERIES_FLOOR, str(series))
            print(f"  I/O floor, DICOM series: SimpleITK read {series_floor['read']:.2f} s")
        zoo, zoo_wall, zoo_peak = _child(_ZOO, args.workflow, str(nifti), f"{tmp}/zoo")
        ours_mask = next(Path(tmp, "stages", "predictions").glob("*.nii.gz"))
        zoo_mask = next(Path(tmp, "zoo").glob("*.nii.gz"))
        agreement = _dice_of_files(ours_mask, zoo_mask)
        print(
            f"  zoo-style pipeline: {zoo['after start-up']:.1f} s after start-up ({zoo_wall:.1f} s wall), "
            f"peak RSS {zoo_peak:.2f} GiB; foreground agreement (Dice) with ours {agreement:.4f}"
        )
        peer = None
        if args.nnunet_python:
            peer = _nnunet_peer(args, nifti, Path(tmp), ours_mask)
    print("  ratios:")
    print(f"    ours after start-up / I/O floor       {after / io_floor:.2f}  (target <= 2)")
    print(f"    same, against the ISA-L floor         {after / isal_floor:.2f}")
    print(f"    start-up - import monai               {startup - import_monai:+.1f} s  (target <= 1.5 s)")
    print(f"    zoo / ours (after start-up)           x{zoo['after start-up'] / after:.2f}  (target >= 3)")
    if peer:
        print(f"    nnU-Net v2 / ours (after start-up)    x{peer / after:.2f}")
    print(f"    peak RSS / float32 volume             {peak / float32_gib:.1f}  (target <= 2.5)")
    return 0


def _nnunet_peer(args: argparse.Namespace, nifti: Path, tmp: Path, ours_mask: Path) -> float | None:
    """nnU-Net v2's predictor with the bundle's network and weights (``benchmarks/nnunet_peer.py``, run by
    ``--nnunet-python``); prints its time, peak RSS and agreement with ours, returns its seconds (None: no CT)."""
    ids, _, _ = _child(_EXPORT, args.workflow, str(tmp / "network.ts"))
    if ids.get("hu_window") is None:
        print("  nnU-Net v2 peer: CT workflows only (its CT normalisation stands for the HU window)")
        return None
    cmd = [args.nnunet_python, str(REPO_ROOT / "benchmarks" / "nnunet_peer.py"), "--network", str(tmp / "network.ts"),
           "--input", str(nifti), "--output", str(tmp / "nnunet" / "seg.nii.gz"),
           "--pixdim", *map(str, ids["pixdim"]), "--roi-size", *map(str, ids["roi_size"]),
           "--hu-window", *map(str, ids["hu_window"]), "--num-classes", str(ids["num_classes"]),
           "--overlap", str(ids["sw_overlap"])]  # fmt: skip
    result, wall, peer_peak = _child(cmd, python=False)
    agreement = _dice_of_files(ours_mask, Path(result["output"]))
    print(
        f"  nnU-Net v2 predictor, same network and weights: {result['seconds']:.1f} s after start-up ({wall:.1f} s "
        f"wall), peak RSS {peer_peak:.2f} GiB (its largest process); foreground agreement (Dice) "
        f"with ours {agreement:.4f} (nnU-Net keeps every component, ours the largest)"
    )
    return result["seconds"]


if __name__ == "__main__":
    sys.exit(main())
