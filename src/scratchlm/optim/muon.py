"""Muon (Jordan et al., 2024): momentum orthogonalised by Newton–Schulz iterations for the hidden
matrices, with AdamW for every other parameter (embeddings, LM head, gains).

For a matrix W with gradient G, per step: ``B = μ·B + (1-μ)·G``; the update direction is
``(1-μ)·G + μ·B`` (Nesterov) or B; it is replaced by its nearest semi-orthogonal matrix
``O ≈ U Vᵀ`` (G = U S Vᵀ), computed by five quintic Newton–Schulz steps in bfloat16; then
``W ← W·(1 - lr·λ) - lr·scale·O``, where ``scale`` accounts for the matrix's shape:
``sqrt(max(1, rows/cols))`` ("original", Keller Jordan's) or ``0.2·sqrt(max(rows, cols))``
("match_rms_adamw": the update's RMS matches AdamW's, so AdamW's learning rate carries over).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

from scratchlm.optim.adamw import AdamW
from scratchlm.settings import MuonSettings, default_of

# The quintic's coefficients: the steepest slope at zero that still keeps singular values within
# about [0.7, 1.2] after five steps (Keller Jordan's tuning; torch.optim.Muon uses the same).
NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)
SCALES = ("original", "match_rms_adamw")


def orthogonalize(matrix: Tensor, steps: int = default_of(MuonSettings, "ns_steps"), eps: float = 1e-7) -> Tensor:
    """The nearest semi-orthogonal matrix to ``matrix`` (2-D), approximately: ``U Vᵀ`` of its SVD.

    >>> o = orthogonalize(torch.tensor([[3.0, 0.0], [0.0, 0.5]]))
    >>> [0.6 < v < 1.3 for v in torch.linalg.svdvals(o.float()).tolist()]  # about 1, not 3 and 0.5
    [True, True]
    """
    a, b, c = NEWTON_SCHULZ
    x = matrix.bfloat16()
    wide = x.shape[0] <= x.shape[1]
    if not wide:  # iterate on the smaller Gram matrix
        x = x.mT
    x = x / x.norm().clamp(min=eps)  # spectral norm <= Frobenius norm <= 1
    for _ in range(steps):
        gram = x @ x.mT
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)  # a·x + (b·A + c·A²)·x
    return x if wide else x.mT


def shape_scale(shape: torch.Size, scale: str) -> float:
    """The learning-rate multiplier of a (rows, cols) matrix."""
    rows, cols = shape[:2]
    return math.sqrt(max(1.0, rows / cols)) if scale == "original" else 0.2 * math.sqrt(max(rows, cols))


class Muon(AdamW):
    """AdamW whose parameter groups marked ``"muon": True`` (2-D matrices) take Muon's update.

    Muon groups carry ``momentum``, ``nesterov``, ``ns_steps`` and ``scale``; every group has its
    own ``lr`` and ``weight_decay``; the other groups are AdamW's (``betas``, ``eps``). One
    optimizer, so checkpoints, schedules and resumption treat it like AdamW.
    """

    def __init__(self, params: Iterable, **adamw_options) -> None:
        super().__init__(params, **adamw_options)
        for group in self.param_groups:
            if group.get("muon"):
                if any(p.dim() != 2 for p in group["params"]):
                    raise ValueError("Muon groups hold 2-D matrices only")
                if group["scale"] not in SCALES or not 0 <= group["momentum"] < 1 or group["ns_steps"] < 1:
                    raise ValueError(f"bad Muon group settings: scale {group['scale']!r}, momentum "
                                     f"{group['momentum']}, ns_steps {group['ns_steps']}")

    def _step_group(self, group: dict) -> None:
        if not group.get("muon"):
            super()._step_group(group)
            return
        for p in group["params"]:
            if p.grad is not None:
                self._muon_update(p, group)

    def _muon_update(self, p: Tensor, group: dict) -> None:
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        buffer, grad, momentum = state["momentum_buffer"], p.grad, group["momentum"]
        buffer.lerp_(grad, 1 - momentum)
        direction = grad.lerp(buffer, momentum) if group["nesterov"] else buffer
        update = orthogonalize(direction, group["ns_steps"])
        p.mul_(1 - group["lr"] * group["weight_decay"])
        p.add_(update.to(p.dtype), alpha=-group["lr"] * shape_scale(p.shape, group["scale"]))
