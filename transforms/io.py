"""Transforms that read volumes back from the files they came from."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import LoadImage, MapTransform, Transform
from monai.utils import TransformBackends

from pipelines.validation.errors import DataError

__all__ = ["ReloadFromSource", "ReloadFromSourced"]


class ReloadFromSource(Transform):
    """Replace a transformed ``MetaTensor`` by the volume in its source file (``meta["filename_or_obj"]``).

    Evaluation uses it to score an inverted prediction against the label exactly as stored on disk, rather than
    against a label that was resampled to the training grid and back.

    Args:
        reader: image reader name or class for ``LoadImage`` (None picks one by file type).
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, reader=None) -> None:
        self.loader = LoadImage(reader=reader, image_only=True, ensure_channel_first=True)

    def __call__(self, img: MetaTensor) -> MetaTensor:
        source = img.meta.get("filename_or_obj") if isinstance(img, MetaTensor) else None
        if not source:
            raise DataError(f"cannot reload a volume without a source file (got {type(img).__name__} with no filename)")
        return self.loader(source)


class ReloadFromSourced(MapTransform):
    """Dictionary twin of :class:`ReloadFromSource`.

    Args:
        keys: keys of the volumes to read back from their files.
        reader: image reader name or class for ``LoadImage``.
        allow_missing_keys: don't raise when a key is absent.
    """

    backend = ReloadFromSource.backend

    def __init__(self, keys: KeysCollection, reader=None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.reloader = ReloadFromSource(reader)

    def __call__(self, data: Mapping[Hashable, MetaTensor]) -> dict[Hashable, MetaTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.reloader(d[key])
        return d
