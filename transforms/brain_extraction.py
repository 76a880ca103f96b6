"""Brain extraction (skull stripping) of multi-sequence brain MRI that still has skull, scalp, neck and background.

The brain workflow's preprocessing (crop to the non-zero voxels, z-score over the non-zero voxels) assumes BraTS
input: skull-stripped, 0 outside the brain. Clinical MRI has a head around the brain and noise in the air around the
head, so :class:`SkullStrip` / :class:`SkullStripd` first decide whether the input is already skull-stripped and,
when it is not, extract the brain and zero every voxel outside it, in every channel.

* Detection (:func:`skull_strip_evidence`): on the reference channel, the *background* is the voxels at the most
  common value of the volume's border (exactly; 0 in BraTS, also when the brain was z-scored and so holds values
  below it). The input counts as skull-stripped when the background is at least
  ``min_background_fraction`` of the volume **and** the rest (the foreground) is at most ``max_brain_ml``. Both
  are needed: a noisy head has almost no voxel at one value (Rician noise is never exactly 0), and a head whose
  air was set to 0 by the scanner or by resampling has a large background but a foreground of a whole head, 3 L or
  more against 1.1-1.9 L for an adult brain. Measured (``benchmarks/brain_extraction.py``): the skull-stripped
  brain phantoms have a background of 0.57-0.62 and a foreground of 1.9-2.1 L; with a head
  (:mod:`pipelines.phantoms.brain_mr_head`) no background voxel with noise, and 4.4-4.8 L with the air zeroed. On
  real scans: a public BraTS 2023 metastasis case (four sequences, 1 mm) 0.82-0.84 and 1.5-1.6 L; a TCGA-LGG
  head with skull (T1, T1c, 0.9 x 0.9 x 5.5 mm) 0.04-0.10 and 6.0-6.4 L.
* Extraction (:func:`extract_brain`): FSL's Brain Extraction Tool (BET; Smith, Hum Brain Mapp 2002) as ported to
  Python by the ``brainextractor`` package (MIT; numba, no weights, CPU only), on one reference channel (T1 first,
  else FLAIR, T2, T1ce: whichever is present, i.e. not all zero). As with FSL's ``bet -R``, the surface is fitted
  again from the centre of the first mask (``recentre``), because the neck pulls the first centre of gravity down
  and the surface then leaks into it; and the fractional intensity threshold defaults to 0.65 instead of BET's
  0.5, which also leaked into the neck of the head phantoms (Dice 0.73-0.80 against 0.96 with both). On the real
  TCGA-LGG head at 2 mm the mask has a Dice of 0.85 (T1c) and 0.87 (T1) against HD-BET's mask: BET keeps some
  orbit and sinus tissue in front of the frontal lobes.
* Failure: a mask under ``min_brain_ml`` or over ``max_mask_fraction`` of the volume raises
  :class:`pipelines.validation.errors.DataError` naming the file.

The transforms change no geometry and record no operation: ``Invertd`` of the image passes over them. The mask that
:class:`SkullStripd` stores (``mask_key``) is on the image's grid with a copy of its metadata; give it to the later
spatial transforms with the image (``CropForegroundd(keys=[image, label, brain_mask])``) and
``Invertd(keys=[pred, brain_mask], orig_keys=image)`` brings it back to the grid of the input file, beside the
prediction; or, without passing it on, ``ResampleToSourced(keys=brain_mask, ref_key=image, mode="nearest")``
resamples it there by its affine, as the inference stage does with the prediction.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends
from scipy import ndimage

from pipelines.validation.errors import DataError
from transforms.sequences import source_file_name

__all__ = [
    "BRAIN_EXTRACTION_META_KEY",
    "MODES",
    "SkullStrip",
    "SkullStripd",
    "background_value",
    "extract_brain",
    "skull_strip_evidence",
]

logger = logging.getLogger(__name__)

BRAIN_EXTRACTION_META_KEY = "brain_extraction"
"""Metadata key of the image (a MetaTensor) saying what :class:`SkullStrip` did: ``"extracted"`` (BET ran),
``"skull-stripped input"`` (auto mode found the input stripped) or ``"off"`` (mode ``"never"``)."""
MODES = ("auto", "always", "never")
DEFAULT_REFERENCE = ("T1", "FLAIR", "T2", "T1ce")


def _spacing(img: NdarrayOrTensor) -> np.ndarray:
    """Voxel size in mm of a channel-first volume: from a MetaTensor's affine, else 1 mm."""
    n = len(img.shape) - 1
    if isinstance(img, MetaTensor):
        affine = np.asarray(img.affine, dtype=np.float64)[:n, :n]
        return np.sqrt((affine**2).sum(axis=0))
    return np.ones(n)


def background_value(volume: np.ndarray) -> float:
    """The most common value on the faces of ``volume`` (spatial axes only): the background of a skull-stripped
    volume (0 in BraTS, whatever the brain's values after a z-score); a noisy head has no such value."""
    volume = np.asarray(volume)
    faces = [np.take(volume, index, axis=axis).ravel() for axis in range(volume.ndim) for index in (0, -1)]
    values, counts = np.unique(np.concatenate(faces), return_counts=True)
    return values[np.argmax(counts)].item()


def skull_strip_evidence(volume: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """The figures that tell a skull-stripped volume from a head: see the module's docstring.

    Args:
        volume: one channel, spatial axes only.
        spacing: voxel size in mm per axis.

    Returns:
        ``{"background_fraction": ..., "foreground_ml": ...}``: the fraction of voxels at the background value
        (:func:`background_value`), and the volume in mL of the other voxels.
    """
    volume = np.asarray(volume)
    background = float(np.mean(volume == background_value(volume))) if volume.size else 1.0
    voxel_ml = float(np.prod(spacing)) / 1000.0
    return {"background_fraction": background, "foreground_ml": (1.0 - background) * volume.size * voxel_ml}


def _bet(volume: np.ndarray, spacing: float, fractional_threshold: float, iterations: int, centre) -> np.ndarray:
    """One BET surface fit on an isotropic volume (voxel coordinates), its mask; ``centre`` (voxels) or None."""
    import nibabel as nib
    import trimesh
    from brainextractor import BrainExtractor
    from brainextractor.helpers import sphere

    img = nib.Nifti1Image(volume.astype(np.float32), np.diag([spacing, spacing, spacing, 1.0]))
    log = io.StringIO()
    with contextlib.redirect_stdout(log):  # the package reports its progress with print
        bet = BrainExtractor(img, bt=fractional_threshold)
        if centre is not None:  # BET's -c: start from a given centre (same sphere radius), as -R does
            bet.c = np.asarray(centre, dtype=np.float64)
            bet.surface = trimesh.creation.icosphere(subdivisions=4, radius=bet.r).apply_translation(bet.c)
            bet.vertices = np.array(bet.surface.vertices)
            bet.tm = np.median(bet.data[sphere(bet.shape, 2 * bet.r, bet.c)])
            bet.update_surface_attributes()
        bet.run(iterations=iterations)
        mask = bet.compute_mask() > 0
    logger.debug("brainextractor: %s", " | ".join(line for line in log.getvalue().splitlines()[:8]))
    return mask


def extract_brain(
    volume: np.ndarray,
    spacing: Sequence[float],
    *,
    fractional_threshold: float = 0.65,
    iterations: int = 500,
    recentre: int = 1,
) -> np.ndarray:
    """The brain mask of one 3D MRI volume with a head around the brain, by BET (``brainextractor``).

    BET fits in voxels of one size: an anisotropic volume is resampled (linearly) to cubes of its smallest spacing
    for the fit, and the mask back to the volume's grid. Holes in the mask are filled. BET needs the dark skull
    between brain and scalp to be resolved: 2 mm works (the brain workflow's ``pixdim``); on the head phantoms at
    3-4 mm the surface leaks into the scalp now and then (Dice 0.7-0.9), resampled to 2 mm or not.

    Args:
        volume: the channel to fit on (T1 works best; FLAIR and T2 work too), spatial axes only.
        spacing: voxel size in mm per axis.
        fractional_threshold: BET's ``-f`` (0-1): larger gives a smaller brain.
        iterations: surface deformation steps per fit (BET's default is 1000; on the head phantoms at 2 mm, 300
            give the same mask).
        recentre: fits again from the centre of the previous mask, this many times (FSL ``bet -R`` iterates).

    Returns:
        A boolean mask of ``volume``'s shape.
    """
    volume = np.asarray(volume, dtype=np.float32)
    spacing = np.asarray(spacing, dtype=np.float64)
    if volume.ndim != 3:
        raise ValueError(f"brain extraction needs a 3D volume, got shape {volume.shape}")
    fit = float(spacing.min())
    resample = not np.allclose(spacing, fit, rtol=1e-3)
    work = ndimage.zoom(volume, spacing / fit, order=1, grid_mode=True, mode="nearest") if resample else volume
    mask, centre = None, None
    for _ in range(int(recentre) + 1):
        mask = _bet(work, fit, fractional_threshold, int(iterations), centre)
        if not mask.any():
            break
        centre = np.argwhere(mask).mean(axis=0)
    if resample:
        factors = np.array(volume.shape) / np.array(work.shape)
        mask = ndimage.zoom(mask.astype(np.float32), factors, order=1, grid_mode=True, mode="nearest") > 0.5
    return ndimage.binary_fill_holes(mask)


class SkullStrip(Transform):
    """Zero everything outside the brain of a channel-first brain MRI, in every channel, unless it is already
    skull-stripped (see the module's docstring for the detection rule and the extraction).

    The array transform returns the masked image; :meth:`brain_mask` gives the mask alone, and the dictionary
    twin stores both. The image keeps its type, dtype, shape and (MetaTensor) metadata; ``"brain_extraction"`` is
    added to the metadata.

    Args:
        mode: ``"auto"``: extract unless the input is found skull-stripped; ``"always"``; ``"never"``: return the
            input (the mask is then its non-background voxels).
        reference: channels to extract on, in order of preference: the first one that is not constant (a missing
            sequence is a channel of zeros) is used. Channel indices, or sequence names when ``sequences`` names
            the channels (names the bundle lacks are skipped). None: T1, FLAIR, T2, T1ce when ``sequences`` is
            given, else the channels in order.
        sequences: the name of each channel (the bundle's ``sequences``), matched case-insensitively.
        fractional_threshold: BET's fractional intensity threshold, see :func:`extract_brain`.
        iterations: BET's surface deformation steps per fit.
        recentre: extra BET fits from the centre of the previous mask.
        min_background_fraction: detection: least fraction of voxels at the background value of a skull-stripped volume.
        max_brain_ml: detection: largest foreground (mL) of a skull-stripped volume.
        min_brain_ml: a mask smaller than this (mL) is an error: no brain was found.
        max_mask_fraction: a mask covering more than this fraction of the volume is an error.

    Raises:
        DataError: naming the file, when every reference channel is constant or the mask is empty or too large.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        mode: str = "auto",
        reference: Sequence[int | str] | int | str | None = None,
        sequences: Sequence[str] | None = None,
        fractional_threshold: float = 0.65,
        iterations: int = 500,
        recentre: int = 1,
        min_background_fraction: float = 0.2,
        max_brain_ml: float = 2500.0,
        min_brain_ml: float = 50.0,
        max_mask_fraction: float = 0.9,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if reference is None:
            reference = DEFAULT_REFERENCE if sequences is not None else ()
        elif isinstance(reference, (int, str)):
            reference = [reference]
        names = [str(s).lower() for s in sequences] if sequences is not None else None
        self.reference: list[int] = []
        for ref in reference:
            if isinstance(ref, str):
                if names is None:
                    raise ValueError(f"reference {ref!r} is a sequence name: pass sequences to name the channels")
                if ref.lower() not in names:
                    continue  # a preferred sequence that the bundle does not have
                ref = names.index(ref.lower())
            self.reference.append(int(ref))
        if reference and not self.reference:
            raise ValueError(f"none of the reference sequences {list(reference)} is in {list(sequences or [])}")
        self.mode = mode
        self.fractional_threshold = float(fractional_threshold)
        self.iterations = int(iterations)
        self.recentre = int(recentre)
        self.min_background_fraction = float(min_background_fraction)
        self.max_brain_ml = float(max_brain_ml)
        self.min_brain_ml = float(min_brain_ml)
        self.max_mask_fraction = float(max_mask_fraction)
        self.last_action: str | None = None  # what the last call did: "extracted", "skull-stripped input" or "off"

    def reference_channel(self, img: NdarrayOrTensor) -> int:
        """Index of the first channel of :attr:`reference` (all channels when empty) that ``img`` has and that is
        not constant."""
        for c in self.reference or range(img.shape[0]):
            if c < img.shape[0]:
                channel = torch.as_tensor(img[c])
                if channel.numel() and bool(channel.max() > channel.min()):
                    return c
        raise DataError(
            f"{source_file_name(img)}: brain extraction: no sequence has any signal (every reference channel "
            f"{self.reference} is constant; shape {tuple(img.shape)})"
        )

    def is_skull_stripped(self, img: NdarrayOrTensor) -> bool:
        """True when the reference channel of ``img`` looks skull-stripped (module docstring)."""
        channel = torch.as_tensor(img[self.reference_channel(img)]).detach().cpu().numpy()
        evidence = skull_strip_evidence(channel, _spacing(img))
        return (
            evidence["background_fraction"] >= self.min_background_fraction
            and evidence["foreground_ml"] <= self.max_brain_ml
        )

    def _decide(self, img: NdarrayOrTensor) -> str:
        if self.mode == "never":
            return "off"
        if self.mode == "auto" and self.is_skull_stripped(img):
            return "skull-stripped input"
        return "extracted"

    def _mask(self, img: NdarrayOrTensor, action: str) -> np.ndarray:
        """The spatial brain mask (bool numpy) for ``action``."""
        if action != "extracted":
            values = torch.as_tensor(img).detach().cpu().numpy()
            return np.any([channel != background_value(channel) for channel in values], axis=0)
        c = self.reference_channel(img)
        channel = torch.as_tensor(img[c]).detach().cpu().float().numpy()
        spacing = _spacing(img)
        mask = extract_brain(
            channel,
            spacing,
            fractional_threshold=self.fractional_threshold,
            iterations=self.iterations,
            recentre=self.recentre,
        )
        brain_ml = float(mask.sum()) * float(np.prod(spacing)) / 1000.0
        fraction = float(mask.mean())
        if brain_ml < self.min_brain_ml:
            raise DataError(
                f"{source_file_name(img)}: brain extraction found no brain in channel {c}: a mask of {brain_ml:.0f} mL "
                f"(less than {self.min_brain_ml:g} mL)"
            )
        if fraction > self.max_mask_fraction:
            raise DataError(
                f"{source_file_name(img)}: brain extraction found no brain in channel {c}: the mask covers "
                f"{100 * fraction:.0f}% of the volume (more than {100 * self.max_mask_fraction:.0f}%)"
            )
        logger.info("%s: brain extracted on channel %d: %.0f mL", source_file_name(img), c, brain_ml)
        return mask

    def strip(self, img: NdarrayOrTensor) -> tuple[NdarrayOrTensor, NdarrayOrTensor]:
        """``(stripped image, brain mask)``: the mask is a ``(1, *spatial)`` uint8 array of ``img``'s type and device;
        a MetaTensor mask gets a copy of the image's metadata and applied operations. Both record the action in
        their metadata (:data:`BRAIN_EXTRACTION_META_KEY`)."""
        action = self.last_action = self._decide(img)
        keep = self._mask(img, action)
        if isinstance(img, torch.Tensor):
            mask = torch.as_tensor(keep[None], dtype=torch.uint8, device=img.device)
            if action == "extracted":
                out = img * mask.to(img.dtype)
            else:
                out = img.clone()
            if isinstance(img, MetaTensor):
                meta = copy.deepcopy(img.meta)
                mask = MetaTensor(mask, meta=meta, applied_operations=copy.deepcopy(img.applied_operations))
                mask.meta[BRAIN_EXTRACTION_META_KEY] = out.meta[BRAIN_EXTRACTION_META_KEY] = action
        else:
            mask = keep[None].astype(np.uint8)
            out = np.where(mask.astype(bool), img, 0).astype(img.dtype) if action == "extracted" else img.copy()
        return out, mask

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        return self.strip(img)[0]


class SkullStripd(MapTransform):
    """Dictionary twin of :class:`SkullStrip`: strips each key's image and stores its brain mask.

    Args:
        keys: keys of the channel-first brain MRI volumes (usually ``image``).
        mask_key: key to store the brain mask under (uint8, ``(1, *spatial)``, the image's grid and metadata; see
            the module's docstring for inverting it); with several keys, ``"{key}_{mask_key}"``. None stores none.
        mask_only_when_extracted: store the mask only when BET ran (``"brain_extraction"`` is ``"extracted"``),
            so that the later steps with ``allow_missing_keys`` write a mask file for a head only.
        allow_missing_keys: don't raise when a key is absent.
        kwargs: the arguments of :class:`SkullStrip` (``mode``, ``reference``, ``sequences``, ...).
    """

    backend = SkullStrip.backend

    def __init__(
        self,
        keys: KeysCollection,
        mask_key: str | None = "brain_mask",
        mask_only_when_extracted: bool = False,
        allow_missing_keys: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.stripper = SkullStrip(**kwargs)
        self.mask_key = mask_key
        self.mask_only_when_extracted = bool(mask_only_when_extracted)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key], mask = self.stripper.strip(d[key])
            extracted = self.stripper.last_action == "extracted"
            if self.mask_key is not None and (extracted or not self.mask_only_when_extracted):
                d[self.mask_key if len(self.keys) == 1 else f"{key}_{self.mask_key}"] = mask
        return d
