"""Faster CPU kernels for two layers of the bundles' U-Nets, computing the same function.

Profiling the lung U-Net on a CPU (``docs/performance.md``) showed that the last two layers, a stride-2
``ConvTranspose3d`` to the class channels and a 3x3x3 ``Conv3d`` between two class channels, took half the network's
time under bfloat16: oneDNN runs transposed and very narrow convolutions far below its speed on the others. Both have
exact rewrites:

- :class:`SubPixelConvTranspose` computes a strided transposed convolution as one ordinary convolution with
  ``stride**dims`` times the output channels, on the input grid, followed by a pixel shuffle (the "sub-pixel"
  decomposition): every output phase is a plain convolution with a subset of the kernel taps;
- :class:`ChannelsLastConv` runs a convolution with at most a few input and output channels in
  ``channels_last`` memory order, which oneDNN vectorises over space instead of over the (too few) channels.

:func:`fast_inference_network` returns a view of a network with those layers swapped in. The view shares the
network's parameters (a later weight update is seen) and leaves the network itself untouched, so the inferer can
build it on every call. In float32 the outputs match the original layers to rounding (tested to 1e-4).
"""

from __future__ import annotations

import copy
import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SubPixelConvTranspose", "ChannelsLastConv", "fast_inference_network"]

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CHANNELS_LAST = {2: torch.channels_last, 3: torch.channels_last_3d}
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


class SubPixelConvTranspose(nn.Module):
    """A strided ``ConvTranspose{1,2,3}d`` computed as one ordinary convolution and a pixel shuffle.

    Output position ``o = s*m + a`` (phase ``a`` of ``s``) of a transposed convolution sums input positions
    ``m + d`` weighted by kernel tap ``a + padding - s*d``. The wrapped layer's kernel is gathered into a kernel of
    ``s**dims * out_channels`` output channels over the offsets ``d``, so one convolution on the input grid computes
    every phase, and a reshape interleaves them. The kernel is gathered from the wrapped layer's weight, and gathered
    again when that weight changes, so the wrapper follows weight updates (see :meth:`kernel`).

    Args:
        conv: a ``ConvTranspose{1,2,3}d`` with ``groups=1`` and ``dilation=1``, as :func:`supports` checks.
    """

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        if not self.supports(conv):
            raise ValueError(f"{conv} is not a transposed convolution with groups=1 and dilation=1")
        self.conv = conv
        self.dims = len(conv.stride)
        taps, self.low, self.high = [], [], []
        for s, k, p in zip(conv.stride, conv.kernel_size, conv.padding, strict=True):
            # offsets d with a tap k_ = a + p - s*d in [0, k) for some phase a
            used = [d for d in range(-k, k + 1) if any(0 <= a + p - s * d < k for a in range(s))]
            d_min, d_max = min(used), max(used)
            self.low.append(d_min)
            self.high.append(d_max)
            taps.append([[a + p - s * d if 0 <= a + p - s * d < k else -1 for d in range(d_min, d_max + 1)]
                         for a in range(s)])  # fmt: skip
        self.offsets = [h - lo + 1 for lo, h in zip(self.low, self.high, strict=True)]
        none = math.prod(conv.kernel_size)  # index of an appended zero tap
        tap_strides = [math.prod(conv.kernel_size[i + 1 :]) for i in range(self.dims)]
        index = []
        for phase in itertools.product(*(range(s) for s in conv.stride)):
            row = []
            for offset in itertools.product(*(range(n) for n in self.offsets)):
                tap = [taps[i][phase[i]][offset[i]] for i in range(self.dims)]
                row.append(none if min(tap) < 0 else sum(t * w for t, w in zip(tap, tap_strides, strict=True)))
            index.append(row)
        self.register_buffer("index", torch.tensor(index, dtype=torch.long), persistent=False)
        self._cached: tuple | None = None

    @staticmethod
    def supports(conv: nn.Module) -> bool:
        """Whether ``conv`` is a transposed convolution this class computes exactly (groups 1, dilation 1, strided)."""
        return (
            isinstance(conv, _TRANSPOSED)
            and conv.groups == 1
            and all(d == 1 for d in conv.dilation)
            and any(s > 1 for s in conv.stride)
            and conv.padding_mode == "zeros"
        )

    def kernel(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The ordinary convolution's kernel ``(out * prod(stride), in, *offsets)`` and bias.

        Gathered from the wrapped layer's weight, and kept while that weight is unchanged (same storage and
        version) and no gradient is being recorded.
        """
        weight, bias = self.conv.weight, self.conv.bias
        key = (weight.data_ptr(), weight._version, weight.dtype, None if bias is None else bias._version)
        if self._cached is not None and self._cached[0] == key and not torch.is_grad_enabled():
            return self._cached[1]
        c_in, c_out = weight.shape[:2]
        flat = torch.cat([weight.reshape(c_in, c_out, -1), weight.new_zeros(c_in, c_out, 1)], dim=2)
        gathered = flat[:, :, self.index]  # (in, out, phases, offsets)
        kernel = gathered.permute(1, 2, 0, 3).reshape(c_out * self.index.shape[0], c_in, *self.offsets)
        result = kernel, None if bias is None else bias.repeat_interleave(self.index.shape[0])
        self._cached = None if torch.is_grad_enabled() else (key, result)
        return result

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        """The wrapped layer's output for ``x`` (``output_size`` falls back to the wrapped layer)."""
        conv = self.conv
        if output_size is not None:
            return conv(x, output_size)
        sizes = x.shape[2:]
        geometry = zip(sizes, conv.stride, conv.padding, conv.kernel_size, conv.output_padding, strict=True)
        out = [(n - 1) * s - 2 * p + k + op for n, s, p, k, op in geometry]
        coarse = [-(-o // s) for o, s in zip(out, conv.stride, strict=True)]
        # input positions m + low .. m + high for coarse output m: pad symmetrically (no copy of the input) by
        # enough for both ends, and keep the coarse outputs from index pad + low on
        pads = [max(0, -lo, m - n + hi) for n, m, lo, hi in zip(sizes, coarse, self.low, self.high, strict=True)]
        kernel, bias = self.kernel()
        y = _CONV[self.dims](x, kernel, bias, padding=pads)
        starts = [p + lo for p, lo in zip(pads, self.low, strict=True)]
        y = y[(slice(None), slice(None), *(slice(a, a + m) for a, m in zip(starts, coarse, strict=True)))]
        batch, c_out = y.shape[0], conv.out_channels
        y = y.reshape(batch, c_out, *conv.stride, *coarse)
        # (B, C, s1.., m1..) -> (B, C, m1, s1, m2, s2, ..)
        order = [0, 1] + [i for d in range(self.dims) for i in (2 + self.dims + d, 2 + d)]
        y = y.permute(order).reshape(batch, c_out, *(m * s for m, s in zip(coarse, conv.stride, strict=True)))
        return y[(slice(None), slice(None), *(slice(0, o) for o in out))]


class ChannelsLastConv(nn.Module):
    """A 2D or 3D convolution run in ``channels_last`` memory order; the output comes back contiguous."""

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.conv = conv
        self.memory_format = _CHANNELS_LAST[len(conv.kernel_size)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The wrapped convolution's output for ``x``."""
        return self.conv(x.contiguous(memory_format=self.memory_format)).contiguous()


def _narrow(conv: nn.Module, max_channels: int) -> bool:
    return (
        isinstance(conv, (nn.Conv2d, nn.Conv3d))
        and conv.groups == 1
        and conv.in_channels <= max_channels
        and conv.out_channels <= max_channels
        and math.prod(conv.kernel_size) > 1
    )


def _rewrite(module: nn.Module, max_channels: int) -> nn.Module:
    if SubPixelConvTranspose.supports(module) and module.out_channels <= max_channels:
        return SubPixelConvTranspose(module)
    if _narrow(module, max_channels):
        return ChannelsLastConv(module)
    children = {name: _rewrite(child, max_channels) for name, child in module.named_children()}
    if all(children[name] is child for name, child in module.named_children()):
        return module
    view = copy.copy(module)
    view._modules = dict(module._modules)
    view._modules.update(children)
    return view


def fast_inference_network(network: nn.Module, max_channels: int = 4) -> nn.Module:
    """``network`` with :class:`SubPixelConvTranspose` and :class:`ChannelsLastConv` swapped in where they apply.

    Strided transposed convolutions become sub-pixel convolutions; 2D/3D convolutions with at most
    ``max_channels`` input and output channels run in ``channels_last`` order. The result is a shallow view:
    containers on the way to a swapped layer are copied, everything else (parameters, buffers, other layers,
    hooks) is shared, and ``network`` is not modified. Returns ``network`` itself when nothing applies, for a
    TorchScript module, and for anything that is not an ``nn.Module``. A ``DataParallel`` or
    ``DistributedDataParallel`` wrapper is looked through (inference needs no gradient synchronisation).
    """
    if not isinstance(network, nn.Module) or isinstance(network, torch.jit.ScriptModule):
        return network
    if isinstance(network, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return fast_inference_network(network.module, max_channels)
    return _rewrite(network, max_channels)
