"""MONAI Label infer tasks: a bundle's segmenter, gated by its slice classifier (the cascade) or on the whole volume;
and the chest X-ray workflow's lung segmenter and classifier on one radiograph.

The task hands the image's path alone to :class:`pipelines.api.Segmenter`, which runs the bundle's own
``preprocessing_transforms``, cascade inferer, ``Invertd`` and post-processing. It never passes MONAI Label's
request dict to the bundle's transforms: MONAI Label's ``BasicInferTask`` puts an ``image_path`` string beside
``image``, which MONAI 1.6 takes for metadata of ``image`` (any ``image_*`` key), and ``Spacingd`` then fails with
``'str' object has no attribute 'update'``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from typing import Any

from fastapi import HTTPException
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from lib.bundles import AppConf, BundleInfo, write_label_volume, write_radiograph_label
from lib.request_checks import RequestProblem, check_image_for_model, check_radiograph_for_model
from pipelines.api import RadiographSegmenter, Segmenter
from pipelines.inference.gate_thresholds import gate_thresholds_path
from pipelines.validation.errors import DataError

__all__ = ["BundleSegmentation", "RadiographSegmentation"]

logger = logging.getLogger(__name__)


class _CheckpointedModel(InferTask):
    """What the app's infer tasks share: listed before training, the models built on the first request and again
    whenever a file they read changes (after a training run), HTTP 409 while a checkpoint is missing.

    Subclasses give :meth:`checkpoints`, :meth:`_build` and ``how_to_train`` (the 409's advice)."""

    how_to_train = ""

    def __init__(self, bundle: BundleInfo, conf: AppConf, dimension: int, description: str) -> None:
        super().__init__(
            type=InferType.SEGMENTATION, labels=bundle.labels, dimension=dimension, description=description
        )
        self.bundle = bundle
        self.conf = conf
        self._lock = threading.Lock()  # one model instance; MONAI Label may call from a thread pool
        self._model = None
        self._stamp: tuple | None = None

    def is_valid(self) -> bool:
        return True  # listed even before training, so that Slicer shows it; a request then says what is missing

    def get_path(self, validate: bool = True):
        path = str(self.bundle.model_path)
        return path if not validate or os.path.isfile(path) else None

    def checkpoints(self) -> list[str]:
        """The checkpoint files the model needs."""
        raise NotImplementedError

    def watched_files(self) -> list[str]:
        """The files whose change reloads the model: the checkpoints, and what subclasses add."""
        return self.checkpoints()

    def _build(self, overrides: dict):
        raise NotImplementedError

    def _load(self):
        missing = [p for p in self.checkpoints() if not os.path.isfile(p)]
        if missing:
            raise HTTPException(
                status_code=409,
                detail=f"{self.bundle.name}: no trained weights: {', '.join(missing)} not found. {self.how_to_train}",
            )
        stamp = tuple(os.stat(p).st_mtime_ns if os.path.exists(p) else None for p in self.watched_files())
        if self._model is None or stamp != self._stamp:
            logger.info("%s: loading %s", self.bundle.name, self.checkpoints())
            overrides = self.conf.stage_overrides(self.bundle.name)
            overrides["ckpt_dir"] = str(self.bundle.ckpt_dir)
            try:
                self._model = self._build(overrides)
            except (RuntimeError, EOFError) as e:  # e.g. a checkpoint that a training run is still writing
                if self._model is None:
                    raise
                logger.warning("%s: new checkpoint not loaded, keeping the weights in use: %s", self.bundle.name, e)
                return self._model
            self._stamp = stamp
        return self._model


class BundleSegmentation(_CheckpointedModel):
    """Automatic segmentation of a whole volume by one bundle, as Slicer's "Auto Segmentation" runs it.

    The models load on the first request and again whenever a checkpoint file (or the gate's calibrated
    thresholds) changes, after a training run. Without a checkpoint the request fails with HTTP 409 and a message
    saying how to get one; an image the model cannot segment (the wrong number of channels, a blank volume, a CT
    not in Hounsfield units) with HTTP 422 (:func:`lib.request_checks.check_image_for_model`).

    Args:
        bundle: the served workflow.
        conf: the app's options (checkpoint folder, overrides, device).
        use_cascade: gate the segmenter with the slice classifier (needs ``classifier.pt``); False: plain sliding
            window over the whole volume (needs ``model.pt`` only).
    """

    def __init__(self, bundle: BundleInfo, conf: AppConf, use_cascade: bool = True) -> None:
        how = "cascade: slice classifier, then 3D U-Net on the slabs" if use_cascade else "3D U-Net, whole volume"
        super().__init__(bundle, conf, dimension=3, description=f"{bundle.description} ({how})")
        self.use_cascade = use_cascade
        self.how_to_train = (
            f"Train the model first (Slicer: Train; REST: POST /train/{bundle.name}), or start the server with "
            "--conf ckpt_root DIR where DIR/<workflow>/ holds model.pt (and classifier.pt for the cascade)."
        )

    def checkpoints(self) -> list[str]:
        """The checkpoint files this model reads."""
        paths = [self.bundle.model_path] + ([self.bundle.classifier_path] if self.use_cascade else [])
        return [str(p) for p in paths]

    def watched_files(self) -> list[str]:
        """The checkpoints, and the gate's calibrated thresholds (written after the classifier's training ends),
        so that a new training is picked up whole."""
        extra = [str(gate_thresholds_path(self.bundle.classifier_path))] if self.use_cascade else []
        return self.checkpoints() + extra

    def _build(self, overrides: dict) -> Segmenter:
        overrides["cascade_report_dir"] = None  # the report comes back in the response instead
        return Segmenter(self.bundle.name, use_cascade=self.use_cascade, **overrides)

    def _check_image(self, image) -> str:
        if not isinstance(image, str):
            raise HTTPException(status_code=422, detail=f"{self.bundle.name}: give the image as a path or datastore id")
        try:
            check_image_for_model(image, self.bundle.name, self.bundle.in_channels, self.bundle.modality)
        except RequestProblem as problem:
            reason = problem.reason
            if self.bundle.sequences and "-channel images" in reason:
                reason += f" ({', '.join(self.bundle.sequences)}, in that order; a multi-sequence study is one 4D "
                reason += "NIfTI (X, Y, Z, C))"
            raise HTTPException(status_code=problem.status, detail=reason) from None
        return image

    def __call__(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        image = self._check_image(request.get("image"))
        start = time.perf_counter()
        with self._lock:
            segmenter = self._load()
            loaded = time.perf_counter()
            mask = segmenter(image)
            report = segmenter.last_report
            facts = segmenter.last_input
        inferred = time.perf_counter()
        out = tempfile.NamedTemporaryFile(suffix=".nii.gz", prefix=f"{self.bundle.name}_", delete=False).name
        write_label_volume(mask, mask.affine, out)
        params = {
            "label_names": self.bundle.labels,
            "latencies": {
                "load": round(loaded - start, 3),
                "infer": round(inferred - loaded, 3),
                "write": round(time.perf_counter() - inferred, 3),
                "total": round(time.perf_counter() - start, 3),
            },
        }
        if facts:  # brain MRI: the sequences the study had, and whether its brain was extracted
            params["input"] = facts
        if report is not None:
            params["cascade"] = {
                k: report[k]
                for k in (
                    "kept", "followed", "slices_kept", "slabs", "one_pass", "slices_segmented", "num_slices", "seconds",
                )
            }  # fmt: skip
            params["cascade"]["slice_probabilities"] = report["slice_probabilities"]
        logger.info("%s: %s -> %s in %.2f s", self.bundle.name, image, out, params["latencies"]["total"])
        return out, params


class RadiographSegmentation(_CheckpointedModel):
    """The chest X-ray workflow on one radiograph (PNG, JPEG, TIFF, DICOM CR/DX), as Slicer's "Auto Segmentation"
    runs it: the lung mask comes back as a label image on the radiograph's own pixel grid (NIfTI, with the geometry
    ITK, and so Slicer, reads from the file), and the classifier's answer in the response's ``params``
    (``classification``: the predicted class and each class's probability).

    The models load on the first request and again whenever a checkpoint file changes. Without a checkpoint the
    request fails with HTTP 409; a file that is no frontal grey radiograph (a volume, a colour photograph, a
    lateral view) with HTTP 422, naming the problem.

    Args:
        bundle: the served 2D workflow (``chest_xray``).
        conf: the app's options (checkpoint folder, overrides, device).
    """

    def __init__(self, bundle: BundleInfo, conf: AppConf) -> None:
        description = f"{bundle.description} (lung mask and radiograph class)"
        super().__init__(bundle, conf, dimension=2, description=description)
        self.allow_lateral = bool(conf.overrides.get("allow_lateral_views", False))
        self.how_to_train = (
            f"Train the models first (radcascade demo {bundle.name}, or the train and train_classifier stages), or "
            "start the server with --conf ckpt_root DIR where DIR/<workflow>/ holds them."
        )

    def checkpoints(self) -> list[str]:
        """The checkpoint files this model reads: the lung segmenter's and the classifier's."""
        return [str(self.bundle.model_path), str(self.bundle.classifier_path)]

    def _build(self, overrides: dict) -> RadiographSegmenter:
        return RadiographSegmenter(self.bundle.name, classify=True, **overrides)

    def __call__(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        image = request.get("image")
        if not isinstance(image, str):
            raise HTTPException(status_code=422, detail=f"{self.bundle.name}: give the image as a path or datastore id")
        try:
            check_radiograph_for_model(image, self.bundle.name, self.allow_lateral)
        except RequestProblem as problem:
            raise HTTPException(status_code=problem.status, detail=problem.reason) from None
        start = time.perf_counter()
        with self._lock:
            model = self._load()
            loaded = time.perf_counter()
            try:
                mask = model(image)
            except DataError as error:  # what the reader found only while decoding
                raise HTTPException(status_code=422, detail="; ".join(error.problems)) from None
            classification = model.last_classification
        inferred = time.perf_counter()
        out = tempfile.NamedTemporaryFile(suffix=".nii.gz", prefix=f"{self.bundle.name}_", delete=False).name
        write_radiograph_label(mask, image, out)
        width, height = (int(n) for n in mask.shape[-2:])
        params = {
            "label_names": self.bundle.labels,
            "classification": classification,
            "input": {"width": width, "height": height, "lung_fraction": round(float(mask.float().mean()), 4)},
            "latencies": {
                "load": round(loaded - start, 3),
                "infer": round(inferred - loaded, 3),
                "write": round(time.perf_counter() - inferred, 3),
                "total": round(time.perf_counter() - start, 3),
            },
        }
        logger.info(
            "%s: %s -> %s (%s) in %.2f s",
            self.bundle.name,
            image,
            out,
            classification["predicted_class"],
            params["latencies"]["total"],
        )
        return out, params
