"""Stateless building blocks of the model, written with plain tensor ops (no torch.nn.functional)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def silu(x: Tensor) -> Tensor:
    """SiLU (swish): ``x * sigmoid(x)``.

    >>> silu(torch.tensor([0.0]))
    tensor([0.])
    """
    return _SiLU.apply(x)


class _SiLU(torch.autograd.Function):
    """``x * sigmoid(x)`` with a hand-written backward that keeps only x (one buffer, not two)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return torch.sigmoid(x).mul_(x)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        sig = torch.sigmoid(x)
        # d/dx x·σ(x) = σ(x)·(1 + x·(1 - σ(x)))
        return (1 - sig).mul_(x).add_(1).mul_(sig).mul_(grad_out)


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
    return _Attention.apply(Q, K, V, mask)


class _Attention(torch.autograd.Function):
    """Attention with a hand-written backward that touches the (queries × keys) matrices as little as possible.

    Generic autograd would keep scores, masked scores and probabilities and run ~15 passes over
    them. Here they are built in place and never normalised: with E = exp(S - max) and row sums
    r, O = (E V) / r, and the division lands on the small (queries × d_v) side. Backward uses
    dS = P ⊙ (dP - rowsum(dO ⊙ O)) (since rowsum(dP ⊙ P) = rowsum(dO ⊙ O)), again with 1/r
    folded into dO.
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        scale = 1.0 / math.sqrt(q.shape[-1])
        scores = (q * scale) @ k.transpose(-2, -1)  # (..., queries, keys); scaling q is the cheaper side
        if mask is not None:
            full_shape = torch.broadcast_shapes(scores.shape, mask.shape)
            if full_shape != scores.shape:  # a mask with more batch dims than Q and K
                scores = scores.expand(full_shape).contiguous()
            scores.masked_fill_(~mask, float("-inf"))
        exp_scores = scores.sub_(scores.amax(dim=-1, keepdim=True)).exp_()  # E, in place
        row_sum = exp_scores.sum(dim=-1, keepdim=True)  # (..., queries, 1)
        out = (exp_scores @ v).div_(row_sum)  # (..., queries, d_v)
        ctx.scale = scale
        ctx.save_for_backward(q, k, v, exp_scores, row_sum, out)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        q, k, v, exp_scores, row_sum, out = ctx.saved_tensors
        grad_out = grad_out / row_sum  # dO / r, so that E stands in for P below
        grad_v = exp_scores.transpose(-2, -1) @ grad_out
        grad_scores = grad_out @ v.transpose(-2, -1)  # dP / r, turned into dS in place
        grad_scores.sub_((grad_out * out).sum(dim=-1, keepdim=True)).mul_(exp_scores)
        grad_q = (grad_scores @ k).mul_(ctx.scale)
        grad_k = (grad_scores.transpose(-2, -1) @ q).mul_(ctx.scale)
        # Inputs broadcast over leading dims get their gradients summed back to their shapes.
        return grad_q.sum_to_size(q.shape), grad_k.sum_to_size(k.shape), grad_v.sum_to_size(v.shape), None


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean negative log-likelihood of ``targets`` (...) under ``logits`` (..., vocab).

    Computed as ``logsumexp(logits) - logits[target]`` after subtracting the row max, so the
    log and exp cancel instead of being evaluated (no overflow, no log(0)). Low-precision
    logits are upcast to float32 first.

    >>> cross_entropy(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))
    tensor(0.6931)
    """
    return _CrossEntropy.apply(logits, targets)


class _CrossEntropy(torch.autograd.Function):
    """Cross-entropy with a hand-written backward, ``(softmax(logits) - onehot(target)) / N``.

    Keeps one (..., vocab) buffer, exp(logits - max), between forward and backward; generic
    autograd would keep three and run several more passes over the largest tensor of the model.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor) -> Tensor:
        logits32 = logits.float()
        row_max = logits32.amax(dim=-1, keepdim=True)  # (..., 1)
        target_logit = logits32.gather(-1, targets.unsqueeze(-1)) - row_max  # (..., 1)
        exp_shifted = (logits32 - row_max).exp_()  # (..., vocab)
        sum_exp = exp_shifted.sum(dim=-1, keepdim=True)  # (..., 1)
        ctx.save_for_backward(exp_shifted, sum_exp, targets)
        ctx.in_dtype = logits.dtype
        return (sum_exp.log() - target_logit).mean()

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        exp_shifted, sum_exp, targets = ctx.saved_tensors
        per_row = grad_out / targets.numel()
        grad = exp_shifted * (per_row / sum_exp)  # softmax, scaled
        grad.scatter_add_(-1, targets.unsqueeze(-1), (-per_row).expand(*targets.shape, 1))
        return grad.to(ctx.in_dtype), None
