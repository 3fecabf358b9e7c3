"""Stateless building blocks of the model, written with plain tensor ops (no torch.nn.functional)."""

from __future__ import annotations

import math

import torch
from einops import einsum
from torch import Tensor


def silu(x: Tensor) -> Tensor:
    """SiLU (swish): ``x * sigmoid(x)``.

    >>> silu(torch.tensor([0.0]))
    tensor([0.])
    """
    return x * torch.sigmoid(x)


def softmax(x: Tensor, dim: int) -> Tensor:
    """Softmax along ``dim``; the max is subtracted first so ``exp`` cannot overflow.

    >>> softmax(torch.tensor([1000.0, 1000.0]), dim=0)
    tensor([0.5000, 0.5000])
    """
    shifted = x - x.amax(dim=dim, keepdim=True)
    exp = shifted.exp_()  # in place on the fresh temporary; autograd keeps exp as the saved result
    return exp / exp.sum(dim=dim, keepdim=True)


def scaled_dot_product_attention(Q: Tensor, K: Tensor, V: Tensor, mask: Tensor | None = None) -> Tensor:
    """``softmax(Q Kᵀ / sqrt(d_k)) V`` over any leading batch dims; ``mask`` is True where a query may attend.

    Shapes: Q (..., queries, d_k), K (..., keys, d_k), V (..., keys, d_v), mask (..., queries, keys)
    (broadcastable) -> (..., queries, d_v). A query row that may attend to nothing gives NaN, as
    in the reference definition.
    """
    scores = einsum(Q, K, "... q d, ... k d -> ... q k") * (1.0 / math.sqrt(Q.shape[-1]))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return einsum(softmax(scores, dim=-1), V, "... q k, ... k d -> ... q d")


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean negative log-likelihood of ``targets`` (...) under ``logits`` (..., vocab).

    Computed as ``logsumexp(logits) - logits[target]`` after subtracting the row max, so the
    log and exp cancel instead of being evaluated (no overflow, no log(0)). Low-precision
    logits are upcast to float32 first.

    >>> cross_entropy(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))
    tensor(0.6931)
    """
    logits = logits.float()
    shifted = logits - logits.amax(dim=-1, keepdim=True)
    log_normalizer = shifted.exp().sum(dim=-1).log()  # (...)
    target_logit = shifted.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (...)
    return (log_normalizer - target_logit).mean()
