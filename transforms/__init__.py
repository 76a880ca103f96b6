"""MONAI transforms of the project: array transforms and their dictionary twins (suffix ``d``)."""

from .validation import CheckVolume, CheckVolumed

__all__ = ["CheckVolume", "CheckVolumed"]
