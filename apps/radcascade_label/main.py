"""MONAI Label app serving radcascade's bundles (liver, lung, brain) to 3D Slicer and other MONAI Label clients.

Start it with ``scripts/start_monailabel.sh /path/to/studies`` (see ``docs/monailabel.md``). Options, as
``--conf KEY VALUE`` (all optional):

    models            liver,lung,...  workflows to serve (default: every workflow of pipelines.workflows with an
                                      inference stage: liver, lung, brain, chest_xray)
    ckpt_root         DIR             DIR/<workflow>/model.pt, classifier.pt (default: bundles/<bundle>/models)
    output_root       DIR             training runs: DIR/<workflow>/ (default: runs/monailabel)
    overrides         JSON            bundle config ids for every stage, e.g. '{"pixdim": [4, 4, 6]}'
    device            cpu | cuda:0    default: CUDA when available
    full_models       true | false    also serve <workflow>_full: plain sliding window, no classifier (true)
    train_classifier  true | false    Train also trains the slice classifier (true)
    skip_trainers     true | false    serve inference only (false)

Each 3D workflow ``w`` gives the infer models ``w`` (the cascade) and ``w_full``, and the trainer ``w``. The chest
X-ray workflow gives the 2D infer model ``chest_xray`` (lung mask and radiograph class), without a trainer; its
radiographs are PNG, JPEG, TIFF or DICOM (``*.dcm``) files in the studies folder.
"""

from __future__ import annotations

import logging
import os

from fastapi import HTTPException
from lib.bundles import AppConf, BundleInfo
from lib.infers import BundleSegmentation, RadiographSegmentation
from lib.request_checks import RequestProblem, check_model_name, check_uploaded_image
from lib.trainers import BundleTrainer
from monailabel.config import settings
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random

from pipelines.validation.path_safety import as_bool
from pipelines.xray.radiograph_reader import RADIOGRAPH_SUFFIXES

logger = logging.getLogger(__name__)

VERSION = "0.1.0"
RADIOGRAPH_EXTENSIONS = tuple(f"*{suffix}" for suffix in RADIOGRAPH_SUFFIXES)
"""Datastore files of a server that serves the chest X-ray workflow (the radiograph reader's suffixes), beside
MONAI Label's defaults."""


class CheckedLocalDatastore(LocalDatastore):
    """MONAI Label's local datastore (the studies folder) that refuses uploads which are no readable image, with an
    HTTP 415 or 422 and a one-line reason, instead of storing them for a later request to fail on. With
    ``radiographs``, single radiograph files (PNG, JPEG, TIFF, DICOM) are taken as well."""

    def __init__(self, *args, radiographs: bool = False, **kwargs) -> None:
        self.radiographs = radiographs
        super().__init__(*args, **kwargs)

    def add_image(self, image_id: str, image_filename: str, image_info: dict) -> str:
        shown = f"upload {image_id or os.path.basename(image_filename)!r}"
        try:
            check_uploaded_image(image_filename, shown=shown, radiographs=self.radiographs)
        except RequestProblem as problem:
            raise HTTPException(status_code=problem.status, detail=problem.reason) from None
        return super().add_image(image_id, image_filename, image_info)


class RadcascadeApp(MONAILabelApp):
    """The project's bundles as MONAI Label models: one segmentation model per workflow and mode, one trainer each."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.app_conf = AppConf.from_conf(conf)
        overrides = {name: self.app_conf.stage_overrides(name) for name in self.app_conf.models}
        self.bundles = {name: BundleInfo.read(name, overrides[name]) for name in self.app_conf.models}
        for name, bundle in self.bundles.items():
            logger.info("serving %s: labels %s, checkpoints in %s", name, bundle.labels, bundle.ckpt_dir)
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="radcascade",
            description="radcascade bundles: slice-classifier-gated 3D segmentation (" + ", ".join(self.bundles) + ")",
            version=VERSION,
        )

    def init_datastore(self) -> Datastore:
        if self.studies.startswith(("http://", "https://")):  # DICOMweb, XNAT, DSA: MONAI Label's own
            return super().init_datastore()
        radiographs = any(bundle.dimension == 2 for bundle in self.bundles.values())
        extensions = list(settings.MONAI_LABEL_DATASTORE_FILE_EXT)
        if radiographs:
            extensions += [e for e in RADIOGRAPH_EXTENSIONS if e not in extensions]
        return CheckedLocalDatastore(
            self.studies,
            radiographs=radiographs,
            extensions=extensions,
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
        )

    def infer(self, request, datastore=None):
        """MONAI Label's ``infer``, after refusing an unknown model or image id with HTTP 404 and a one-line reason
        (MONAI Label itself answers both with a 500 and a traceback in the log)."""
        try:
            check_model_name(request.get("model"), self._infers)
        except RequestProblem as problem:
            raise HTTPException(status_code=problem.status, detail=problem.reason) from None
        image = request.get("image")
        if isinstance(image, str) and not os.path.exists(image):
            if not (datastore or self.datastore()).get_image_uri(image):
                raise HTTPException(
                    status_code=404,
                    detail=f"no image {image!r} in the datastore ({self.studies}): upload it (PUT /datastore/?image="
                    f"{image}) or pick one of GET /datastore/",
                )
        return super().infer(request, datastore)

    def init_infers(self) -> dict[str, InferTask]:
        infers: dict[str, InferTask] = {}
        for name, bundle in self.bundles.items():
            if bundle.dimension == 2:  # radiographs: no cascade, one model
                infers[name] = RadiographSegmentation(bundle, self.app_conf)
                continue
            infers[name] = BundleSegmentation(bundle, self.app_conf, use_cascade=True)
            if self.app_conf.full_models:
                infers[f"{name}_full"] = BundleSegmentation(bundle, self.app_conf, use_cascade=False)
        return infers

    def init_trainers(self) -> dict[str, TrainTask]:
        if as_bool(self.conf.get("skip_trainers", "false"), "--conf skip_trainers"):
            return {}
        trainers = {}
        for name, bundle in self.bundles.items():
            if bundle.dimension == 2:
                logger.info("%s: inference only here; train it with radcascade run %s train", name, name)
                continue
            trainers[name] = BundleTrainer(bundle, self.app_conf)
        return trainers

    def init_strategies(self) -> dict[str, Strategy]:
        return {"random": Random(), "first": First()}
