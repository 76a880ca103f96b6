"""MONAI transforms of the project: array transforms and their dictionary twins (suffix ``d``)."""

from .io import ReloadFromSource, ReloadFromSourced
from .slices import (
    ExtractSlices,
    ExtractSlicesd,
    RandSliceSamples,
    RandSliceSamplesd,
    SliceLabels,
    SliceLabelsd,
    SliceSamples,
    SliceSamplesd,
)
from .validation import CheckVolume, CheckVolumed

__all__ = [
    "CheckVolume",
    "CheckVolumed",
    "ExtractSlices",
    "ExtractSlicesd",
    "RandSliceSamples",
    "RandSliceSamplesd",
    "ReloadFromSource",
    "ReloadFromSourced",
    "SliceLabels",
    "SliceLabelsd",
    "SliceSamples",
    "SliceSamplesd",
]
