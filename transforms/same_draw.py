"""The dictionary twin of a random array transform that must draw once for all its keys (image and label alike)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, RandomizableTransform

__all__ = ["SameDrawForEveryKeyd"]


class SameDrawForEveryKeyd(RandomizableTransform, MapTransform):
    """Apply ``array_transform`` (a ``RandomizableTransform`` built with ``prob=1.0`` whose ``__call__`` takes
    ``randomize=False``) to every key with one draw, made by :meth:`randomize_array` from the values of the keys.

    ``prob`` is this twin's own: with probability ``1 - prob`` nothing is drawn and the data pass unchanged.
    Subclasses set ``array_transform`` and may override :meth:`randomize_array` (by default it draws from the
    first key's value) and :meth:`array_arguments` (each key's own keyword arguments to the array transform, such
    as an image's and a mask's interpolation).
    """

    def __init__(
        self,
        keys: KeysCollection,
        array_transform: RandomizableTransform,
        prob: float,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.array_transform = array_transform

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.array_transform.set_random_state(seed, state)
        return self

    def randomize_array(self, values: list[NdarrayOrTensor]) -> None:
        """Make the array transform's one draw for ``values`` (the keys' values, in key order)."""
        self.array_transform.randomize(values[0])

    def array_arguments(self, key: Hashable) -> dict:
        """Keyword arguments of the array transform's call for ``key`` (none by default)."""
        return {}

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        self.randomize(None)
        keys = list(self.key_iterator(d))
        if not self._do_transform or not keys:
            return d
        self.randomize_array([d[key] for key in keys])
        for key in keys:
            d[key] = self.array_transform(d[key], randomize=False, **self.array_arguments(key))
        return d
