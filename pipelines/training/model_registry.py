"""The bundles' segmenters in the MLflow Model Registry: one model version per checkpoint, with its signature.

The inference stage registers the network it ran, from the run that used it (:class:`ModelRegistration`, called by
:class:`pipelines.training.tracking.TrackedRunHandler` when the run completes). A checkpoint is registered once:
its SHA-256 is a tag of the model version, and a later inference with the same ``model.pt`` finds that version and
records it on its own run (tag ``registered_model_version``) instead of logging the model again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

__all__ = ["ModelRegistration", "file_sha256", "segmenter_signature"]

logger = logging.getLogger(__name__)

CHECKPOINT_TAG = "checkpoint_sha256"
VERSION_TAG = "registered_model_version"
MODEL_ARTIFACT = "segmenter"


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def segmenter_signature(in_channels: int, out_channels: int, spatial_dims: int = 3):
    """The MLflow signature of a segmentation network: ``image`` float32 ``(batch, in_channels, *spatial)`` in,
    ``logits`` float32 ``(batch, out_channels, *spatial)`` out; batch and spatial sizes are free (-1)."""
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    free = (-1,) * spatial_dims
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, in_channels, *free), "image")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, out_channels, *free), "logits")]),
    )


class _DropMessage(logging.Filter):
    def __init__(self, start: str) -> None:
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.start)


class ModelRegistration:
    """Register ``network`` (with the weights of ``ckpt_path``) as a version of the registered model ``name``.

    Args:
        network: the segmentation network, weights loaded.
        name: the registered model's name (``liver_segmenter``).
        ckpt_path: the checkpoint the weights came from; its SHA-256 identifies the version.
        in_channels: input channels, for the signature.
        out_channels: output channels (classes), for the signature.
        spatial_dims: 2 or 3.
        description: the registered model's description (set when the model is created).
        enabled: False turns registration off (``register_model: false`` in the config).
    """

    def __init__(
        self,
        network: torch.nn.Module,
        name: str,
        ckpt_path: str | os.PathLike,
        in_channels: int,
        out_channels: int,
        spatial_dims: int = 3,
        description: str = "",
        enabled: bool = True,
    ) -> None:
        self.network = network
        self.name = name
        self.ckpt_path = Path(ckpt_path)
        self.in_channels, self.out_channels, self.spatial_dims = int(in_channels), int(out_channels), int(spatial_dims)
        self.description = description
        self.enabled = enabled

    def _existing_version(self, client, sha: str):
        for version in client.search_model_versions(f"name = '{self.name}'"):
            if version.tags.get(CHECKPOINT_TAG) == sha:
                return version
        return None

    def log(self, client, run_id: str):
        """Register the checkpoint from run ``run_id`` unless a version of it exists; tag the run with the version.

        Returns:
            the model version (``mlflow.entities.model_registry.ModelVersion``), or None when disabled.
        """
        if not self.enabled:
            return None
        from mlflow.exceptions import MlflowException

        sha = file_sha256(self.ckpt_path)
        try:
            client.get_registered_model(self.name)
        except MlflowException:
            client.create_registered_model(self.name, description=self.description or None)
        version = self._existing_version(client, sha)
        if version is None:
            version = self._register(client, run_id, sha)
            logger.info("registered %s version %s (checkpoint %s)", self.name, version.version, self.ckpt_path)
        else:
            logger.info("%s version %s already holds checkpoint %s", self.name, version.version, self.ckpt_path)
        client.set_tag(run_id, VERSION_TAG, f"{self.name}/{version.version}")
        return version

    def _register(self, client, run_id: str, sha: str):
        import mlflow.pytorch
        import monai

        quiet = _DropMessage("Saving pytorch model by Pickle")  # MLflow's caution about pickle, chosen knowingly
        logging.getLogger("mlflow.pytorch").addFilter(quiet)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                model_dir = Path(tmp) / MODEL_ARTIFACT
                mlflow.pytorch.save_model(
                    self.network,
                    str(model_dir),
                    signature=segmenter_signature(self.in_channels, self.out_channels, self.spatial_dims),
                    # the module pickled: any batch and window size (pt2, MLflow 3's default, fixes traced shapes)
                    serialization_format="pickle",
                    # stated, not inferred: inference would reload the model in a subprocess to trace its imports
                    pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"monai=={monai.__version__}"],
                )
                client.log_artifacts(run_id, str(model_dir), artifact_path=MODEL_ARTIFACT)
        finally:  # a failed save must not leave the filter on MLflow's logger
            logging.getLogger("mlflow.pytorch").removeFilter(quiet)
        source = f"{client.get_run(run_id).info.artifact_uri}/{MODEL_ARTIFACT}"
        return client.create_model_version(
            self.name, source, run_id=run_id, tags={CHECKPOINT_TAG: sha, "checkpoint": str(self.ckpt_path)}
        )
