"""Benchmark: the trained models on real public scans (``data_manifests/real_public.json``), failures included.

Every real case of a workflow's prepared datalist (``radcascade prepare-real``: the ``test`` cases with a label
and the ``unlabelled`` ones) goes through inference twice, with the cascade and on the whole volume, in one
process. Printed per case: the slices the cascade kept (of all slices, after the body crop at the bundle's
spacing: the gate's, and those added where the segmenter found the organ going on past its edge), the
foreground Dice per labelled class against the real label on the scan's own grid, the axial extent of the
predicted foreground and of the label, the labelled slices each mode left empty (for the cascade, mostly slices
the gate dropped), the wall time of each mode; then the peak resident memory of the process. A case that
fails is printed with its error and counted, not skipped silently.

    radcascade prepare-real --output-dir runs/real [--from DIR]     # once: checks the files, writes the datalist
    python benchmarks/real_scans.py liver                           # runs/real/liver_real.json
    python benchmarks/real_scans.py liver --datalist other.json --set sw_batch_size=8

Needs trained checkpoints (``models/model.pt`` and ``models/classifier.pt``: ``radcascade demo <workflow>``).
Real cases are for evaluation only: never tune a threshold on these figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from pipelines.api import Segmenter  # noqa: E402
from pipelines.cli.main import parse_overrides  # noqa: E402
from pipelines.evaluation.metrics import mask_dice  # noqa: E402
from pipelines.io.inputs import case_name  # noqa: E402
from pipelines.validation.errors import find_data_error  # noqa: E402
from pipelines.workflows import get_workflow  # noqa: E402


def label_on_grid(label_path: str, reference) -> np.ndarray:
    """The label's values on the grid of ``reference`` (the prediction, on the scan's grid), its axes reordered when
    the label file stores them in another order (:func:`pipelines.validation.volume_checks.same_grid`)."""
    import nibabel as nib

    label = nib.load(label_path)
    source = nib.orientations.io_orientation(label.affine)
    target = nib.orientations.io_orientation(np.asarray(reference.affine, dtype=np.float64))
    transform = nib.orientations.ornt_transform(source, target)
    values = nib.orientations.apply_orientation(np.asarray(label.dataobj), transform)
    if values.shape != tuple(reference.shape[-3:]):
        raise ValueError(f"{label_path}: label shape {values.shape} != the scan's {tuple(reference.shape[-3:])}")
    return values


def real_cases(workflow: str, datalist: str | None = None) -> tuple[Path, list[dict]] | None:
    """The prepared datalist of ``workflow``'s real cases (default ``runs/real/<workflow>_real.json``) and its
    ``test``, ``findings`` (radiographs with a finding and no mask) and ``unlabelled`` entries; None, with the command
    that writes it printed, when it is missing."""
    path = Path(datalist or REPO_ROOT / "runs" / "real" / f"{workflow}_real.json")
    if not path.is_file():
        print(f"{path}: not found; run: radcascade prepare-real --output-dir {path.parent}")
        return None
    entries = json.loads(path.read_text())
    return path, entries.get("test", []) + entries.get("findings", []) + entries.get("unlabelled", [])


def _extent(mask: np.ndarray) -> str:
    slices = np.flatnonzero(mask.any(axis=(0, 1)))
    return f"{slices[0]}-{slices[-1]} of {mask.shape[2]}" if slices.size else f"none of {mask.shape[2]}"


def _first(image) -> str:
    return image[0] if isinstance(image, (list, tuple)) else image


def run_case(
    item: dict,
    segmenters: dict[str, Segmenter],
    class_names: list[str],
    values: list[int],
    regions: dict[str, list[int]] | None = None,
) -> dict:
    """Both modes on one case: times, the gate's kept fraction, Dice per labelled class (and per region, as label
    values, for the brain), predicted extent, and what the input held (sequences, brain extraction)."""
    row: dict = {"case": item.get("id") or case_name(_first(item["image"]))}
    for mode, segmenter in segmenters.items():
        t0 = time.perf_counter()
        pred = segmenter(item["image"], sequences=item.get("sequences"))
        row[f"{mode}_s"] = time.perf_counter() - t0
        row["input"] = segmenter.last_input
        mask = np.asarray(pred[0])
        report = segmenter.last_report
        if report is not None:
            row["kept"] = f"{report['slices_kept']}/{report['num_slices']}"
            row["followed"] = sum(slab["stop"] - slab["start"] for slab in report.get("followed", []))
            row["kept_fraction"] = report["slices_kept"] / max(report["num_slices"], 1)
        row[f"{mode}_extent"] = _extent(mask > 0)
        if item.get("label"):
            truth = label_on_grid(item["label"], pred)
            for name, value in zip(class_names[1:], values[1:], strict=True):
                if (truth == value).any():
                    row[f"{mode}_{name}_dice"] = mask_dice(mask == value, truth == value)
            for name, region in (regions or {}).items():
                if np.isin(truth, region).any():
                    row[f"{mode}_{name}_dice"] = mask_dice(np.isin(mask, region), np.isin(truth, region))
            row["label_extent"] = _extent(truth > 0)
            # labelled slices where this mode predicts nothing: for the cascade, mostly slices the gate dropped
            labelled = (truth > 0).any(axis=(0, 1))
            row[f"{mode}_missed_slices"] = int((labelled & ~(mask > 0).any(axis=(0, 1))).sum())
            # foreground predicted on slices the label leaves empty: beyond the organ's craniocaudal extent (for
            # the liver: in the chest or the pelvis), where no voxel should be labelled at all
            row[f"{mode}_voxels_beyond"] = int((mask > 0)[..., ~labelled].sum())
    return row


PER_CASE_LIMIT = 20  # more radiographs than this: only the failures and the lowest Dice are printed
WORST_SHOWN = 10


def _source_of(case: str) -> str:
    """A real case's source, from its id's prefix: ``cxr_chncxr_0001_0`` -> ``chncxr``; ``other`` for other ids."""
    return case.split("_")[1] if case.count("_") >= 2 else "other"


def rank_auc(positive: list[float], negative: list[float]) -> float | None:
    """ROC AUC of scores, positives against negatives (the Mann-Whitney U statistic, ties counted half); None
    when either group is empty."""
    if not positive or not negative:
        return None
    pos, neg = np.asarray(positive)[:, None], np.asarray(negative)[None, :]
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))


def classification_summary(rows: list[dict]) -> dict:
    """The classifier against the radiographs' findings: per finding, how many were called each class; the accuracy
    where the finding has a class; ROC AUC of p(COVID), COVID-19 against the other findings, and of 1 - p(Normal),
    abnormal against no finding. ``lines`` holds the printed text; empty when no row has a finding and a class."""
    rows = [r for r in rows if "finding" in r and "class" in r]
    if not rows:
        return {}
    called: dict[str, dict[str, int]] = {}
    for r in rows:
        counts = called.setdefault(r["finding"], {})
        counts[r["class"]] = counts.get(r["class"], 0) + 1
    with_class = [r for r in rows if r["true_class"]]
    correct = sum(r["class"] == r["true_class"] for r in with_class)

    def prob(row: dict, name: str) -> float:
        return row["class_probabilities"].get(name.lower().replace(" ", "_"), 0.0)

    covid_auc = rank_auc(
        [prob(r, "COVID") for r in rows if r["true_class"] == "COVID"],
        [prob(r, "COVID") for r in rows if r["true_class"] != "COVID"],
    )
    abnormal_auc = rank_auc(
        [1 - prob(r, "Normal") for r in rows if r["true_class"] != "Normal"],
        [1 - prob(r, "Normal") for r in rows if r["true_class"] == "Normal"],
    )
    lines = [f"classifier on {len(rows)} real radiographs with a finding (evaluation only):"]
    for finding, counts in called.items():
        calls = ", ".join(f"{c} {n}" for c, n in counts.items())
        lines.append(f"  {finding} ({sum(counts.values())}): called {calls}")
    lines.append(f"  accuracy {correct}/{len(with_class)} where the finding has a class of the classifier")
    aucs = (("p(COVID), COVID-19 vs the rest", covid_auc), ("1 - p(Normal), abnormal vs normal", abnormal_auc))
    for name, auc in aucs:
        lines.append(f"  ROC AUC of {name}: " + ("n/a (one group is empty)" if auc is None else f"{auc:.3f}"))
    return {
        "called": called,
        "accuracy": correct / len(with_class) if with_class else None,
        "covid_auc": covid_auc,
        "abnormal_auc": abnormal_auc,
        "lines": lines,
    }


def run_radiographs(workflow: str, items: list[dict], overrides: dict, datalist_path: Path, json_path) -> int:
    """A 2D workflow (chest X-ray): the inference stage once over the real radiographs, as a user runs it, then the
    Dice of each written lung mask (at the input's own size) against the real mask; time and peak memory."""
    import tempfile

    from PIL import Image

    from pipelines.runner import run_stage

    with tempfile.TemporaryDirectory(prefix="real_radiographs_") as tmp:
        images = Path(tmp) / "datalist.json"
        images.write_text(json.dumps({"test": [{"image": item["image"]} for item in items]}))
        stage = {**overrides, "input_path": str(images), "output_dir": str(Path(tmp) / "out"), "register_model": False}
        t0 = time.perf_counter()
        run_stage(workflow, "inference", stage, logging_file=False)
        seconds = time.perf_counter() - t0
        classes = {}
        table = Path(tmp) / "out" / "predictions" / "classification.csv"
        if table.is_file():
            import csv

            with open(table, newline="") as f:
                classes = {r["file"]: r for r in csv.DictReader(f)}
        rows = []
        for item in items:
            name = Path(item["image"]).name.rsplit(".", 1)[0]
            row = {"case": item.get("id") or name}
            if "finding" in item:  # the radiograph's finding, and the classifier's class for it (None: none)
                row["finding"], row["true_class"] = item["finding"], item.get("class_name")
            written = Path(tmp) / "out" / "predictions" / f"{name}_mask.png"
            if not written.is_file():
                rows.append(row | {"error": f"no mask written for {item['image']} (see failures.json)"})
                continue
            pred = np.asarray(Image.open(written).convert("L")) >= 128
            source_size = Image.open(item["image"]).size
            row["size_kept"] = pred.shape[::-1] == source_size
            predicted = classes.get(item["image"])
            if predicted:  # the classifier's class and its probability
                row["class"] = predicted["predicted_class"]
                row["class_probabilities"] = {k[5:]: float(v) for k, v in predicted.items() if k.startswith("prob_")}
            if item.get("label"):
                truth = np.asarray(Image.open(item["label"]).convert("L")) >= 128
                row["lung_dice"] = mask_dice(pred, truth)
            rows.append(row)
    failed = sum("error" in r for r in rows)
    print(f"{workflow}: {len(items)} real radiograph(s) from {datalist_path}, {failed} failed")
    scored = sorted((r for r in rows if "lung_dice" in r), key=lambda r: r["lung_dice"])
    shown = rows if len(rows) <= PER_CASE_LIMIT else [r for r in rows if "error" in r] + scored[:WORST_SHOWN]
    if len(shown) < len(rows):
        print(f"  the failures and the {WORST_SHOWN} lowest Dice of {len(rows)} (every case in --json):")
    for row in shown:
        if "error" in row:
            print(f"  {row['case']}: FAILED {row['error']}")
        else:
            dice = f"lung Dice {row['lung_dice']:.3f}" if "lung_dice" in row else "no label"
            label = ""
            if "class" in row:
                p = row["class_probabilities"][row["class"].lower().replace(" ", "_")]
                label = f"; class {row['class']} (p {p:.2f})"
            print(f"  {row['case']}: {dice}; mask at the input's size: {row['size_kept']}{label}")
    if not all(r.get("size_kept", True) for r in rows):
        print(f"  masks NOT at the input's size: {[r['case'] for r in rows if r.get('size_kept') is False]}")
    groups = {"all": scored} if scored else {}
    for row in scored:
        groups.setdefault(_source_of(row["case"]), []).append(row)
    for group, members in groups.items():
        if len(groups) == 2 and group != "all":  # one source: its line would repeat "all"
            continue
        dice = np.array([r["lung_dice"] for r in members])
        print(
            f"lung Dice, {group} ({dice.size} radiographs): mean {dice.mean():.3f}, median {np.median(dice):.3f}, "
            f"5th percentile {np.percentile(dice, 5):.3f}, min {dice.min():.3f}; >= 0.90 on "
            f"{(dice >= 0.90).mean():.0%}"
        )
    classification = classification_summary(rows)
    for line in classification.get("lines", []):
        print(line)
    by_source: dict[str, list[dict]] = {}
    for row in rows:  # the pooled AUCs compare radiographs of different sources: each source's own too
        by_source.setdefault(_source_of(row["case"]), []).append(row)
    for source, members in by_source.items():
        summary = classification_summary(members)
        if summary and len(by_source) > 1:
            classification.setdefault("by_source", {})[source] = {k: v for k, v in summary.items() if k != "lines"}
            pair = (summary["covid_auc"], summary["abnormal_auc"])
            aucs = [f"{auc:.3f}" if auc is not None else "n/a" for auc in pair]
            accuracy = "n/a" if summary["accuracy"] is None else f"{summary['accuracy']:.3f}"
            print(f"  {source} alone: accuracy {accuracy}, ROC AUC p(COVID) {aucs[0]}, abnormal vs normal {aucs[1]}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"inference stage {seconds:.1f} s for {len(items)} radiographs (start-up included); peak RSS {peak:.0f} MiB")
    if json_path:
        figures = {"rows": rows, "classification": classification, "seconds": seconds, "peak_rss_mib": peak}
        Path(json_path).write_text(json.dumps(figures, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workflow")
    parser.add_argument("--datalist", default=None, help="default: runs/real/<workflow>_real.json")
    parser.add_argument("--set", dest="overrides", action="append", metavar="ID=VALUE", help="inference config ids")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    found = real_cases(args.workflow, args.datalist)
    if found is None:
        return 2
    datalist_path, items = found
    overrides = parse_overrides(args.overrides)
    parser_ = get_workflow(args.workflow).config_parser("inference", overrides)
    class_names = list(parser_.get_parsed_content("class_names"))
    values = list(range(len(class_names)))
    if "label_values" in parser_:
        values = list(parser_.get_parsed_content("label_values"))
    if int(parser_.get_parsed_content("network_def#spatial_dims")) == 2:
        return run_radiographs(args.workflow, items, overrides, datalist_path, args.json)
    regions = {}
    if "regions" in parser_:  # class indices -> the label values the written masks hold
        regions = {k: [values[i] for i in v] for k, v in parser_.get_parsed_content("regions").items()}
    segmenters = {
        "cascade": Segmenter(args.workflow, use_cascade=True, **overrides),
        "full": Segmenter(args.workflow, use_cascade=False, **overrides),
    }
    rows, failed = [], 0
    for item in items:
        try:
            rows.append(run_case(item, segmenters, class_names, values, regions))
        except Exception as error:  # a real scan the models cannot take is a result, not a crash
            failed += 1
            name = item.get("id") or case_name(_first(item["image"]))
            cause = find_data_error(error)  # the input's own problem, not MONAI's "applying transform" wrapper
            message = str(cause) if cause is not None else f"{type(error).__name__}: {error}"
            rows.append({"case": name, "error": message[:300]})
    print(f"{args.workflow}: {len(items)} real case(s) from {datalist_path}, {failed} failed")
    for row in rows:
        if "error" in row:
            print(f"  {row['case']}: FAILED {row['error']}")
            continue
        dice = ", ".join(f"{k.removesuffix('_dice')} {v:.3f}" for k, v in row.items() if k.endswith("_dice"))
        label = f", label {row['label_extent']}" if "label_extent" in row else ""
        missed = (
            f"; labelled slices left empty: cascade {row['cascade_missed_slices']}, full {row['full_missed_slices']}"
            f"; voxels predicted on slices the label leaves empty: cascade {row['cascade_voxels_beyond']}, full "
            f"{row['full_voxels_beyond']}"
            if "cascade_missed_slices" in row
            else ""
        )
        facts = "".join(f"{k.replace('_', ' ')} {v}; " for k, v in row.get("input", {}).items())
        print(
            f"  {row['case']}: {facts}kept {row.get('kept', '-')} slices ({row.get('followed', 0)} of them where the "
            f"organ went on past the gate); {dice or 'no label'}; foreground slices "
            f"cascade {row['cascade_extent']}, full {row['full_extent']}{label}{missed}; "
            f"{row['cascade_s']:.2f} s cascade, {row['full_s']:.2f} s full"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "peak_rss_mib": peak}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
