"""MONAI transforms of the project: array transforms and their dictionary twins (suffix ``d``)."""

from .io import ReloadFromSource, ReloadFromSourced
from .resample import ResampleToSource, ResampleToSourced
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
    "ResampleToSource",
    "ResampleToSourced",
    "SliceLabels",
    "SliceLabelsd",
    "SliceSamples",
    "SliceSamplesd",
]
