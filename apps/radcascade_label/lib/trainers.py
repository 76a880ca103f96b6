"""MONAI Label train task: the bundle's ``train.yaml`` (layered on ``common.yaml``) on the datastore's labels.

What Slicer's "Train" button starts. MONAI Label runs it in a subprocess of the server; it:

1. takes every image with a ``final`` label (what Slicer's "Submit Label" saves), maps the submitted label values
   to the bundle's by segment name (Slicer numbers segments in its own order), and splits off validation cases;
2. writes them as a MONAI datalist and runs ``train.yaml`` on it, starting from the current checkpoint, with the
   bundle's ``CheckpointSaver`` writing ``model.pt`` into the folder the infer tasks read;
3. then, unless turned off, ``train_classifier.yaml`` on the same datalist (``classifier.pt``, for the cascade).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.tasks.train import TrainTask

from lib.bundles import (
    AppConf,
    BundleInfo,
    as_dict,
    label_value_map,
    remap_label_file,
    run_bundle_stage,
    split_cases,
    split_channels,
)
from pipelines.io.atomic import write_json_atomic
from pipelines.runner import best_validation_metric
from pipelines.validation.path_safety import as_bool
from pipelines.validation.volume_checks import count_channels
from pipelines.xray.radiograph_reader import RADIOGRAPH_SUFFIXES

__all__ = ["BundleTrainer"]

logger = logging.getLogger(__name__)


class BundleTrainer(TrainTask):
    """Train one bundle's segmenter (and slice classifier) on the labelled images of MONAI Label's datastore.

    Request options (Slicer shows :meth:`config` in its training options): ``max_epochs``, ``val_split``,
    ``pretrained`` (start from the current checkpoint), ``train_classifier``, ``classifier_max_epochs``, and
    ``overrides``: bundle config ids for this run only (``{"roi_size": [64, 64, 32]}``; REST clients).
    """

    def __init__(self, bundle: BundleInfo, conf: AppConf) -> None:
        stages = "segmenter (train.yaml)" + (" and slice classifier" if conf.train_classifier else "")
        super().__init__(f"Train the {bundle.name} {stages} on the datastore's final labels")
        self.bundle = bundle
        self.conf = conf
        self.work_dir = conf.output_root / bundle.name / "monailabel"
        self.stats_path = self.work_dir / "train_stats.json"

    def config(self) -> dict[str, Any]:
        return {
            "max_epochs": self.bundle.max_epochs,
            "val_split": 0.2,
            "pretrained": True,
            "train_classifier": self.conf.train_classifier and self.bundle.classifier_max_epochs > 0,
            "classifier_max_epochs": self.bundle.classifier_max_epochs,
        }

    def stats(self) -> dict[str, Any]:
        """The last run's progress as Slicer reads it (``epoch``, ``total_epochs``, ``best_metric``, ``total_time``)."""
        try:
            return json.loads(self.stats_path.read_text())
        except (OSError, ValueError):
            return {}

    def _write_stats(self, **stats) -> None:
        write_json_atomic({"model": self.bundle.name, **stats}, self.stats_path, indent=1)

    def build_datalist(self, datastore: Datastore, val_split: float) -> Path:
        """Write the datastore's final labels as a MONAI datalist (``training``, ``validation``); return its path.

        Studies that cannot belong to this bundle are skipped with a warning: a radiograph (PNG, JPEG, TIFF,
        DICOM file), an image with another number of channels, or a Slicer label none of whose segments is one of
        the bundle's classes.
        """
        tag = DefaultLabelTag.FINAL.value
        entries = {}
        for image_id in datastore.get_labeled_images(tag):
            image = datastore.get_image_uri(image_id)
            if Path(image).suffix.lower() in RADIOGRAPH_SUFFIXES:
                logger.warning("%s: skipping %s (a radiograph, not a volume)", self.bundle.name, image_id)
                continue
            channels = count_channels(image)
            if channels != self.bundle.in_channels:
                logger.warning("%s: skipping %s (%d channels, not %d)", self.bundle.name, image_id, channels,
                               self.bundle.in_channels)  # fmt: skip
                continue
            label_id = datastore.get_label_by_image_id(image_id, tag)
            label = datastore.get_label_uri(label_id, tag)
            label_info = (datastore.get_label_info(label_id, tag) or {}).get("label_info")
            if label_info:  # submitted from Slicer: map its segment numbers to the bundle's values by name
                mapping = label_value_map(label_info, self.bundle.class_names, self.bundle.label_values)
                if not any(mapping.values()):
                    logger.warning("%s: skipping %s (no segment of %s)", self.bundle.name, image_id, self.bundle.labels)
                    continue
                label = str(remap_label_file(label, self.work_dir / "labels" / f"{image_id}.nii.gz", mapping))
            if self.bundle.in_channels > 1:  # a 4D NIfTI study: one file per sequence, as the bundle trains on
                image = split_channels(image, self.work_dir / "images", self.bundle.channel_names)
            entries[image_id] = {"image": image, "label": label}
        train_ids, val_ids = split_cases(list(entries), val_split)
        datalist = {"training": [entries[i] for i in train_ids], "validation": [entries[i] for i in val_ids]}
        path = self.work_dir / "datalist.json"
        write_json_atomic(datalist, path, indent=1)
        logger.info("%s: %d training, %d validation cases -> %s", self.bundle.name, len(train_ids), len(val_ids), path)
        return path

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        start = time.perf_counter()
        name = self.bundle.name
        max_epochs = int(request.get("max_epochs", self.bundle.max_epochs))
        pretrained = as_bool(request.get("pretrained", True), "pretrained")
        default_classifier = self.config()["train_classifier"]
        train_classifier = as_bool(request.get("train_classifier", default_classifier), "train_classifier")
        classifier_epochs = int(request.get("classifier_max_epochs", self.bundle.classifier_max_epochs))
        self._write_stats(epoch=0, total_epochs=max_epochs, stage="train")

        datalist = self.build_datalist(datastore, float(request.get("val_split", 0.2)))
        common = {
            **self.conf.stage_overrides(name),
            **as_dict(request.get("overrides"), "overrides"),
            "data_list_file_path": str(datalist),
            "dataset_dir": str(self.work_dir),
            # the datalist is the app's own, listing the datastore's files by absolute path (outside work_dir)
            "allow_outside_root": True,
            "ckpt_dir": str(self.bundle.ckpt_dir),
        }
        result: dict[str, Any] = {"model": name, "datalist": str(datalist), "checkpoints": {}}
        stages = [("train", max_epochs, self.bundle.model_path)]
        if train_classifier and classifier_epochs > 0:
            stages.append(("train_classifier", classifier_epochs, self.bundle.classifier_path))
        for stage, epochs, checkpoint in stages:
            stage_start = time.perf_counter()
            overrides = {**common, "max_epochs": epochs}
            before = checkpoint.stat().st_mtime_ns if checkpoint.is_file() else None

            def progress(epoch: int, total: int, stage: str = stage) -> None:
                self._write_stats(epoch=epoch, total_epochs=total, stage=stage)

            workflow = run_bundle_stage(
                name, stage, overrides, init_checkpoint=checkpoint if pretrained else None, on_epoch=progress
            )
            if not checkpoint.is_file() or checkpoint.stat().st_mtime_ns == before:
                raise RuntimeError(f"{name} {stage}: finished without writing {checkpoint} (no validation ran?)")
            result["checkpoints"][stage] = str(checkpoint)
            result[f"{stage}_best_metric"] = best_validation_metric(workflow)
            result[f"{stage}_seconds"] = round(time.perf_counter() - stage_start, 1)
        total = round(time.perf_counter() - start, 1)
        self._write_stats(
            epoch=max_epochs,
            total_epochs=max_epochs,
            best_metric=result["train_best_metric"],
            total_time=total,
            checkpoints=result["checkpoints"],
        )
        logger.info("%s: training finished in %.0f s: %s", name, total, result)
        return result
