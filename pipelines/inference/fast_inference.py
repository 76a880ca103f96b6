"""Fast sliding-window inference: MONAI's ``SlidingWindowInferer`` with the network run in reduced precision.

:class:`FastSlidingWindowInferer` is a drop-in for ``monai.inferers.SlidingWindowInferer`` in the bundles'
``inferer`` id. The windows, their blending and the stitching are MONAI's own; what changes is how each batch of
windows goes through the network:

- ``precision="auto"`` runs it under ``torch.autocast`` in bfloat16 where the device computes bfloat16 natively
  (CPUs with AVX512-BF16 or AMX, CUDA GPUs of compute capability 8.0 and newer), in float16 on older GPUs, and in
  float32 elsewhere; the logits come back as float32, so blending, softmax and argmax are unchanged;
- ``fast_layers`` runs the network through :func:`pipelines.models.fast_layers.fast_inference_network`: the strided
  transposed convolutions to a few output channels and the convolutions between a few channels, which oneDNN
  runs slowly, are computed by exact rewrites (a sub-pixel convolution, ``channels_last`` order). ``"auto"``
  (default) does so on CPUs, where it was measured; ``True`` everywhere, ``False`` never;
- ``channels_last=True`` hands the windows over in ``channels_last_3d`` memory order (measured: no gain for the
  bundles' U-Nets on a CPU, see ``benchmarks/sliding_window.py``; kept for GPUs);
- ``stitch_on_cpu_above`` (voxels) stitches large volumes in host memory when the network runs on a GPU: MONAI's
  ``cpu_thresh``; ``"auto"`` derives it from the GPU's memory.

The figures behind the defaults, and the Dice check against float32, are in the README's performance section.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.inferers import SlidingWindowInferer

from pipelines.models.fast_layers import fast_inference_network

__all__ = ["PRECISIONS", "check_precision", "resolve_precision", "auto_cpu_threshold", "FastSlidingWindowInferer"]

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX tiles): only then is bf16 faster."""
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            return True
    return False


def check_precision(precision: str) -> str:
    """``precision`` in lower case, when it is one of :data:`PRECISIONS`; else a ``ValueError`` listing them."""
    name = str(precision).lower()
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    return name


def resolve_precision(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``: ``None`` means plain float32.

    ``"auto"`` picks bfloat16 where the device computes it natively, float16 on CUDA GPUs without bfloat16, and
    float32 otherwise. An explicit ``"bf16"`` or ``"fp16"`` is honoured on any device, except float16 on a CPU,
    which PyTorch runs far slower than float32 and is refused.
    """
    precision = check_precision(precision)
    device_type = torch.device(device).type
    if precision == "auto":
        if device_type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if device_type == "cpu" and _cpu_has_native_bf16() else None
    if precision == "fp16" and device_type == "cpu":
        raise ValueError("precision 'fp16' is not supported on the CPU: use 'bf16' or 'fp32'")
    return _DTYPES[precision]


def auto_cpu_threshold(out_channels: int, fraction: float = 0.4) -> int | None:
    """Voxel count above which stitching on the GPU would take more than ``fraction`` of its memory.

    The stitching buffers hold ``out_channels`` float32 values and one float32 weight per voxel. Returns ``None``
    (never switch) when no CUDA device is present.
    """
    if not torch.cuda.is_available():
        return None
    total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    return int(fraction * total / (4 * (out_channels + 1)))


def _to_float32(output: Any) -> Any:
    """Cast a network output (tensor, tuple or dict of tensors) back to float32."""
    if isinstance(output, torch.Tensor):
        return output.float() if output.is_floating_point() else output
    if isinstance(output, Mapping):
        return {k: _to_float32(v) for k, v in output.items()}
    if isinstance(output, (tuple, list)):
        return type(output)(_to_float32(v) for v in output)
    return output


class FastSlidingWindowInferer(SlidingWindowInferer):
    """``SlidingWindowInferer`` that runs each batch of windows in reduced precision (see the module docstring).

    Args:
        roi_size, sw_batch_size, overlap, mode: as for ``SlidingWindowInferer`` (the bundles use gaussian
            blending).
        precision: ``"auto"`` (default), ``"fp32"``, ``"bf16"`` or ``"fp16"``; see :func:`resolve_precision`.
        channels_last: pass the windows to the network in ``channels_last_3d`` memory order.
        stitch_on_cpu_above: voxel count above which the output is stitched in host memory (MONAI's
            ``cpu_thresh``); ``"auto"`` sizes it from the GPU's memory and ``out_channels``; ``None`` never.
        out_channels: the network's output channels, for ``stitch_on_cpu_above="auto"``.
        fast_layers: compute the layers oneDNN runs slowly by exact rewrites (see
            :func:`pipelines.models.fast_layers.fast_inference_network`): ``"auto"`` on CPUs only, or ``True`` /
            ``False``; the network itself is not modified.
        kwargs: any other ``SlidingWindowInferer`` argument (``sigma_scale``, ``padding_mode``, ``buffer_steps``...).
    """

    def __init__(
        self,
        roi_size: Sequence[int] | int,
        sw_batch_size: int = 4,
        overlap: Sequence[float] | float = 0.25,
        mode: str = "gaussian",
        precision: str = "auto",
        channels_last: bool = False,
        stitch_on_cpu_above: int | str | None = "auto",
        out_channels: int = 2,
        fast_layers: bool | str = "auto",
        **kwargs: Any,
    ) -> None:
        if stitch_on_cpu_above == "auto":
            stitch_on_cpu_above = auto_cpu_threshold(out_channels)
        kwargs.setdefault("cache_roi_weight_map", True)
        super().__init__(
            roi_size=roi_size,
            sw_batch_size=sw_batch_size,
            overlap=overlap,
            mode=mode,
            cpu_thresh=stitch_on_cpu_above,
            **kwargs,
        )
        self.precision = check_precision(precision)
        self.channels_last = bool(channels_last)
        if not isinstance(fast_layers, bool) and fast_layers != "auto":
            raise ValueError(f"fast_layers must be true, false or 'auto', got {fast_layers!r}")
        self.fast_layers = fast_layers

    def _window_predictor(self, network: Callable, dtype: torch.dtype | None) -> Callable:
        """``network`` wrapped so that each window batch runs in ``dtype`` and comes back as float32."""
        channels_last = self.channels_last

        def predict(windows: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if channels_last and windows.ndim == 5:
                windows = windows.contiguous(memory_format=torch.channels_last_3d)
            if dtype is None:
                return network(windows, *args, **kwargs)
            with torch.autocast(device_type=windows.device.type, dtype=dtype):
                return _to_float32(network(windows, *args, **kwargs))

        return predict

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        """Sliding-window inference of ``inputs`` (``(B, C, *spatial)``) with ``network``, in the set precision."""
        device = self.sw_device if self.sw_device is not None else inputs.device
        dtype = resolve_precision(self.precision, device)
        if self.fast_layers is True or (self.fast_layers == "auto" and torch.device(device).type == "cpu"):
            network = fast_inference_network(network)
        return super().__call__(inputs, self._window_predictor(network, dtype), *args, **kwargs)
