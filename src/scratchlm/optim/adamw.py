"""AdamW with decoupled weight decay (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", alg. 2)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from scratchlm.settings import OptimizerSettings, default_of


class AdamW(torch.optim.Optimizer):
    """Adam with bias-corrected moments and weight decay applied to the weights, not the gradient.

    Per parameter θ with gradient g at step t (1-based):
    ``m = β1·m + (1-β1)·g``, ``v = β2·v + (1-β2)·g²``,
    ``θ ← θ·(1 - lr·λ) - lr · (m / (1-β1ᵗ)) / (sqrt(v / (1-β2ᵗ)) + eps)``.
    The decay uses θ before the Adam update, as in the paper (and torch.optim.AdamW).
    All parameters of a group are updated together with ``torch._foreach_*`` kernels
    (a handful of fused passes instead of ~10 small kernels per tensor).

    >>> w = torch.nn.Parameter(torch.ones(2))
    >>> opt = AdamW([w], lr=0.1, weight_decay=0.0)
    >>> w.sum().backward(); opt.step()
    >>> w.detach()
    tensor([0.9000, 0.9000])
    """

    def __init__(self, params: Iterable, lr: float = default_of(OptimizerSettings, "lr"),
                 betas: tuple[float, float] = tuple(default_of(OptimizerSettings, "betas")),
                 eps: float = default_of(OptimizerSettings, "eps"), weight_decay: float = 0.01):
        if not lr >= 0:
            raise ValueError(f"AdamW learning rate must be >= 0, got {lr}")
        if not all(0.0 <= beta < 1.0 for beta in betas) or len(betas) != 2:
            raise ValueError(f"AdamW betas must be two numbers in [0, 1), got {betas}")
        if not eps >= 0:
            raise ValueError(f"AdamW eps must be >= 0, got {eps}")
        if not weight_decay >= 0:
            raise ValueError(f"AdamW weight_decay must be >= 0, got {weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Update every parameter that has a gradient; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._step_group(group)
        return loss

    def _step_group(self, group: dict) -> None:
        params = [p for p in group["params"] if p.grad is not None]
        # foreach kernels need one device and dtype per call.
        by_kind: dict[tuple, list[Tensor]] = {}
        for p in params:
            if p.grad.is_sparse:
                raise RuntimeError("AdamW does not support sparse gradients")
            by_kind.setdefault((p.device, p.dtype), []).append(p)
        for same_kind in by_kind.values():
            self._update(same_kind, group)

    def _update(self, params: list[Tensor], group: dict) -> None:
        lr, (beta1, beta2), eps, decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        grads = [p.grad for p in params]
        states = [self._state_for(p) for p in params]
        exp_avgs = [s["exp_avg"] for s in states]
        exp_avg_sqs = [s["exp_avg_sq"] for s in states]
        for s in states:
            s["step"] += 1
        # Steps may differ between parameters (one that had no gradient for a while), so the
        # bias corrections are per tensor.
        bias1 = [1.0 - beta1 ** s["step"] for s in states]
        bias2_sqrt = [math.sqrt(1.0 - beta2 ** s["step"]) for s in states]

        if decay:
            torch._foreach_mul_(params, 1.0 - lr * decay)
        torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)  # m += (1-β1)(g - m)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1.0 - beta2)
        # lr·(m/b1) / (sqrt(v)/b2 + eps) == (lr·b2/b1)·m / (sqrt(v) + eps·b2), with b2 = sqrt(1-β2ᵗ):
        # the bias corrections become per-tensor scalars, saving a pass over the moments.
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_add_(denom, [eps * b2 for b2 in bias2_sqrt])
        torch._foreach_addcdiv_(params, exp_avgs, denom, [-lr * b2 / b1 for b1, b2 in zip(bias1, bias2_sqrt)])

    def _state_for(self, p: Tensor) -> dict:
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state
