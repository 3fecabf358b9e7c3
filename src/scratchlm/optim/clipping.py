"""Gradient clipping by the global L2 norm."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


def clip_gradients(params: Iterable[torch.Tensor], max_l2_norm: float, *, eps: float = 1e-6) -> torch.Tensor:
    """Scale all gradients in place so their joint L2 norm is at most ``max_l2_norm``; return the norm
    before clipping, as a 0-d tensor on the gradients' device.

    Gradients are multiplied by ``max_l2_norm / (norm + eps)`` only when ``norm > max_l2_norm``. The
    decision is taken on the device (the factor is clamped to 1), so clipping never waits for the
    GPU: read the norm (``float(norm)``) only when it is needed.

    >>> w = torch.nn.Parameter(torch.zeros(2)); w.grad = torch.tensor([3.0, 4.0])
    >>> float(clip_gradients([w], 1.0)), w.grad
    (5.0, tensor([0.6000, 0.8000]))
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norms = torch._foreach_norm(grads)  # one norm per tensor, computed in float32 or wider
    total = torch.linalg.vector_norm(torch.stack([n.to(torch.float32).to(grads[0].device) for n in norms]))
    if math.isfinite(max_l2_norm):
        factor = (max_l2_norm / (total + eps)).clamp(max=1.0)
        torch._foreach_mul_(grads, factor.to(grads[0].dtype))
    return total
