"""Transforms that read volumes back from the files they came from."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import nibabel as nib
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import LoadImage, MapTransform, Orientation, Transform
from monai.utils import TransformBackends

from pipelines.validation.errors import DataError

_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))  # nibabel's axis codes, stated: MONAI's default is changing

__all__ = ["ReloadFromSource", "ReloadFromSourced"]


class ReloadFromSource(Transform):
    """Replace a transformed ``MetaTensor`` by the volume in its source file (``meta["filename_or_obj"]``).

    Evaluation uses it to score an inverted prediction against the label exactly as stored on disk, rather than
    against a label that was resampled to the training grid and back. Given a ``reference`` (the prediction), a
    volume whose file stores the axes in another order or direction (a label saved with its rows flipped) is
    reoriented to the reference's axis codes, so that voxel ``(i, j, k)`` of both is the same place.

    Args:
        reader: image reader name or class for ``LoadImage`` (None picks one by file type).
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, reader=None) -> None:
        self.loader = LoadImage(reader=reader, image_only=True, ensure_channel_first=True)

    def __call__(self, img: MetaTensor, reference: MetaTensor | None = None) -> MetaTensor:
        source = img.meta.get("filename_or_obj") if isinstance(img, MetaTensor) else None
        if not source:
            raise DataError(f"cannot reload a volume without a source file (got {type(img).__name__} with no filename)")
        volume = self.loader(source)
        if isinstance(reference, MetaTensor):
            codes = "".join(nib.aff2axcodes(reference.affine.numpy()))
            if "".join(nib.aff2axcodes(volume.affine.numpy())) != codes:
                volume = Orientation(axcodes=codes, labels=_RAS_LABELS)(volume)
        return volume


class ReloadFromSourced(MapTransform):
    """Dictionary twin of :class:`ReloadFromSource`.

    Args:
        keys: keys of the volumes to read back from their files.
        reader: image reader name or class for ``LoadImage``.
        ref_key: key of the volume whose axis order the reloaded ones take (the prediction); None keeps the file's.
        allow_missing_keys: don't raise when a key is absent.
    """

    backend = ReloadFromSource.backend

    def __init__(
        self, keys: KeysCollection, reader=None, ref_key: str | None = None, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.reloader = ReloadFromSource(reader)
        self.ref_key = ref_key

    def __call__(self, data: Mapping[Hashable, MetaTensor]) -> dict[Hashable, MetaTensor]:
        d = dict(data)
        reference = d.get(self.ref_key) if self.ref_key is not None else None
        for key in self.key_iterator(d):
            d[key] = self.reloader(d[key], reference)
        return d
