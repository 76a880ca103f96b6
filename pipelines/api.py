"""Python API: segment a CT or MR volume given as a file, a DICOM folder, a nibabel image or an array with its affine,
and a radiograph given as a file.

    from pipelines.api import Segmenter
    segment = Segmenter("liver")                      # the bundle's trained models, cascade on
    mask = segment("ct.nii.gz")                       # MetaTensor (1, X, Y, Z), uint8, the input's geometry
    mask = segment(nib.load("ct.nii.gz"))             # same result from an in-memory image
    mask = Segmenter("brain")([flair, t1ce], sequences=["FLAIR", "T1ce"])   # a study with two sequences
    print(segment.last_report)                        # the cascade's report: slabs, seconds, voxels segmented

    xray = RadiographSegmenter()                      # the chest X-ray models of the lung bundle
    lungs = xray("cxr.png")                           # MetaTensor (1, width, height), uint8 0/1, the input's size
    print(xray.last_classification)                   # {"predicted_class": "Normal", "probabilities": {...}}

It runs the same config ids as ``inference.yaml`` (preprocessing, cascade inferer, ``prediction_postprocessing``,
``prediction_mapping``), minus the file writing; :class:`RadiographSegmenter` those of ``inference_xray.yaml``.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, SaveImaged

from pipelines.inference.cascade import input_facts
from pipelines.workflows import get_workflow

__all__ = ["Segmenter", "RadiographSegmenter", "load_weights"]


def load_weights(network: torch.nn.Module, path: str) -> torch.nn.Module:
    """Load a bundle checkpoint (a plain state dict, read with ``weights_only=True``) into ``network``; eval mode."""
    if not os.path.isfile(path):
        raise ValueError(f"{path}: checkpoint not found (train the bundle first, or pass ckpt_dir=...)")
    network.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return network.eval()


class Segmenter:
    """A workflow's trained segmenter (gated by its slice classifier when ``use_cascade``), callable on one image.

    Args:
        workflow: name in ``pipelines.workflows.WORKFLOWS``.
        use_cascade: gate the segmenter with the slice classifier, as ``inference.yaml`` does by default.
        **overrides: config ids to override (``ckpt_dir``, ``device``, ``sw_batch_size``, ``cascade_threshold``...).
    """

    def __init__(self, workflow: str = "liver", use_cascade: bool = True, **overrides) -> None:
        parser = get_workflow(workflow).config_parser("inference", {"use_cascade": use_cascade, **overrides})
        self.device = parser.get_parsed_content("device")
        self.network = load_weights(parser.get_parsed_content("network"), parser.get_parsed_content("ckpt_path"))
        if use_cascade:
            load_weights(
                parser.get_parsed_content("classifier_network"), parser.get_parsed_content("classifier_ckpt_path")
            )
        self.inferer = parser.get_parsed_content("cascade_inferer")
        self.file_preprocessing = Compose(parser.get_parsed_content("preprocessing_transforms"))
        # an in-memory image skips the loader but is checked and resampled the same way
        load = parser.get_parsed_content("load_transforms")
        checks = [t for t in load if not isinstance(t, LoadImaged)]
        self.array_preprocessing = Compose(checks + parser.get_parsed_content("spatial_transforms"))
        self.postprocessing = Compose(
            parser.get_parsed_content("prediction_postprocessing") + [parser.get_parsed_content("prediction_mapping")]
        )
        self.last_input: dict = {}

    @property
    def last_report(self) -> dict | None:
        """The cascade report of the last call (None without the cascade). :attr:`last_input` says what the last
        input held, with or without the cascade: ``sequences_used`` (brain MRI: the sequences the study had) and
        ``brain_extraction`` (``extracted`` or ``skull-stripped input``)."""
        reports = getattr(self.inferer, "reports", [])
        return reports[-1] if reports and self.inferer.enabled else None

    def _prepare(self, image, sequences=None) -> dict:
        if isinstance(image, (str, os.PathLike)):
            return self.file_preprocessing({"image": str(image)})
        if isinstance(image, (list, tuple)):  # one file per MRI sequence (brain), ``sequences`` naming them
            data = {"image": [str(p) for p in image]}
            return self.file_preprocessing(data | ({"sequences": sequences} if sequences is not None else {}))
        if hasattr(image, "affine") and hasattr(image, "dataobj"):  # a nibabel image
            array = np.asanyarray(image.dataobj)
            meta = {"filename_or_obj": image.get_filename() or "image"}
            image = MetaTensor(torch.as_tensor(array.astype(np.float32)), affine=image.affine, meta=meta)
        if not isinstance(image, MetaTensor):
            raise ValueError("give a path, a nibabel image, or a MetaTensor (X, Y, Z) carrying its affine")
        # the geometry the prediction is resampled back to, as LoadImage records it for files; a new MetaTensor
        # on the same voxels, so the caller's metadata is left as it was
        source = {"original_affine": np.asarray(image.affine, dtype=np.float64), "spatial_shape": image.shape[-3:]}
        image = MetaTensor(image.as_tensor(), meta={**source, **image.meta})
        data = EnsureChannelFirstd("image", channel_dim="no_channel")({"image": image})
        return self.array_preprocessing(data)

    @torch.inference_mode()
    def __call__(self, image, sequences=None) -> MetaTensor:
        """Segment ``image``; returns a uint8 label map ``(1, X, Y, Z)`` on the input's grid and affine.

        ``image`` may also list one file per MRI sequence (the brain bundle); ``sequences`` then names them
        (``["FLAIR", "T1ce"]``) when they are not all of the bundle's, in its order."""
        data = self._prepare(image, sequences)
        self.last_input = input_facts(data["image"])
        batch = data["image"][None].to(self.device)
        data["pred"] = self.inferer(batch, self.network)[0]
        pred = self.postprocessing(data)["pred"]
        return pred.to(torch.uint8) if isinstance(pred, torch.Tensor) else pred

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device}, cascade={self.inferer.enabled})"


class RadiographSegmenter:
    """The chest X-ray workflow's lung segmenter, and optionally its radiograph classifier, callable on one file.

    It runs the config ids of ``inference_xray.yaml``: the radiograph reader (PNG/JPEG/TIFF, DICOM CR/DX), the
    aspect-keeping resize, the 2D U-Net, ``Invertd`` back to the input's size and the lung post-processing; the
    classifier reads the same file through ``classifier_preprocessing_transforms``.

    Args:
        workflow: a 2D workflow of ``pipelines.workflows.WORKFLOWS`` (``chest_xray``).
        classify: also run the classifier (needs its checkpoint); :attr:`last_classification` then holds its answer.
        **overrides: config ids to override (``ckpt_dir``, ``device``, ``allow_lateral_views``...).
    """

    def __init__(self, workflow: str = "chest_xray", classify: bool = True, **overrides) -> None:
        parser = get_workflow(workflow).config_parser("inference", overrides)
        if parser.get("network_def#spatial_dims") != 2:
            raise ValueError(f"{workflow} is not a radiograph workflow; segment volumes with Segmenter({workflow!r})")
        self.device = parser.get_parsed_content("device")
        self.network = load_weights(parser.get_parsed_content("network"), parser.get_parsed_content("ckpt_path"))
        self.inferer = parser.get_parsed_content("inferer")
        self.preprocessing = parser.get_parsed_content("preprocessing")  # the instance that Invertd undoes
        steps = parser.get_parsed_content("postprocessing").transforms  # the stage writes masks; here they are returned
        self.postprocessing = Compose([t for t in steps if not isinstance(t, SaveImaged)])
        self.classifier = None
        if classify:
            self.classifier = load_weights(
                parser.get_parsed_content("classifier_network"), parser.get_parsed_content("classifier_ckpt_path")
            )
            self.class_names = [str(c) for c in parser.get_parsed_content("classifier_class_names")]
            self.classifier_preprocessing = Compose(parser.get_parsed_content("classifier_preprocessing_transforms"))
        self.last_classification: dict | None = None

    @torch.inference_mode()
    def classify(self, path: str | os.PathLike) -> dict:
        """The classifier's answer for one radiograph: ``{"predicted_class": name, "probabilities": {name: p}}``."""
        if self.classifier is None:
            raise ValueError("this RadiographSegmenter was made with classify=False")
        image = self.classifier_preprocessing({"image": str(path)})["image"]
        logits = self.classifier(image[None].to(self.device).as_tensor())
        probabilities = torch.softmax(logits.float().flatten(), dim=0).cpu().tolist()
        if len(probabilities) != len(self.class_names):
            raise ValueError(
                f"the classifier gives {len(probabilities)} scores for {len(self.class_names)} classes "
                f"({self.class_names}): set classifier_class_names to the classes it was trained on"
            )
        best = max(range(len(probabilities)), key=probabilities.__getitem__)
        return {
            "predicted_class": self.class_names[best],
            "probabilities": {c: round(p, 6) for c, p in zip(self.class_names, probabilities, strict=True)},
        }

    @torch.inference_mode()
    def __call__(self, path: str | os.PathLike) -> MetaTensor:
        """Segment the lungs of the radiograph file ``path``; returns a uint8 mask ``(1, width, height)`` (1: lung)
        at the file's own size (the layout of ``PILReader``: the numpy image transposed). The classifier's answer,
        when it runs, goes to :attr:`last_classification`.

        Raises:
            DataError: when the file is no frontal grey radiograph the reader takes, naming it and the problem.
        """
        data = self.preprocessing({"image": str(path)})
        data["pred"] = self.inferer(data["image"][None].to(self.device), self.network)[0]
        pred = self.postprocessing(data)["pred"]
        self.last_classification = self.classify(path) if self.classifier is not None else None
        return pred.to(torch.uint8)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device}, classify={self.classifier is not None})"
