"""Real public cases (``data_manifests/real_public.json``): check the files a user fetched against the manifest and
write MONAI datalists for evaluation.

``radcascade prepare-real --from DIR`` (or ``python -m data_manifests.real_public --from DIR``) looks for each
case's files under ``DIR`` (as ``DIR/<path>`` or ``DIR/<source folder>/<path>``, the layout of the source
repository) and under the case's folder in this repository, checks their sha256, writes the labels mapped to the
bundle's classes, and writes ``<output_dir>/<workflow>_real.json``: a ``test`` section (image and label) and an
``unlabelled`` section (image only). A multi-sequence MRI case lists its files under ``sequences`` (name -> file, in
the bundle's names: ``FLAIR``, ``T1ce``); its datalist entry's ``image`` lists them, and its ``sequences`` names
them, as the brain bundle reads a study with some of its sequences. A radiograph's mask (PNG/JPEG) is written as
a 0/255 PNG, thresholded at the manifest's ``threshold`` (anti-aliased or JPEG-compressed masks). Cases not found
are listed with where to get them; a file whose checksum differs is an error. Real cases are for evaluation only:
never train on them or tune a threshold on them.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from pipelines.io.atomic import atomic_write, write_json_atomic
from pipelines.validation.errors import DataError

__all__ = ["MANIFEST", "PreparedReal", "load_manifest", "sha256_of", "prepare_real", "add_arguments", "run", "main"]

logger = logging.getLogger(__name__)

MANIFEST = Path(__file__).with_name("real_public.json")
REPO_ROOT = Path(__file__).resolve().parents[1]


def sha256_of(path: str | os.PathLike) -> str:
    """The sha256 of a file; of a folder (a DICOM series), that of the lines ``<name> <sha256>`` of its files,
    sorted and joined by newlines."""
    path = Path(path)
    if path.is_dir():
        lines = sorted(f"{child.name} {sha256_of(child)}" for child in path.iterdir() if child.is_file())
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _collection_cases(collection: Mapping, manifest_path: Path) -> list[dict]:
    """The cases of a collection: each file under ``images`` in its checksum file (``<sha256>  <path>`` lines,
    sha256sum's format) that has a label, as a case named ``id_prefix`` + the file's stem in lower case, with the
    collection's other fields. The label is a mask (its namesake under ``labels``, listed in the checksum file too)
    or a finding (a line of the ``findings`` CSV: ``path,finding,view``; ``finding_classes`` maps each finding to a
    class of the workflow's classifier, or to null for a finding it has no class for).

    Raises:
        DataError: when the checksum or findings file is missing or malformed, or a finding is not mapped.
    """
    listing = manifest_path.parent / collection["checksums"]
    try:
        lines = listing.read_text().splitlines()
    except OSError as error:
        raise DataError([f"{manifest_path}: collection of {collection.get('source')!r}: {error}"]) from error
    digests = {}
    for number, line in enumerate(lines, 1):
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise DataError([f"{listing}:{number}: expected '<sha256>  <path>', got {line[:80]!r}"])
        digests[parts[1].lstrip("*")] = parts[0]
    findings = _findings(collection, manifest_path) if collection.get("findings") else {}
    own = ("id_prefix", "checksums", "images", "labels", "label", "findings", "finding_classes")
    shared = {k: v for k, v in collection.items() if k not in own}
    cases = []
    for image_path in sorted(p for p in digests if p.startswith(collection["images"])):
        name = image_path[len(collection["images"]) :]
        case = {"id": collection["id_prefix"] + Path(name).stem.lower(), **shared, "collection": listing.name}
        case["image"] = {"path": image_path, "sha256": digests[image_path]}
        if collection.get("labels"):
            label_path = collection["labels"] + name
            if label_path not in digests:
                continue
            case["label"] = {**collection["label"], "path": label_path, "sha256": digests[label_path]}
        if findings:
            if image_path not in findings:
                continue
            case["finding"] = findings[image_path]
            case["class_name"] = collection["finding_classes"][case["finding"]]
        cases.append(case)
    return cases


def _findings(collection: Mapping, manifest_path: Path) -> dict[str, str]:
    """``{image path: finding}`` of a collection's findings CSV, every finding checked against ``finding_classes``."""
    path = manifest_path.parent / collection["findings"]
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as error:
        raise DataError([f"{manifest_path}: collection of {collection.get('source')!r}: {error}"]) from error
    known = collection.get("finding_classes", {})
    problems = [
        f"{path}:{number}: finding {row.get('finding')!r} of {row.get('path')!r} is not in finding_classes "
        f"{sorted(known)} of {manifest_path.name}"
        for number, row in enumerate(rows, 2)
        if row.get("finding") not in known or not row.get("path")
    ]
    if problems:
        raise DataError(problems)
    return {row["path"]: row["finding"] for row in rows}


def load_manifest(path: str | os.PathLike = MANIFEST) -> dict:
    """The manifest, its collections expanded into cases, with each case's fields checked (id, source, workflow,
    image path and sha256).

    Raises:
        DataError: naming the manifest and every malformed case.
    """
    manifest = json.loads(Path(path).read_text())
    for collection in manifest.get("collections", []):
        manifest.setdefault("cases", []).extend(_collection_cases(collection, Path(path)))
    problems = []
    for i, case in enumerate(manifest.get("cases", [])):
        missing = [k for k in ("id", "source", "workflow") if not case.get(k)]
        if not case.get("image") and not case.get("sequences"):
            missing.append("image (or sequences)")
        elif not all(entry.get(k) for entry in _image_files(case).values() for k in ("path", "sha256")):
            missing.append("image path/sha256")
        if not missing and case["source"] not in manifest.get("sources", {}):
            missing.append(f"a source named {case['source']!r} in 'sources'")
        if missing:
            problems.append(f"{path}: case {i} ({case.get('id', '?')}) lacks {', '.join(missing)}")
    if problems:
        raise DataError(problems)
    return manifest


def _image_files(case: Mapping) -> dict[str, Mapping]:
    """The image file entries of a case: ``{"image": ...}``, or one per sequence name."""
    return dict(case["sequences"]) if case.get("sequences") else {"image": case["image"]}


def _find(relative: str, roots: Sequence[Path], source_folder: str) -> Path | None:
    for root in roots:
        for candidate in (root / relative, root / source_folder / relative):
            if candidate.exists():
                return candidate
    return None


def _where_to_get(manifest: Mapping, case: Mapping) -> str:
    source = manifest["sources"][case["source"]]
    files = ", ".join(entry["path"] for entry in _image_files(case).values())
    return f"{source['repository']} at {source['commit']}, {source.get('folder', '.')}/: {files}"


def _write_radiograph_mask(src: Path, dst: Path, threshold: int) -> Path:
    """A radiograph's mask (PNG/JPEG, grey or colour) as a 0/255 PNG: lung where the grey level >= ``threshold``."""
    from PIL import Image

    with Image.open(src) as mask:
        grey = np.asarray(mask.convert("L"))
    out = Image.fromarray(np.where(grey >= threshold, 255, 0).astype(np.uint8))
    dst.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(dst, lambda tmp: out.save(tmp, format="PNG"))


def _write_mapped_label(src: Path, dst: Path, mapping: Mapping[str, int]) -> Path:
    """The label with the manifest's values mapped to the bundle's (others to 0), uint8, on the label's grid."""
    image = nib.load(str(src))
    values = np.asarray(image.dataobj)
    out = np.zeros(values.shape, dtype=np.uint8)
    for source_value, target in mapping.items():
        out[values == int(source_value)] = int(target)
    dst.parent.mkdir(parents=True, exist_ok=True)
    mapped = nib.Nifti1Image(out, image.affine)
    mapped.set_qform(image.affine, code=1)
    mapped.set_sform(image.affine, code=1)
    return atomic_write(dst, lambda tmp: nib.save(mapped, tmp))


@dataclass
class PreparedReal:
    """What :func:`prepare_real` found and wrote.

    Attributes:
        found: case id -> its image (and mapped label) paths.
        missing: case id -> where to get it.
        datalists: workflow -> the datalist written.
        in_collection: case id -> the checksum file of its collection, for the cases listed by a collection.
    """

    found: dict[str, dict[str, str]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    datalists: dict[str, str] = field(default_factory=dict)
    in_collection: dict[str, str] = field(default_factory=dict)


def prepare_real(
    from_dirs: Sequence[str | os.PathLike], output_dir: str | os.PathLike, manifest_path: str | os.PathLike = MANIFEST
) -> PreparedReal:
    """Check the real cases found under ``from_dirs`` (and in the repository) and write their datalists.

    Raises:
        DataError: one line per file whose sha256 differs from the manifest's (nothing is written then).
    """
    manifest = load_manifest(manifest_path)
    out = Path(output_dir).resolve()
    result, problems, entries = PreparedReal(), [], {}
    fetched = [Path(d).resolve() for d in from_dirs]  # once, not per case: a collection has hundreds
    for case in manifest["cases"]:
        folder = manifest["sources"][case["source"]].get("folder", ".")
        roots = fetched + ([REPO_ROOT / case["in_repository"]] if case.get("in_repository") else [])
        files = _image_files(case) | ({"label": case["label"]} if case.get("label") else {})
        paths = {role: _find(entry["path"], roots, folder) for role, entry in files.items()}
        if case.get("collection"):
            result.in_collection[case["id"]] = case["collection"]
        if any(p is None for p in paths.values()):
            result.missing[case["id"]] = _where_to_get(manifest, case)
            continue
        for role, entry in files.items():
            digest = sha256_of(paths[role])
            if digest != entry["sha256"]:
                problems.append(f"{paths[role]}: sha256 {digest} differs from {entry['sha256']} in {manifest_path}")
        entries[case["id"]] = (case, paths)
    if problems:
        raise DataError(problems)
    sections: dict[str, dict[str, list]] = {}
    for case_id, (case, paths) in entries.items():
        if case.get("sequences"):
            item = {"image": [str(paths[name]) for name in case["sequences"]], "sequences": list(case["sequences"])}
        else:
            item = {"image": str(paths["image"])}
        item["id"] = case_id
        if "finding" in case:  # a radiograph's finding, and the classifier's class for it (None: it has none)
            item["finding"], item["class_name"] = case["finding"], case["class_name"]
        if "label" in paths and "threshold" in case["label"]:
            label = _write_radiograph_mask(
                paths["label"], out / "labels" / f"{case_id}.png", case["label"]["threshold"]
            )
            item["label"] = str(label)
        elif "label" in paths:
            label = _write_mapped_label(paths["label"], out / "labels" / f"{case_id}.nii.gz", case["label"]["map"])
            item["label"] = str(label)
        # test: a label to score a mask against; findings: a finding only (the classifier's evaluation); unlabelled
        section = "test" if "label" in item else "findings" if "finding" in item else "unlabelled"
        sections.setdefault(case["workflow"], {"test": [], "unlabelled": []}).setdefault(section, []).append(item)
        result.found[case_id] = item
    for workflow, lists in sections.items():
        datalist = {
            "description": f"real public {workflow} cases from {MANIFEST.name}: for evaluation only",
            "training": [],
            **lists,
        }
        path = out / f"{workflow}_real.json"
        write_json_atomic(datalist, path)
        result.datalists[workflow] = str(path)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``prepare-real``: ``--from DIR`` (repeatable) and ``--output-dir``."""
    parser.add_argument(
        "--from",
        dest="from_dirs",
        action="append",
        default=[],
        metavar="DIR",
        help="folder holding fetched files (e.g. a TotalSegmentator checkout); repeatable",
    )
    parser.add_argument("--output-dir", default="runs/real", help="where the datalists and mapped labels go")


def run(args: argparse.Namespace) -> int:
    """Prepare the real cases and print what was found, what is missing and the datalists; 2 on a checksum
    mismatch."""
    try:
        prepared = prepare_real(args.from_dirs, args.output_dir)
    except DataError as error:
        print(f"prepare-real: {error}", file=sys.stderr)
        return 2
    found_in: dict[str, int] = {}
    for case_id, paths in prepared.found.items():
        if case_id in prepared.in_collection:
            found_in[prepared.in_collection[case_id]] = found_in.get(prepared.in_collection[case_id], 0) + 1
            continue
        image = paths["image"]
        shown = (
            image
            if isinstance(image, str)
            else f"{image[0]}" + (f" (+{len(image) - 1} more)" if len(image) > 1 else "")
        )
        print(f"found    {case_id}: {shown}")
    for listing, count in found_in.items():
        print(f"found    {count} cases of the collection {listing}")
    collections: dict[str, list[str]] = {}
    for case_id, where in prepared.missing.items():
        if case_id in prepared.in_collection:
            collections.setdefault(prepared.in_collection[case_id], []).append(case_id)
        else:
            print(f"missing  {case_id}: get it from {where}")
    for listing, case_ids in collections.items():
        source = prepared.missing[case_ids[0]].rsplit(": ", 1)[0]
        print(f"missing  {len(case_ids)} cases of the collection {listing} ({case_ids[0]} ...): get them from {source}")
    for workflow, path in prepared.datalists.items():
        print(f"datalist {workflow}: {path}")
        print(f"  evaluate: radcascade run {workflow} evaluate --set data_list_file_path={path} --set dataset_dir=/")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m data_manifests.real_public --from DIR [--from DIR] [--output-dir DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
