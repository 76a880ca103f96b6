"""Fill a MONAI Label studies folder from the inputs the bundles read: one NIfTI per study.

MONAI Label's local datastore takes one image file per study (NIfTI or NRRD). This turns into such files:
DICOM series folders, NIfTI / NRRD / MetaImage files, and, for a multi-sequence workflow (the brain), patient
folders with one file per sequence (BraTS: ``<case>_flair.nii.gz``, ``_t1``, ``_t1ce``, ``_t2``), stacked into one
4D NIfTI ``(X, Y, Z, C)`` in the bundle's sequence order; a sequence the folder lacks (FLAIR and T1ce only) is a
channel of zeros, which the bundle reads as a missing sequence (``transforms/sequences.py``). A patient folder's
``<case>_seg`` file, when there, is copied to ``labels/final/`` (MONAI Label's submitted labels), so training can
start from existing annotations.

    python apps/radcascade_label/prepare_studies.py /data/BraTS2021 /data/studies_brain --workflow brain
    python apps/radcascade_label/prepare_studies.py /data/ct_dicom /data/studies_liver       # DICOM series
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.transforms import LoadImage

from pipelines.io.inputs import IMAGE_SUFFIXES, case_name, list_inference_inputs
from pipelines.workflows import get_workflow
from transforms.sequences import FillMissingSequences

__all__ = ["prepare_studies", "main"]

logger = logging.getLogger("prepare_studies")


def _sequence_setup(workflow: str) -> tuple[FillMissingSequences | None, list[str] | None, bool]:
    """For a multi-sequence workflow: the transform that puts a study's channels in the bundle's order (zeros for
    a missing sequence), the file-name suffixes, and whether a study may lack sequences; else (None, None, False)."""
    parser = get_workflow(workflow).config_parser("inference")
    if "sequence_suffixes" not in parser:
        return None, None, False
    suffixes = list(parser.get_parsed_content("sequence_suffixes"))
    fill = FillMissingSequences(list(parser.get_parsed_content("sequences")), aliases=suffixes)
    allow_missing = (
        bool(parser.get_parsed_content("allow_missing_sequences")) if "allow_missing_sequences" in parser else False
    )
    return fill, suffixes, allow_missing


def _label_beside(files: list[str]) -> Path | None:
    """The ``<case>_seg`` / ``<case>-seg`` image in the folder of a patient's sequence files, if any."""
    folder = Path(files[0]).parent
    for child in sorted(folder.iterdir()):
        if child.name.lower().endswith(IMAGE_SUFFIXES) and case_name(child).lower().endswith(("_seg", "-seg")):
            return child
    return None


def prepare_studies(source: str | os.PathLike, studies: str | os.PathLike, workflow: str = "liver") -> list[Path]:
    """Write every input under ``source`` as ``<studies>/<case>.nii.gz``; return the files written.

    Raises:
        ValueError: when ``source`` holds no input, a patient folder lacks a sequence the bundle needs
            (``allow_missing_sequences`` false), or two inputs share a name.
    """
    studies = Path(studies)
    (studies / "labels" / "final").mkdir(parents=True, exist_ok=True)
    load = LoadImage(image_only=True, ensure_channel_first=True)
    fill, suffixes, allow_missing = _sequence_setup(workflow)
    written = []
    for item in list_inference_inputs(source, sequences=suffixes, allow_missing_sequences=allow_missing):
        image = item["image"]
        multi = isinstance(image, list)
        case = Path(image[0]).parent.name if multi else case_name(image)
        out = studies / f"{case}.nii.gz"
        if out in written:
            raise ValueError(f"{image}: a second study named {case!r} (rename one of them)")
        volume = load(image)  # (C, X, Y, Z), affine in RAS as MONAI reads it
        if multi and fill is not None:  # the bundle's channel order; a missing sequence is a channel of zeros
            volume = fill(volume, present=item.get("sequences"))
        array = np.moveaxis(volume.numpy(), 0, -1) if volume.shape[0] > 1 else volume.numpy()[0]
        nifti = nib.Nifti1Image(array, np.asarray(volume.affine, dtype=np.float64))
        nifti.set_qform(nifti.affine, code=1)
        nifti.set_sform(nifti.affine, code=1)
        nib.save(nifti, out)
        written.append(out)
        label = _label_beside(image) if multi else None
        if label is not None:
            suffix = next(s for s in IMAGE_SUFFIXES if label.name.lower().endswith(s))
            shutil.copy(label, studies / "labels" / "final" / f"{case}{suffix}")
        logger.info("%s -> %s%s", image, out, f" (label {label.name})" if label else "")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="an image, a DICOM series folder, or a folder of them / of patient folders")
    parser.add_argument("studies", help="the MONAI Label studies folder to fill (created if missing)")
    parser.add_argument("--workflow", default="liver", help="workflow whose inputs these are (brain: sequences)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        written = prepare_studies(args.source, args.studies, args.workflow)
    except ValueError as e:
        logger.error("%s", e)
        return 1
    logger.info("%d studies in %s", len(written), args.studies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
