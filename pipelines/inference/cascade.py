"""The cascade: a 2D slice classifier picks the slabs of a volume, and the 3D segmenter runs on those slabs only.

Each step is a small function usable on in-memory tensors (``score_slices``, ``crop_slab``, ``paste_slab``);
:class:`SliceGatedInferer` chains them behind MONAI's ``Inferer`` interface, so a bundle swaps it in for its
``SlidingWindowInferer`` and keeps the rest of its pipeline (``Invertd`` back to the input geometry, saving).
What gates what, the threshold, smoothing, margin and merging are constructor arguments, set in the bundle config.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.inferers import Inferer
from monai.utils import convert_to_dst_type

from pipelines.inference.fast_inference import check_precision, resolve_precision
from pipelines.inference.gate_thresholds import threshold_for
from pipelines.inference.organ_following import follow_edges
from pipelines.inference.slabs import Slab, select_slabs, slab_mask
from pipelines.io.atomic import write_json_atomic
from pipelines.io.inputs import case_name
from pipelines.validation.path_safety import as_bool
from transforms.slices import ExtractSlices

__all__ = [
    "INPUT_FACT_KEYS",
    "SliceGatedInferer",
    "background_logits",
    "crop_slab",
    "input_facts",
    "paste_slab",
    "score_slices",
    "windows_along_slices",
]

logger = logging.getLogger(__name__)

# Logit given to the foreground classes outside the slabs: softmax turns it into background with probability ~1.
OUTSIDE_LOGIT = -1.0e4


def classifier_inputs(volume: torch.Tensor, indices: Sequence[int], context: int, image_size: Sequence[int]):
    """2.5D classifier inputs ``(N, C * (2 * context + 1), *image_size)`` of slices ``indices`` of ``volume``.

    ``volume`` is one channel-first volume ``(C, X, Y, Z)``, already preprocessed like the classifier's training
    data (same spacing and intensity scaling); the slices are resized to ``image_size``.
    """
    stack = ExtractSlices(context=context)(volume.as_tensor() if isinstance(volume, MetaTensor) else volume, indices)
    if tuple(stack.shape[-2:]) != tuple(image_size):
        stack = F.interpolate(stack.float(), size=tuple(image_size), mode="bilinear", align_corners=False)
    return stack


def _classify(classifier, volume, indices, context, image_size, batch_size, positive_class, device, dtype):
    """Positive-class probabilities of the slices ``indices`` of ``volume``, classified in batches."""
    probs = []
    for start in range(0, len(indices), batch_size):
        batch = classifier_inputs(volume, indices[start : start + batch_size], context, image_size)
        with torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = classifier(batch.to(device=device, dtype=torch.float32))
        probs.append(torch.softmax(logits.float(), dim=1)[:, positive_class].cpu())
    return torch.cat(probs).double().numpy() if probs else np.zeros(0)


@torch.inference_mode()
def score_slices(
    classifier: torch.nn.Module,
    volume: torch.Tensor,
    *,
    context: int = 1,
    image_size: Sequence[int] = (128, 128),
    batch_size: int = 32,
    positive_class: int = 1,
    precision: str = "fp32",
    stride: int = 1,
    threshold: float = 0.5,
) -> np.ndarray:
    """Probability that each axial slice of ``volume`` ``(C, X, Y, Z)`` is positive, classified in batches.

    ``precision`` is read by :func:`pipelines.inference.fast_inference.resolve_precision` (``"auto"``: bfloat16 autocast
    where the device computes it natively); the probabilities are computed in float32 either way.

    ``stride`` > 1 scores coarse to fine: every ``stride``-th slice (and the last) first, then every slice between
    two scored neighbours that fall on different sides of ``threshold``; the slices left between two neighbours
    that agree get the linear interpolation of theirs. Where the organ spans a fraction of a long scan, this
    classifies about ``1 / stride`` of the slices and finds each edge of a positive run to the slice. A positive
    run shorter than ``stride`` slices that lies between two negative scored slices is not seen (a median
    smoothing window of 3 removes runs of one slice anyway).

    Returns:
        float64 array of length Z, in [0, 1].
    """
    classifier.eval()
    param = next(classifier.parameters(), None)
    device = param.device if param is not None else volume.device
    dtype = resolve_precision(precision, device)
    n = volume.shape[-1]
    settings = (context, image_size, batch_size, positive_class, device, dtype)
    if stride <= 1 or n <= 2:
        return _classify(classifier, volume, list(range(n)), *settings)
    coarse = sorted({*range(0, n, stride), n - 1})
    probs = np.full(n, np.nan)
    probs[coarse] = _classify(classifier, volume, coarse, *settings)
    edges = [
        k
        for a, b in zip(coarse, coarse[1:], strict=False)
        if (probs[a] >= threshold) != (probs[b] >= threshold)
        for k in range(a + 1, b)
    ]
    if edges:
        probs[edges] = _classify(classifier, volume, edges, *settings)
    scored = np.flatnonzero(~np.isnan(probs))
    return np.interp(np.arange(n), scored, probs[scored])


def crop_slab(volume: torch.Tensor, slab: Slab) -> torch.Tensor:
    """The slices ``[slab.start, slab.stop)`` of ``volume`` along its last axis (a view, no copy)."""
    return volume[..., slab.start : slab.stop]


def paste_slab(full: torch.Tensor, part: torch.Tensor, slab: Slab) -> torch.Tensor:
    """Write ``part`` into ``full`` at ``slab`` along the last axis (in place); returns ``full``.

    Raises:
        ValueError: when the shapes do not fit.
    """
    expected = (*full.shape[:-1], len(slab))
    if tuple(part.shape) != expected or slab.stop > full.shape[-1]:
        raise ValueError(f"cannot paste a block of shape {tuple(part.shape)} into {tuple(full.shape)} at {slab}")
    full[..., slab.start : slab.stop] = part.to(full.dtype)
    return full


def background_logits(num_classes: int, spatial_shape: Sequence[int], device=None) -> torch.Tensor:
    """Logits ``(num_classes, *spatial_shape)`` that say "background" everywhere."""
    logits = torch.full((num_classes, *spatial_shape), OUTSIDE_LOGIT, dtype=torch.float32, device=device)
    logits[0] = 0.0
    return logits


def windows_along_slices(inferer: Inferer, slabs: Sequence[Slab]) -> int | None:
    """How many sliding-window positions along the slice axis ``inferer`` needs to cover ``slabs`` (summed).

    Counted as MONAI's ``SlidingWindowInferer`` places its windows: a slab shorter than the window is padded to
    one window; a longer one takes ``ceil((length - roi) / step) + 1`` windows, ``step = roi * (1 - overlap)``
    (at least 1). The windows across a slice are the same for every slab, so this count orders the costs of two
    ways of covering a volume. None when ``inferer`` has no ``roi_size`` and ``overlap`` (not a sliding window).
    """
    roi_size, overlap = getattr(inferer, "roi_size", None), getattr(inferer, "overlap", None)
    if roi_size is None or overlap is None:
        return None
    roi = int(tuple(roi_size)[-1]) if isinstance(roi_size, Sequence) else int(roi_size)
    overlap = float(tuple(overlap)[-1]) if isinstance(overlap, Sequence) else float(overlap)
    step = max(int(roi * (1.0 - overlap)), 1)
    # MONAI pads a short slab (or takes a window of -1 as the whole slab) to one window
    return sum(1 if roi <= 0 or len(slab) <= roi else math.ceil((len(slab) - roi) / step) + 1 for slab in slabs)


def _case_name(inputs: torch.Tensor, index: int) -> str:
    names = inputs.meta.get("filename_or_obj") if isinstance(inputs, MetaTensor) else None
    name = names[index] if isinstance(names, (list, tuple)) else names
    return case_name(name) if name else f"case_{index}"


INPUT_FACT_KEYS = ("sequences_used", "brain_extraction")
"""Metadata keys of the input that the report repeats: the MRI sequences a study had
(:mod:`transforms.sequences`) and whether its brain was extracted (:mod:`transforms.brain_extraction`)."""


def input_facts(image: torch.Tensor, index: int | None = None) -> dict:
    """The :data:`INPUT_FACT_KEYS` that ``image``'s metadata holds (item ``index`` of a batch), for reports."""
    meta = image.meta if isinstance(image, MetaTensor) else {}
    facts = {}
    for key in INPUT_FACT_KEYS:
        value = meta.get(key)
        if index is not None and isinstance(value, (list, tuple)):
            value = value[index] if index < len(value) else None
        if value is not None:
            facts[key] = str(value)
    return facts


class SliceGatedInferer(Inferer):
    """Segment only the slabs that a slice classifier finds positive; the rest of the volume is background.

    For each volume of the batch: score the axial slices with ``classifier`` (every ``stride``-th, then around
    each edge of a positive run: :func:`score_slices`), select the slices to keep
    (:func:`pipelines.inference.slabs.select_slabs`: the positive runs and their margins), run ``segmenter_inferer``
    on each kept slab grown to ``min_slab_slices`` (the context its window needs), and paste its logits on the kept
    slices into a full-size output that is background elsewhere: a slice the gate rejects is never labelled, even
    inside the context of a slab. Where the slabs would need as many sliding-window positions along the slices as
    the whole volume (:func:`windows_along_slices`: the gate kept most of a short scan), the segmenter runs once
    on the whole volume instead (``one_pass`` in the report), still labelling the kept slices only, so the cascade
    never costs more segmenter windows than the full volume. Where the segmenter still labels the organ on the
    outermost kept slice of a run (the gate cut it short), the run grows outwards until the organ ends
    (``follow_min_voxels``). No positive slice: the segmenter does not run at all. The output has the input's
    spatial shape and metadata, so ``Invertd`` maps it back to the original geometry.

    Args:
        classifier: the 2D slice classifier (2 classes: negative, positive).
        segmenter_inferer: the inferer that runs the segmenter on a slab (a ``SlidingWindowInferer``).
        num_classes: output channels of the segmenter.
        enabled: False runs ``segmenter_inferer`` on the whole volume (plain segmentation, no classifier). A
            string from the command line (``--use_cascade false``) is read with
            :func:`pipelines.validation.path_safety.as_bool`.
        threshold, smoothing_window, smoothing, margin_slices, margin_mm, min_run, merge, merge_gap: slab selection,
            see :func:`pipelines.inference.slabs.select_slabs`; ``margin_mm`` uses the slice spacing of the input.
        thresholds: calibrated thresholds by the sequences a study has (``{"FLAIR": 0.1, ...}``, written after the
            classifier's training: :mod:`pipelines.training.gate_calibration`); a study's ``sequences_used`` picks
            one (:func:`~pipelines.inference.gate_thresholds.threshold_for`). Empty: ``threshold`` for all.
        context: neighbouring slices stacked as channels for the classifier (as in its training).
        image_size: in-plane size the classifier was trained on.
        batch_size: slices per classifier batch.
        min_slab_slices: slabs shorter than this grow (about their centre) to it, so the segmenter's window fits.
        stride: the classifier scores every ``stride``-th slice, then the slices around each edge of a positive
            run (:func:`score_slices`); 1 scores every slice.
        report_dir: folder for one ``<case>_cascade.json`` report per volume (None: no files).
        precision: the classifier's precision, as for :func:`score_slices` (the segmenter's is its inferer's).
        follow_min_voxels: where the segmenter labels at least this many voxels on the outermost kept slice of a
            run, the run grows outwards while the organ goes on (:func:`pipelines.inference.organ_following.
            follow_edges`; ``followed`` in the report); 0: the gate's slices only.

    Attributes:
        reports: the report of each volume of the last call (also written to ``report_dir``).
    """

    def __init__(
        self,
        classifier: torch.nn.Module,
        segmenter_inferer: Inferer,
        num_classes: int,
        enabled: bool = True,
        threshold: float = 0.5,
        smoothing_window: int = 1,
        smoothing: str = "mean",
        margin_slices: int = 0,
        margin_mm: float | None = None,
        min_run: int = 1,
        merge: str = "gaps",
        merge_gap: int = 0,
        context: int = 1,
        image_size: Sequence[int] = (128, 128),
        batch_size: int = 32,
        min_slab_slices: int = 1,
        stride: int = 1,
        report_dir: str | os.PathLike | None = None,
        precision: str = "fp32",
        thresholds: Mapping[str, float] | None = None,
        follow_min_voxels: int = 0,
    ) -> None:
        super().__init__()
        self.follow_min_voxels = int(follow_min_voxels)
        self.precision = check_precision(precision)
        self.thresholds = dict(thresholds or {})
        self.classifier = classifier
        self.segmenter_inferer = segmenter_inferer
        self.num_classes = num_classes
        self.enabled = as_bool(enabled, "enabled (use_cascade)")
        self.selection = {
            "threshold": threshold,
            "smoothing_window": smoothing_window,
            "smoothing": smoothing,
            "margin_slices": margin_slices,
            "margin_mm": margin_mm,
            "min_run": min_run,
            "merge": merge,
            "merge_gap": merge_gap,
        }
        self.context = context
        self.image_size = tuple(image_size)
        self.batch_size = batch_size
        self.min_slab_slices = min_slab_slices
        self.stride = int(stride)
        if self.stride < 1:
            raise ValueError(f"stride (cascade_stride) must be an integer >= 1, got {stride!r}")
        self.report_dir = Path(report_dir) if report_dir is not None else None
        self.reports: list[dict] = []

    def _segment_one(
        self, volume: torch.Tensor, network, name: str, facts: dict | None = None, *args, **kwargs
    ) -> torch.Tensor:
        t0 = time.perf_counter()
        n = volume.shape[-1]
        threshold = threshold_for((facts or {}).get("sequences_used"), self.thresholds, self.selection["threshold"])
        selection = {**self.selection, "threshold": threshold}
        probs = score_slices(
            self.classifier,
            volume,
            context=self.context,
            image_size=self.image_size,
            batch_size=self.batch_size,
            precision=self.precision,
            stride=self.stride,
            threshold=selection["threshold"],
        )
        t_classify = time.perf_counter() - t0
        # from the affine and the volume's own spatial rank: MetaTensor.pixdim trusts a cached rank, which is 2 for a
        # MetaTensor built from an (X, Y, Z) array before its channel was added (the in-plane spacing, not z)
        spacing = (
            float(affine_to_spacing(volume.affine, r=volume.ndim - 1)[-1]) if isinstance(volume, MetaTensor) else None
        )
        # the slices the gate keeps (runs and margins), and the slabs the segmenter runs on: those grown to its
        # window's depth, so that it sees real neighbours; only the kept slices of its output are used
        kept = select_slabs(probs, slice_spacing_mm=spacing, **selection)
        slabs = select_slabs(probs, slice_spacing_mm=spacing, min_length=self.min_slab_slices, **selection)
        whole = [Slab(0, n)]
        slab_windows, whole_windows = (windows_along_slices(self.segmenter_inferer, s) for s in (slabs, whole))
        one_pass = len(slabs) > 0 and slab_windows is not None and slab_windows >= whole_windows
        if one_pass:  # the slabs would take as many windows as the whole volume: one pass, same cost, fewer seams
            slabs = whole
        t1 = time.perf_counter()

        def segment(slab: Slab) -> torch.Tensor:
            return torch.as_tensor(self.segmenter_inferer(crop_slab(volume, slab)[None], network, *args, **kwargs))[0]

        out = background_logits(self.num_classes, volume.shape[1:], device=volume.device)
        for slab in slabs:
            paste_slab(out, segment(slab), slab)
        kept_mask, segmented_mask = slab_mask(kept, n), slab_mask(slabs, n)
        followed = follow_edges(
            out, kept_mask, segmented_mask, segment, self.follow_min_voxels, max(self.min_slab_slices, 1)
        )
        context_only = segmented_mask & ~kept_mask
        if context_only.any():
            outside = background_logits(self.num_classes, (1, 1, 1), device=out.device)
            out[..., torch.from_numpy(context_only).to(out.device)] = outside
        t_segment = time.perf_counter() - t1
        report = {
            "case": name,
            "input": facts or {},
            "num_slices": n,
            "slice_spacing_mm": spacing,
            "slice_probabilities": [round(float(p), 5) for p in probs],
            "selection": selection,
            "classifier_stride": self.stride,
            "slabs": [s.to_dict() for s in slabs],
            "one_pass": one_pass,
            "kept": [s.to_dict() for s in kept],
            "followed": [s.to_dict() for s in followed],
            "slices_kept": int(kept_mask.sum()),
            "slices_segmented": int(segmented_mask.sum()),
            "voxels_segmented": int(np.prod(volume.shape[1:-1])) * int(segmented_mask.sum()),
            "voxels_total": int(np.prod(volume.shape[1:])),
            "seconds": {"classify": t_classify, "segment": t_segment, "total": time.perf_counter() - t0},
        }
        self.reports.append(report)
        if self.report_dir is not None:
            write_json_atomic(report, self.report_dir / f"{name}_cascade.json", indent=1)
        logger.info(
            "%s: %d of %d slices kept %s%s, %d segmented (classify %.2f s, segment %.2f s)",
            name, report["slices_kept"], n, [(s.start, s.stop) for s in kept],
            f" + {[(s.start, s.stop) for s in followed]} where the organ went on" if followed else "",
            report["slices_segmented"], t_classify, t_segment,
        )  # fmt: skip
        if facts:
            logger.info("%s: %s", name, ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in facts.items()))
        return out

    def __call__(self, inputs: torch.Tensor, network, *args, **kwargs) -> torch.Tensor:
        """Segment the batch ``inputs`` ``(B, C, X, Y, Z)`` with ``network`` where the classifier allows."""
        self.reports = []  # the reports of this call only: a long-running server must not accumulate them
        if not self.enabled:
            return self.segmenter_inferer(inputs, network, *args, **kwargs)
        outputs = [
            self._segment_one(inputs[i], network, _case_name(inputs, i), input_facts(inputs, i), *args, **kwargs)
            for i in range(inputs.shape[0])
        ]
        out, *_ = convert_to_dst_type(torch.stack(outputs), inputs)
        return out
