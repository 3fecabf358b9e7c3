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
    if max(Q.dim(), K.dim(), V.dim(), mask.dim() if mask is not None else 0) == 2:
        return _Attention.apply(Q.unsqueeze(0), K, V, mask).squeeze(0)  # the chunking needs a batch dim
    return _Attention.apply(Q, K, V, mask)


# Score entries (queries × keys) handled at once. On a CPU 4 MiB of float32, so a chunk's scores
# stay in cache through the mask/max/exp/sum passes and its buffers are reused from the heap (one
# allocation of the whole matrix would be a fresh mmap, page-faulted in on every call). On a GPU
# cache size is beside the point and each chunk costs a handful of kernel launches, so the whole
# batch goes at once up to a memory budget for the transient buffers (the exp-scores of every
# chunk are kept for backward anyway): the TinyStories base shape (128 × 16 heads × 256²) is one
# chunk there instead of 128.
CPU_CHUNK_ENTRIES = 1 << 20
GPU_CHUNK_BYTES = 1 << 30


def attention_chunk_entries(device: torch.device, dtype: torch.dtype = torch.float32) -> int:
    """How many score entries one attention chunk may hold on ``device``.

    >>> attention_chunk_entries(torch.device("cpu")), attention_chunk_entries(torch.device("cuda"), torch.bfloat16)
    (1048576, 536870912)
    """
    if device.type == "cpu":
        return CPU_CHUNK_ENTRIES
    return GPU_CHUNK_BYTES // torch.empty(0, dtype=dtype).element_size()


class _Attention(torch.autograd.Function):
    """Attention with a hand-written backward, computed in chunks of the leading (batch) dim.

    Generic autograd would keep scores, masked scores and probabilities and run ~15 passes over
    them. Here they are built in place and never normalised: with E = exp(S - max) and row sums
    r, O = (E V) / r, so the division lands on the small (queries × d_v) side. Backward uses
    dS = P ⊙ (dP - rowsum(dO ⊙ O)) (since rowsum(dP ⊙ P) = rowsum(dO ⊙ O)), again with 1/r
    folded into dO.
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        batch_shape = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2],
                                             mask.shape[:-2] if mask is not None else ())
        q_, k_, v_ = (t.expand(*batch_shape, *t.shape[-2:]) for t in (q, k, v))
        masked_out = None if mask is None else (~mask).expand(*batch_shape, *mask.shape[-2:])
        scale = 1.0 / math.sqrt(q.shape[-1])
        outs, exps, sums = [], [], []
        chunks = _chunks(batch_shape, q.shape[-2] * k.shape[-2], attention_chunk_entries(q.device, q.dtype))
        for rows in chunks:
            scores = (q_[rows] * scale) @ k_[rows].transpose(-2, -1)  # (chunk, ..., queries, keys)
            if masked_out is not None:
                scores.masked_fill_(masked_out[rows], float("-inf"))
            exp_scores = scores.sub_(scores.amax(dim=-1, keepdim=True)).exp_()  # E, in place
            row_sum = exp_scores.sum(dim=-1, keepdim=True)  # (chunk, ..., queries, 1)
            outs.append((exp_scores @ v_[rows]).div_(row_sum))
            exps.append(exp_scores)
            sums.append(row_sum)
        out = torch.cat(outs)  # (*batch_shape, queries, d_v)
        ctx.scale, ctx.chunks = scale, chunks
        ctx.save_for_backward(q, k, v, out, *exps, *sums)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        q, k, v, out, *saved = ctx.saved_tensors
        exps, sums = saved[:len(saved) // 2], saved[len(saved) // 2:]
        batch_shape = out.shape[:-2]
        q_, k_, v_ = (t.expand(*batch_shape, *t.shape[-2:]) for t in (q, k, v))
        grads_q, grads_k, grads_v = [], [], []
        for rows, exp_scores, row_sum in zip(ctx.chunks, exps, sums):
            grad_o = grad_out[rows] / row_sum  # dO / r, so that E stands in for P below
            grads_v.append(exp_scores.transpose(-2, -1) @ grad_o)
            grad_scores = grad_o @ v_[rows].transpose(-2, -1)  # dP / r, turned into dS in place
            grad_scores.sub_((grad_o * out[rows]).sum(dim=-1, keepdim=True)).mul_(exp_scores)
            grads_q.append((grad_scores @ k_[rows]).mul_(ctx.scale))
            grads_k.append((grad_scores.transpose(-2, -1) @ q_[rows]).mul_(ctx.scale))
        # Inputs broadcast over leading dims get their gradients summed back to their shapes.
        return (torch.cat(grads_q).sum_to_size(q.shape), torch.cat(grads_k).sum_to_size(k.shape),
                torch.cat(grads_v).sum_to_size(v.shape), None)


def _chunks(batch_shape: torch.Size, entries_per_matrix: int, max_entries: int) -> list[slice]:
    """Slices of the first batch dim holding at most ``max_entries`` score entries each (at least one row).

    >>> base = torch.Size([128, 16])
    >>> len(_chunks(base, 256 * 256, CPU_CHUNK_ENTRIES)), len(_chunks(base, 256 * 256, 1 << 28))
    (128, 1)
    """
    per_row = entries_per_matrix * math.prod(batch_shape[1:])
    step = min(max(1, batch_shape[0]), max(1, max_entries // max(1, per_row)))
    return [slice(i, i + step) for i in range(0, batch_shape[0], step)]


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
