"""Small training helpers that MONAI's engines do not offer as arguments."""

from __future__ import annotations

import logging

import torch

__all__ = ["clip_gradients_before_step"]

logger = logging.getLogger(__name__)


def clip_gradients_before_step(optimizer: torch.optim.Optimizer, max_norm: float | None) -> torch.optim.Optimizer:
    """Clip the global gradient norm of ``optimizer``'s parameters to ``max_norm`` before every ``step()``.

    MONAI's ``SupervisedTrainer`` has no clipping argument; a step pre-hook clips in the one place every path goes
    through (with AMP, ``GradScaler.step`` unscales the gradients before it calls ``optimizer.step``, so the hook
    sees true gradients). ``None`` or a non-positive value disables clipping.

    Returns:
        the optimizer, so a config can write ``$pipelines.training.gradients.clip_gradients_before_step(@optimizer,
        1.0)``.
    """
    if max_norm is None or max_norm <= 0:
        return optimizer
    params = [p for group in optimizer.param_groups for p in group["params"]]

    def clip(opt, args, kwargs):
        torch.nn.utils.clip_grad_norm_(params, max_norm)

    optimizer.register_step_pre_hook(clip)
    logger.info("gradient norm clipped to %s before each optimizer step", max_norm)
    return optimizer
