"""MONAI transforms of the project: array transforms and their dictionary twins (suffix ``d``)."""

from .io import ReloadFromSource, ReloadFromSourced
from .validation import CheckVolume, CheckVolumed

__all__ = ["CheckVolume", "CheckVolumed", "ReloadFromSource", "ReloadFromSourced"]
