"""Benchmark: one brain model on studies with some of the four sequences, and on studies with a skull.

For each held-out case (the datalist's ``test`` section by default) and each subset of sequences (all four,
FLAIR + T1ce, FLAIR alone, T1ce alone, or ``--subsets``), the bundle's own inference preprocessing runs with
``input_sequences`` set to the subset (``KeepSequencesd`` zeroes the other channels after the z-score, as a study
without them gives), then the full-volume sliding window, argmax and the bundle's post-processing. Prints the
Dice of the BraTS regions (whole tumour, tumour core, enhancing tumour) per case and subset, on the preprocessed
grid, and their means.

With ``--with-head``, each case gets a head first (skull, scalp, neck, noisy air:
:func:`pipelines.phantoms.brain_mr_head.add_head`) and is written as a patient folder, so the preprocessing finds
it not skull-stripped and runs brain extraction (``SkullStripd``, BET) before everything else: the figures then
say what a study with a skull costs. Also prints the time and peak memory.

    python benchmarks/sequence_subsets.py                          # brain, test split, 4 subsets
    python benchmarks/sequence_subsets.py --with-head              # the same studies with a skull on
    python benchmarks/sequence_subsets.py --subsets FLAIR FLAIR+T1ce --section validation

Needs a trained segmenter (``bundles/brain/models/model.pt``: ``radcascade demo brain``).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from monai.data import load_decathlon_datalist  # noqa: E402

from pipelines.api import load_weights  # noqa: E402
from pipelines.cli.main import parse_overrides  # noqa: E402
from pipelines.evaluation.metrics import mask_dice  # noqa: E402
from pipelines.io.inputs import case_name  # noqa: E402
from pipelines.workflows import get_workflow  # noqa: E402

DEFAULT_SUBSETS = ("FLAIR+T1+T1ce+T2", "FLAIR+T1ce", "FLAIR", "T1ce")


def _with_heads(items: list[dict], suffixes: list[str], folder: Path) -> list[dict]:
    """The cases of ``items`` with a head painted around each brain, written as patient folders in ``folder``."""
    import nibabel as nib

    from pipelines.phantoms.brain_mr_head import add_head

    out = []
    for seed, item in enumerate(items):
        files = item["image"]
        first = nib.load(files[0])
        channels = {s: np.asarray(nib.load(f).dataobj, dtype=np.float32) for s, f in zip(suffixes, files, strict=True)}
        label = np.asarray(nib.load(item["label"]).dataobj)
        head = add_head(channels, label, first.affine, seed=seed)
        case = case_name(files[0]).rsplit("_", 1)[0] + "_head"
        patient = folder / case
        patient.mkdir(parents=True)
        paths = []
        for s in suffixes:
            paths.append(str(patient / f"{case}_{s}.nii.gz"))
            nib.save(nib.Nifti1Image(head.channels[s], head.affine), paths[-1])
        label_path = str(patient / f"{case}_seg.nii.gz")
        nib.save(nib.Nifti1Image(head.label.astype(np.uint8), head.affine), label_path)
        out.append({"image": paths, "label": label_path})
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table; returns 0."""
    args_parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args_parser.add_argument("--workflow", default="brain")
    args_parser.add_argument("--section", default="test")
    args_parser.add_argument("--subsets", nargs="+", default=list(DEFAULT_SUBSETS), help="e.g. FLAIR FLAIR+T1ce")
    args_parser.add_argument("--with-head", action="store_true", help="paint a head around each case first")
    args_parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="ID=VALUE")
    args_parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = args_parser.parse_args(argv)

    workflow = get_workflow(args.workflow)
    overrides = parse_overrides(args.overrides)
    parser = workflow.config_parser("inference", overrides)
    network = load_weights(parser.get_parsed_content("network"), parser.get_parsed_content("ckpt_path"))
    inferer = parser.get_parsed_content("inferer")
    postprocess = parser.get_parsed_content("label_postprocessing")
    regions = parser.get_parsed_content("regions")
    sequences = list(parser.get_parsed_content("sequences"))
    items = load_decathlon_datalist(
        parser.get_parsed_content("data_list_file_path"), True, args.section, parser.get_parsed_content("dataset_dir")
    )
    scratch = tempfile.TemporaryDirectory(prefix="sequence_subsets_")
    if args.with_head:
        items = _with_heads(items, list(parser.get_parsed_content("sequence_suffixes")), Path(scratch.name))
        overrides = {**overrides, "allow_outside_root": True}

    rows, seconds = [], {}
    with torch.inference_mode():
        for subset in args.subsets:
            keep = [s for s in subset.split("+") if s]
            unknown = sorted(set(keep) - set(sequences))
            if unknown:
                args_parser.error(f"unknown sequence(s) {unknown}: this bundle's are {sequences}")
            keep = None if sorted(keep) == sorted(sequences) else keep
            preprocessing = workflow.config_parser(
                "inference", {**overrides, "input_sequences": keep}
            ).get_parsed_content("preprocessing")
            start = time.perf_counter()
            for item in items:
                data = preprocessing(item)
                logits = inferer(data["image"][None], network)
                pred = postprocess({"pred": logits[0].argmax(0, keepdim=True)})["pred"][0].numpy()
                label = np.asarray(data["label"][0])
                row = {"case": case_name(item["image"][0]), "subset": subset}
                row["brain_extraction"] = data["image"].meta.get("brain_extraction")
                for region, classes in regions.items():
                    row[region] = mask_dice(np.isin(pred, classes), np.isin(label, classes))
                rows.append(row)
            seconds[subset] = time.perf_counter() - start
    scratch.cleanup()

    names = list(regions)
    print(f"\n{args.workflow}: sequence subsets on '{args.section}' ({len(items)} cases)"
          + (", each with a head (brain extraction)" if args.with_head else ""))  # fmt: skip
    print(f"{'case':28s} {'subset':18s} " + " ".join(f"{n:>16s}" for n in names))
    for r in rows:
        print(f"{r['case']:28s} {r['subset']:18s} " + " ".join(f"{r[n]:16.4f}" for n in names))
    summary = {"cases": len(items), "with_head": args.with_head, "mean_dice": {}, "seconds": seconds}
    print("mean (NaN: region absent and not predicted, left out):")
    for subset in args.subsets:
        means = {n: float(np.nanmean([r[n] for r in rows if r["subset"] == subset])) for n in names}
        summary["mean_dice"][subset] = means
        print(f"  {subset:18s} " + " ".join(f"{n} {v:.3f}" for n, v in means.items()) + f"  ({seconds[subset]:.1f} s)")
    summary["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {summary['peak_rss_mib']:.0f} MiB, {torch.get_num_threads()} torch threads")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "cases": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
