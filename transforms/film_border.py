"""Train on radiographs that do not fill their frame: the film or detector image shrunk onto a black (or white)
border, as film scanners and some exports give them.

Real radiographs often carry wide uniform margins: a scanned film sits on the scanner's black bed (a third of the
height black below the film in some Shenzhen radiographs), a detector's unexposed edge, a white collimator margin.
A model that has only seen radiographs filling the frame takes a wide black band for lung (the darkest thing it
knows) and, after keeping the two largest lung regions, drops a real lung for it. :class:`RandFilmBorder` shrinks a
radiograph along each axis by its own factor and puts it at a random place on a canvas of its size filled with the
image's darkest (or, less often, brightest) grey level; the mask is shrunk with it and is background outside.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch
import torch.nn.functional as F
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import RandomizableTransform
from monai.utils import TransformBackends, convert_to_dst_type, ensure_tuple_rep

from .same_draw import SameDrawForEveryKeyd

__all__ = ["RandFilmBorder", "RandFilmBorderd"]

FILL_FILM = "film"
"""Fill with the drawn border: the image's own darkest grey level, or its brightest with ``bright_prob``."""


class RandFilmBorder(RandomizableTransform):
    """With probability ``prob``, shrink a channel-first 2D image by a factor drawn per axis from ``scale_range``,
    place it at a random offset on a canvas of the same size, and fill the rest.

    Args:
        prob: probability of applying.
        scale_range: ``(low, high)`` of the per-axis shrink factor, ``0 < low <= high <= 1``.
        bright_prob: probability that the border is the image's brightest grey level instead of its darkest.
        mode: interpolation of the shrink (``torch.nn.functional.interpolate``): ``"area"`` for images,
            ``"nearest"`` for masks.
        fill: the border's value: :data:`FILL_FILM` (the drawn dark or bright border) or a number (0 for masks).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        prob: float = 0.1,
        scale_range: Sequence[float] = (0.6, 1.0),
        bright_prob: float = 0.2,
        mode: str = "area",
        fill: str | float = FILL_FILM,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        low, high = (float(v) for v in scale_range)
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"RandFilmBorder scale_range must satisfy 0 < low <= high <= 1, got {scale_range}")
        self.scale_range = (low, high)
        self.bright_prob = float(bright_prob)
        self.mode = mode
        self.fill = fill
        self._draw: tuple[tuple[int, int], tuple[int, int], bool] | None = None

    def randomize(self, spatial_shape: Sequence[int]) -> None:  # type: ignore[override]
        """Draw whether to apply and, if so, the shrunk size, its offset on the canvas and the border's shade."""
        super().randomize(None)
        self._draw = None
        if not self._do_transform:
            return
        sizes = tuple(max(1, round(s * self.R.uniform(*self.scale_range))) for s in spatial_shape)
        offsets = tuple(int(self.R.randint(0, s - n + 1)) for s, n in zip(spatial_shape, sizes, strict=True))
        self._draw = (sizes, offsets, bool(self.R.random_sample() < self.bright_prob))

    def __call__(
        self, img: NdarrayOrTensor, randomize: bool = True, mode: str | None = None, fill: str | float | None = None
    ) -> NdarrayOrTensor:
        """``img`` channel-first ``(C, W, H)``; returns the same type, shape and metadata. ``mode`` and ``fill``
        override the constructor's for this call (the dictionary twin's per-key values)."""
        if len(img.shape) != 3:
            raise ValueError(f"RandFilmBorder takes a channel-first 2D image (C, W, H), got shape {tuple(img.shape)}")
        if randomize:
            self.randomize(img.shape[1:])
        if self._draw is None:
            return img
        (sx, sy), (ox, oy), bright = self._draw
        mode, fill = mode or self.mode, self.fill if fill is None else fill
        tensor = torch.as_tensor(img)
        work = tensor.float()
        shrunk = F.interpolate(work[None], size=(sx, sy), mode=mode)[0]
        if fill == FILL_FILM:
            value = work.amax() if bright else work.amin()
        else:
            value = torch.as_tensor(float(fill))
        out = torch.full_like(work, float(value))
        out[:, ox : ox + sx, oy : oy + sy] = shrunk
        return convert_to_dst_type(out.to(tensor.dtype), img)[0]


class RandFilmBorderd(SameDrawForEveryKeyd):
    """Dictionary twin of :class:`RandFilmBorder`: one draw for every key (radiograph and mask alike), with each
    key's own interpolation ``mode`` and ``fill`` (defaults: the radiograph ``"area"`` and the drawn border, the
    mask ``"nearest"`` and 0)."""

    backend = RandFilmBorder.backend

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.1,
        scale_range: Sequence[float] = (0.6, 1.0),
        bright_prob: float = 0.2,
        mode: str | Sequence[str] = ("area", "nearest"),
        fill: str | float | Sequence[str | float] = (FILL_FILM, 0),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, RandFilmBorder(1.0, scale_range, bright_prob), prob, allow_missing_keys)
        modes, fills = ensure_tuple_rep(mode, len(self.keys)), ensure_tuple_rep(fill, len(self.keys))
        self._per_key = {key: {"mode": m, "fill": f} for key, m, f in zip(self.keys, modes, fills, strict=True)}

    def randomize_array(self, values: list[NdarrayOrTensor]) -> None:
        """One shrink and place for every key: they must have the same spatial shape."""
        shapes = {tuple(value.shape[1:]) for value in values}
        if len(shapes) != 1:
            raise ValueError(f"RandFilmBorderd: {list(self.keys)} differ in spatial shape: {sorted(shapes)}")
        self.array_transform.randomize(shapes.pop())

    def array_arguments(self, key: Hashable) -> dict:
        """The key's own ``mode`` and ``fill``."""
        return self._per_key[key]
