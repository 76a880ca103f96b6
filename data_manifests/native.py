"""Find which public dataset layout a folder holds and write its datalist, for training straight from it.

The GPU training preset (``bundles/<bundle>/train_gpu.yaml``) takes a downloaded dataset folder as it comes
(``--dataset_dir /data/Task03_Liver``) instead of a datalist: this module recognises the folder's layout among those
the workflow knows and writes the datalist with that layout's builder, split by patient with the run's seed. The
same folder and seed give the same split every time, so a resumed training sees the same cases.

    write_native_datalist("liver", "/data/Task03_Liver", "runs/liver/datalist.json")   # MSD: dataset.json
    write_native_datalist("liver", "/data/LiTS", "runs/liver/datalist.json")           # volume-N / segmentation-N

Layouts per workflow (:data:`NATIVE_LAYOUTS`): liver: Medical Segmentation Decathlon task (Task03_Liver), LiTS;
lung: Decathlon task (Task06_Lung), COVID-19-20; brain: BraTS (one folder per patient).
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipelines.validation.errors import DataError

__all__ = ["Layout", "NATIVE_LAYOUTS", "detect_layout", "write_native_datalist"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layout:
    """A public dataset's folder layout: how to recognise it and which builder lists its cases.

    Attributes:
        name: what the user knows it as (``"Medical Segmentation Decathlon"``).
        example: a file or folder of the layout, for error messages.
        marker: a file name (matched anywhere under the folder) that only this layout has.
        builder: dotted name of its ``build_*_datalist(root, **options)``.
        at_root: the marker must sit in the folder itself (``dataset.json``), not in a sub-folder.
    """

    name: str
    example: str
    marker: re.Pattern
    builder: str
    at_root: bool = False

    def matches(self, root: Path) -> bool:
        """Whether ``root`` holds a file named like the layout's marker (stops at the first one found)."""
        if self.at_root:
            return any(self.marker.match(p.name) for p in root.iterdir() if p.is_file())
        for _, _, filenames in os.walk(root):
            if any(self.marker.match(name) for name in filenames):
                return True
        return False

    def build(self, root: Path, **options) -> dict:
        """Run the layout's datalist builder on ``root``."""
        module, _, function = self.builder.rpartition(".")
        return getattr(importlib.import_module(module), function)(root, **options)


_MSD = Layout(
    "Medical Segmentation Decathlon", "dataset.json beside imagesTr/ and labelsTr/", re.compile(r"^dataset\.json$"),
    "data_manifests.msd.build_msd_datalist", at_root=True,
)  # fmt: skip
_LITS = Layout(
    "LiTS", "volume-0.nii / segmentation-0.nii", re.compile(r"^volume-\d+\.nii(\.gz)?$"),
    "data_manifests.lits.build_lits_datalist",
)  # fmt: skip
_COVID19_20 = Layout(
    "COVID-19-20", "<case>_ct.nii.gz / <case>_seg.nii.gz", re.compile(r"^.+_ct\.nii(\.gz)?$"),
    "data_manifests.covid19_20.build_covid19_20_datalist",
)  # fmt: skip
_BRATS = Layout(
    "BraTS", "<patient>/<patient>_flair.nii.gz (or BraTS 2023's -t2f.nii.gz) and _seg",
    re.compile(r"^.+(_flair|-t2f)\.nii(\.gz)?$"), "data_manifests.brats.build_brats_datalist",
)  # fmt: skip

#: The layouts each workflow trains from, tried in this order.
NATIVE_LAYOUTS: dict[str, tuple[Layout, ...]] = {
    "liver": (_MSD, _LITS),
    "lung": (_MSD, _COVID19_20),
    "brain": (_BRATS,),
}


def detect_layout(workflow: str, dataset_dir: str | os.PathLike) -> Layout:
    """The first of ``workflow``'s layouts that ``dataset_dir`` holds.

    Raises:
        DataError: the folder does not exist, or holds none of the layouts (the message lists them).
        ValueError: ``workflow`` trains from no native layout.
    """
    if workflow not in NATIVE_LAYOUTS:
        raise ValueError(f"workflow {workflow!r} has no native dataset layout; known: {sorted(NATIVE_LAYOUTS)}")
    root = Path(dataset_dir)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found (dataset_dir)")
    layouts = NATIVE_LAYOUTS[workflow]
    for layout in layouts:
        if layout.matches(root):
            return layout
    known = "; ".join(f"{layout.name} ({layout.example})" for layout in layouts)
    raise DataError(f"{root}: not a {workflow} dataset in a layout this bundle reads; expected one of: {known}")


def write_native_datalist(
    workflow: str,
    dataset_dir: str | os.PathLike,
    output_path: str | os.PathLike,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.1,
    log: Callable[[str], None] | None = None,
) -> str:
    """Write the datalist of the dataset folder ``dataset_dir`` to ``output_path`` and return that path.

    Paths in the datalist are relative to ``dataset_dir`` (the bundles load it with ``base_dir=@dataset_dir``).
    The files are not read here: the training stage checks every entry before it starts (``validate_data``).

    Args:
        workflow: ``liver``, ``lung`` or ``brain``.
        dataset_dir: the dataset as downloaded (``/data/Task03_Liver``).
        output_path: the JSON file to write (atomically), e.g. ``<output_dir>/datalist.json``.
        seed: seed of the split by patient.
        val_fraction: share of patients for validation.
        test_fraction: share of patients kept for evaluation.
        log: where to say which layout was found (default: this module's logger).

    Returns:
        ``output_path`` as a string, for the config's ``data_list_file_path``.

    Raises:
        DataError: unknown layout, or the builder's own problems (a volume without its label, ...), each naming
            the file.
    """
    layout = detect_layout(workflow, dataset_dir)
    Path(output_path).parent.mkdir(parents=True, exist_ok=True)
    datalist = layout.build(
        Path(dataset_dir),
        output_path=output_path,
        relative_to=dataset_dir,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        validate=False,
        slice_counts=False,
    )
    counts = {section: len(datalist.get(section, [])) for section in ("training", "validation", "test")}
    (log or logger.info)(
        f"{dataset_dir}: {layout.name} layout; {counts['training']} training, {counts['validation']} validation, "
        f"{counts['test']} test cases (seed {seed}) -> {output_path}"
    )
    return str(output_path)
