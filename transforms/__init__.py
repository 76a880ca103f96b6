"""MONAI transforms of the project: array transforms and their dictionary twins (suffix ``d``)."""

from .brain_extraction import SkullStrip, SkullStripd
from .film_border import RandFilmBorder, RandFilmBorderd
from .foreground_box import InForegroundBox, InForegroundBoxd
from .io import ReloadFromSource, ReloadFromSourced
from .largest_component import KeepLargestComponent, KeepLargestComponentd
from .resample import ResampleToSource, ResampleToSourced
from .sequences import (
    FillMissingSequences,
    FillMissingSequencesd,
    KeepSequences,
    KeepSequencesd,
    RandDropSequences,
    RandDropSequencesd,
)
from .short_scan import RandShortScan, RandShortScand
from .slab_spacing import SlabSpacing, SlabSpacingd, SlabSpatialResample
from .slice_samples import RandSliceSamples, RandSliceSamplesd, SliceSamples, SliceSamplesd
from .slices import ExtractSlices, ExtractSlicesd, SliceLabels, SliceLabelsd
from .validation import CheckVolume, CheckVolumed

__all__ = [
    "CheckVolume",
    "CheckVolumed",
    "ExtractSlices",
    "ExtractSlicesd",
    "FillMissingSequences",
    "FillMissingSequencesd",
    "InForegroundBox",
    "InForegroundBoxd",
    "KeepLargestComponent",
    "KeepLargestComponentd",
    "KeepSequences",
    "KeepSequencesd",
    "RandDropSequences",
    "RandDropSequencesd",
    "RandFilmBorder",
    "RandFilmBorderd",
    "RandShortScan",
    "RandShortScand",
    "RandSliceSamples",
    "RandSliceSamplesd",
    "ReloadFromSource",
    "ReloadFromSourced",
    "ResampleToSource",
    "ResampleToSourced",
    "SkullStrip",
    "SkullStripd",
    "SlabSpacing",
    "SlabSpacingd",
    "SlabSpatialResample",
    "SliceLabels",
    "SliceLabelsd",
    "SliceSamples",
    "SliceSamplesd",
]
