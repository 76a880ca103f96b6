"""MONAI image saving that never leaves a half-written file under the final name.

``SaveImage`` hands the final file name to an ``ImageWriter`` (``NibabelWriter``, ``ITKWriter``, ``PILWriter``),
which writes it in place: a crash, a full disk or a killed job leaves a truncated ``case_seg.nii.gz`` that looks
like a prediction. The writers here write to a temporary file in the same folder (with the same suffixes, so the
format is still picked from the name) and rename it onto the final name (:func:`pipelines.io.atomic.atomic_write`).
:class:`AtomicSaveImage` / :class:`AtomicSaveImaged` take exactly ``SaveImage`` / ``SaveImaged``'s arguments::

    - _target_: pipelines.io.writers.AtomicSaveImaged    # instead of SaveImaged
      keys: pred
      output_dir: '@prediction_dir'
"""

from __future__ import annotations

import logging
import os
from functools import cache

from monai.data.image_writer import ImageWriter, ITKWriter, NibabelWriter, PILWriter
from monai.transforms import SaveImage, SaveImaged

from pipelines.io.atomic import atomic_write

__all__ = [
    "AtomicWriteMixin",
    "AtomicNibabelWriter",
    "AtomicITKWriter",
    "AtomicPILWriter",
    "atomic_writer",
    "AtomicSaveImage",
    "AtomicSaveImaged",
]

logger = logging.getLogger(__name__)


class AtomicWriteMixin:
    """Mixin for a ``monai.data.ImageWriter``: ``write`` goes to a temporary file renamed onto ``filename``.

    A file-like ``filename`` (no path) is written directly, as the wrapped writer would.
    """

    def write(self, filename, verbose: bool = True, **kwargs):
        if not isinstance(filename, (str, os.PathLike)):
            return super().write(filename, verbose=verbose, **kwargs)
        atomic_write(filename, lambda tmp: super(AtomicWriteMixin, self).write(tmp, verbose=False, **kwargs))
        if verbose:
            logger.info("writing: %s", filename)


class AtomicNibabelWriter(AtomicWriteMixin, NibabelWriter):
    """``NibabelWriter`` that writes atomically (NIfTI)."""


class AtomicITKWriter(AtomicWriteMixin, ITKWriter):
    """``ITKWriter`` that writes atomically (NIfTI, NRRD, MetaImage...)."""


class AtomicPILWriter(AtomicWriteMixin, PILWriter):
    """``PILWriter`` that writes atomically (PNG, JPEG)."""


_BUILT_IN = {NibabelWriter: AtomicNibabelWriter, ITKWriter: AtomicITKWriter, PILWriter: AtomicPILWriter}


@cache
def atomic_writer(writer: type[ImageWriter]) -> type[ImageWriter]:
    """The atomic version of the ``ImageWriter`` class ``writer`` (itself when it already is atomic)."""
    if issubclass(writer, AtomicWriteMixin):
        return writer
    if writer in _BUILT_IN:
        return _BUILT_IN[writer]
    return type(f"Atomic{writer.__name__}", (AtomicWriteMixin, writer), {"__module__": writer.__module__})


class AtomicSaveImage(SaveImage):
    """``monai.transforms.SaveImage`` whose files appear complete or not at all (same arguments).

    Each writer that ``SaveImage`` would try (chosen from ``output_ext`` or given as ``writer``) is replaced by its
    atomic version; a writer that fails leaves neither the final file nor its temporary file behind.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.writers = tuple(atomic_writer(w) for w in self.writers)


class AtomicSaveImaged(SaveImaged):
    """``monai.transforms.SaveImaged`` whose files appear complete or not at all (same arguments)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.saver.writers = tuple(atomic_writer(w) for w in self.saver.writers)
