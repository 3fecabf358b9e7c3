"""A decoder-only Transformer LM (pre-norm, RoPE, SwiGLU by default), built from scratch.

Options off by default (``ModelOptions``): post-norm or none, no RoPE, SiLU or ReLU² MLPs, QK-norm,
zero-initialised output projections, a logit soft-cap, tied embeddings.

Only ``nn.Module``/``nn.Parameter``/``nn.ModuleList`` and the ``nn.init.trunc_normal_``
initializer come from ``torch.nn``; every layer is written with plain tensor ops. The one
exception is ``attention_backend="sdpa"``, the documented fast path that calls
``torch.nn.functional.scaled_dot_product_attention`` (fused/flash kernels, same numerics).

The state dict uses the CS336 reference names (``token_embeddings.weight``,
``layers.{i}.attn.{q,k,v,output}_proj.weight``, ``layers.{i}.ln{1,2}.weight``,
``layers.{i}.ffn.w{1,2,3}.weight``, ``ln_final.weight``, ``lm_head.weight``; linear weights
stored (out, in)), so checkpoints move between the two implementations unchanged.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from scratchlm.nn.functional import scaled_dot_product_attention, silu
from scratchlm.nn.kv_cache import KVCache, LayerKVCache
# The architecture's options, defaults and checks (torch-free, so settings load without torch).
from scratchlm.settings.architecture import ATTENTION_BACKENDS, FFNS, NORMS, ModelConfig, ModelOptions, default_d_ff
from scratchlm.settings.base import default_of  # the CS336 layer signatures take the model's defaults

RMS_NORM_EPS = 1e-5  # added to the mean square in every RMSNorm (Llama's rms_norm_eps)


class Linear(nn.Module):
    """``y = x Wᵀ`` without bias; W is (out, in), init truncated N(0, 2/(in+out)) cut at ±3σ."""

    def __init__(self, in_features: int, out_features: int, device=None, dtype=None):
        super().__init__()
        std = math.sqrt(2.0 / (in_features + out_features))
        weight = torch.empty(out_features, in_features, device=device, dtype=dtype)
        self.weight = nn.Parameter(nn.init.trunc_normal_(weight, std=std, a=-3 * std, b=3 * std))

    def forward(self, x: Tensor) -> Tensor:
        # (..., in) @ (in, out): one GEMM over all leading dims, no reshape copies.
        return x @ self.weight.t()


class Embedding(nn.Module):
    """Lookup table (num_embeddings, embedding_dim), init N(0, 1) cut at ±3."""

    def __init__(self, num_embeddings: int, embedding_dim: int, device=None, dtype=None):
        super().__init__()
        weight = torch.empty(num_embeddings, embedding_dim, device=device, dtype=dtype)
        self.weight = nn.Parameter(nn.init.trunc_normal_(weight, std=1.0, a=-3.0, b=3.0))

    def forward(self, token_ids: Tensor) -> Tensor:
        return self.weight[token_ids]  # (...) -> (..., embedding_dim)


class RMSNorm(nn.Module):
    """``x / rms(x) * gain`` over the last dim, computed in float32 and returned in the input dtype."""

    def __init__(self, d_model: int, eps: float = RMS_NORM_EPS, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model, device=device, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        in_dtype = x.dtype
        x = x.float()  # no copy when x is already float32
        inv_rms = torch.rsqrt(x.square().mean(dim=-1, keepdim=True) + self.eps)
        return (x * inv_rms * self.weight).to(in_dtype)


class SwiGLU(nn.Module):
    """Gated feed-forward ``w2(silu(w1 x) * w3 x)``."""

    def __init__(self, d_model: int, d_ff: int | None = None, device=None, dtype=None):
        super().__init__()
        d_ff = d_ff or default_d_ff(d_model)
        self.w1 = Linear(d_model, d_ff, device=device, dtype=dtype)
        self.w2 = Linear(d_ff, d_model, device=device, dtype=dtype)
        self.w3 = Linear(d_model, d_ff, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(silu(self.w1(x)) * self.w3(x))


class SiLUFeedForward(nn.Module):
    """Ungated feed-forward ``w2(silu(w1 x))`` (the ``ffn: silu`` ablation, d_ff = 4·d_model)."""

    ffn = "silu"  # its default d_ff

    def __init__(self, d_model: int, d_ff: int | None = None, device=None, dtype=None):
        super().__init__()
        d_ff = d_ff or default_d_ff(d_model, self.ffn)
        self.w1 = Linear(d_model, d_ff, device=device, dtype=dtype)
        self.w2 = Linear(d_ff, d_model, device=device, dtype=dtype)

    def activation(self, hidden: Tensor) -> Tensor:
        return silu(hidden)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(self.activation(self.w1(x)))


class ReLU2FeedForward(SiLUFeedForward):
    """Ungated feed-forward ``w2(relu(w1 x)²)`` (the ``ffn: relu2`` option, d_ff = 4·d_model), as in
    Primer and the modded-nanogpt speedrun."""

    ffn = "relu2"

    def activation(self, hidden: Tensor) -> Tensor:
        return torch.relu(hidden).square()


FEED_FORWARDS = {"swiglu": SwiGLU, "silu": SiLUFeedForward, "relu2": ReLU2FeedForward}


class RotaryPositionalEmbedding(nn.Module):
    """RoPE: rotate each pair (x[2k], x[2k+1]) by the angle ``position · theta^(-2k/d_k)``.

    A pair is the complex number x[2k] + i·x[2k+1], so the rotation is one complex multiply by
    exp(i·angle): a single elementwise kernel forward and backward, on a view of x.
    """

    def __init__(self, theta: float, d_k: int, max_seq_len: int, device=None):
        super().__init__()
        if d_k % 2:
            raise ValueError(f"RoPE needs an even dimension, got d_k={d_k}")
        # Angles in float64 so large positions keep their precision; stored as complex64.
        inv_freq = theta ** (-torch.arange(0, d_k, 2, device=device, dtype=torch.float64) / d_k)
        angles = torch.outer(torch.arange(max_seq_len, device=device, dtype=torch.float64), inv_freq)
        # Derived from the constructor arguments, so not part of the state dict.
        rotation = torch.polar(torch.ones_like(angles), angles).to(torch.complex64)  # (max_seq_len, d_k/2)
        self.register_buffer("rotation", rotation, persistent=False)

    def forward(self, x: Tensor, token_positions: Tensor) -> Tensor:
        """x (..., seq, d_k), token_positions (..., seq) broadcastable to x's leading dims."""
        if torch.compiler.is_compiling():
            return self._rotate_real(x, token_positions)
        rotation = self.rotation[token_positions]  # (..., seq, d_k/2)
        compute_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        pairs = _as_complex_pairs(x.to(compute_dtype))  # (..., seq, d_k/2) complex
        rotated = torch.view_as_real(pairs * rotation.to(pairs.dtype))  # (..., seq, d_k/2, 2)
        return rotated.flatten(-2).to(x.dtype)

    def _rotate_real(self, x: Tensor, token_positions: Tensor) -> Tensor:
        """The same rotation in real arithmetic: torch.compile cannot trace complex views, and
        its fused kernel makes the complex trick unnecessary there."""
        rotation = self.rotation[token_positions]  # (..., seq, d_k/2) complex
        cos, sin = rotation.real.to(x.dtype), rotation.imag.to(x.dtype)
        x_even, x_odd = x[..., 0::2], x[..., 1::2]
        return torch.stack((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), dim=-1).flatten(-2)


def _as_complex_pairs(x: Tensor) -> Tensor:
    """View (..., d) real as (..., d/2) complex; copies only if x's layout does not allow the view."""
    pairs = x.unflatten(-1, (-1, 2))
    if pairs.stride(-1) != 1 or pairs.storage_offset() % 2 or any(st % 2 for st in pairs.stride()[:-1]):
        pairs = pairs.contiguous()
    return torch.view_as_complex(pairs)


class MultiHeadSelfAttention(nn.Module):
    """Causal multi-head self-attention, d_k = d_v = d_model / num_heads, RoPE on queries and keys only.

    ``backend="scratch"`` uses our ``scaled_dot_product_attention``; ``backend="sdpa"`` is the
    fast path through ``torch.nn.functional.scaled_dot_product_attention`` (flash kernels on GPU).
    """

    def __init__(self, d_model: int, num_heads: int, rope: RotaryPositionalEmbedding | None = None, *,
                 backend: str = "scratch", qk_norm: bool = default_of(ModelOptions, "qk_norm"), device=None,
                 dtype=None):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        if backend not in ATTENTION_BACKENDS:
            raise ValueError(f"attention backend {backend!r} is not one of {', '.join(ATTENTION_BACKENDS)}")
        self.num_heads = num_heads
        self.backend = backend
        self.rope = rope
        self.q_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.k_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.v_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.output_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        if qk_norm:  # per head, over d_k, with gains (QK-norm; Qwen3's q_norm / k_norm)
            self.q_norm = RMSNorm(d_model // num_heads, device=device, dtype=dtype)
            self.k_norm = RMSNorm(d_model // num_heads, device=device, dtype=dtype)
        self.qk_norm = qk_norm

    def forward(self, x: Tensor, token_positions: Tensor | None = None, *,
                kv_cache: LayerKVCache | None = None) -> Tensor:
        """x (..., seq, d_model) -> (..., seq, d_model); positions default to cached length + arange(seq)."""
        q, k, v = (rearrange(proj(x), "... t (h d) -> ... h t d", h=self.num_heads)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None:
            if token_positions is None:
                start = kv_cache.length if kv_cache is not None else 0
                token_positions = torch.arange(start, start + x.shape[-2], device=x.device)
            # (..., seq) -> (..., 1, seq) so the positions broadcast over the heads dim.
            positions = token_positions.unsqueeze(-2) if token_positions.dim() > 1 else token_positions
            q, k = self.rope(q, positions), self.rope(k, positions)
        if kv_cache is not None:
            k, v = kv_cache.append(k, v)
        return self.output_proj(rearrange(self._attend(q, k, v), "... h t d -> ... t (h d)"))

    def _attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        num_queries, num_keys = q.shape[-2], k.shape[-2]
        # Queries are the last num_queries of the num_keys positions (earlier ones come from the
        # KV cache): query i may attend to keys 0 .. num_keys - num_queries + i.
        mask = None
        if num_keys != num_queries or self.backend == "scratch":
            mask = torch.ones(num_queries, num_keys, dtype=torch.bool, device=q.device).tril(num_keys - num_queries)
        if self.backend == "sdpa":
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
        return scaled_dot_product_attention(q, k, v, mask)


class TransformerBlock(nn.Module):
    """Attention then feed-forward, each residual; RMSNorm before (pre), after (post) or nowhere (none)."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int | None = None, *,
                 rope: RotaryPositionalEmbedding | None = None, norm: str = default_of(ModelOptions, "norm"),
                 ffn: str = default_of(ModelOptions, "ffn"),
                 attention_backend: str = default_of(ModelOptions, "attention_backend"),
                 qk_norm: bool = default_of(ModelOptions, "qk_norm"), device=None, dtype=None):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm {norm!r} is not one of {', '.join(NORMS)}")
        if ffn not in FFNS:
            raise ValueError(f"ffn {ffn!r} is not one of {', '.join(FFNS)}")
        factory = {"device": device, "dtype": dtype}
        self.norm = norm
        self.attn = MultiHeadSelfAttention(d_model, num_heads, rope, backend=attention_backend, qk_norm=qk_norm,
                                           **factory)
        self.ffn = FEED_FORWARDS[ffn](d_model, d_ff, **factory)
        if norm != "none":
            self.ln1 = RMSNorm(d_model, **factory)
            self.ln2 = RMSNorm(d_model, **factory)

    def forward(self, x: Tensor, token_positions: Tensor | None = None, *,
                kv_cache: LayerKVCache | None = None) -> Tensor:
        if self.norm == "pre":
            x = x + self.attn(self.ln1(x), token_positions, kv_cache=kv_cache)
            return x + self.ffn(self.ln2(x))
        if self.norm == "post":
            x = self.ln1(x + self.attn(x, token_positions, kv_cache=kv_cache))
            return self.ln2(x + self.ffn(x))
        x = x + self.attn(x, token_positions, kv_cache=kv_cache)
        return x + self.ffn(x)


class TransformerLM(nn.Module):
    """Decoder-only Transformer language model: token ids (..., seq) -> next-token logits (..., seq, vocab).

    >>> model = TransformerLM(vocab_size=100, context_length=16, d_model=32, num_layers=2, num_heads=4)
    >>> model(torch.zeros(2, 5, dtype=torch.long)).shape
    torch.Size([2, 5, 100])
    """

    def __init__(self, vocab_size: int, context_length: int, d_model: int, num_layers: int, num_heads: int,
                 d_ff: int | None = None, rope_theta: float | None = None, *, device=None, dtype=None, **options):
        # The CS336 signature; ``options`` are ModelConfig's other fields (norm, position, ffn, ...),
        # and an option left out or None takes ModelConfig's default.
        super().__init__()
        given = {"d_ff": d_ff, "rope_theta": rope_theta, **options}
        cfg = ModelConfig(vocab_size=vocab_size, context_length=context_length, d_model=d_model,
                          num_layers=num_layers, num_heads=num_heads,
                          **{name: value for name, value in given.items() if value is not None})
        self.config = cfg
        factory = {"device": device, "dtype": dtype}
        self.token_embeddings = Embedding(cfg.vocab_size, cfg.d_model, **factory)
        # One RoPE table shared by all layers (its buffers are not in the state dict).
        rope = (RotaryPositionalEmbedding(cfg.rope_theta, cfg.d_model // cfg.num_heads, cfg.context_length,
                                          device=device) if cfg.position == "rope" else None)
        self.layers = nn.ModuleList(
            TransformerBlock(cfg.d_model, cfg.num_heads, cfg.d_ff, rope=rope, norm=cfg.norm, ffn=cfg.ffn,
                             attention_backend=cfg.attention_backend, qk_norm=cfg.qk_norm, **factory)
            for _ in range(cfg.num_layers)
        )
        if cfg.norm != "none":
            self.ln_final = RMSNorm(cfg.d_model, **factory)
        self.lm_head = Linear(cfg.d_model, cfg.vocab_size, **factory)
        if cfg.zero_init_out:  # each block starts as the identity, and the logits as uniform
            for weight in self._output_weights():
                nn.init.zeros_(weight)
        if cfg.tie_embeddings:
            # Share one Parameter (both state-dict keys stay present and load into it). It keeps
            # the Linear init: an N(0, 1) output matrix would give logits of std ~sqrt(d_model).
            self.token_embeddings.weight = self.lm_head.weight

    def _output_weights(self) -> list[nn.Parameter]:
        """The matrices that write into the residual stream or the logits (``zero_init_out``)."""
        return [self.lm_head.weight, *(weight for layer in self.layers
                                       for weight in (layer.attn.output_proj.weight, layer.ffn.w2.weight))]

    @classmethod
    def from_config(cls, config: ModelConfig, *, device=None, dtype=None) -> TransformerLM:
        return cls(**config.to_dict(), device=device, dtype=dtype)

    def new_kv_cache(self) -> KVCache:
        """An empty KV cache for ``forward(..., kv_cache=...)``, holding up to context_length positions."""
        return KVCache(self.config.num_layers, self.config.context_length)

    def forward(self, token_ids: Tensor, *, kv_cache: KVCache | None = None) -> Tensor:
        """Logits for every position; with ``kv_cache``, token_ids continue the cached positions."""
        start = kv_cache.length if kv_cache is not None else 0
        seq_len = token_ids.shape[-1]
        if start + seq_len > self.config.context_length:
            raise ValueError(f"sequence of {start} cached + {seq_len} new tokens exceeds the context length "
                             f"{self.config.context_length}")
        positions = torch.arange(start, start + seq_len, device=token_ids.device)
        x = self.token_embeddings(token_ids)
        for i, layer in enumerate(self.layers):
            x = layer(x, positions, kv_cache=kv_cache.layers[i] if kv_cache is not None else None)
        if self.config.norm != "none":
            x = self.ln_final(x)
        logits = self.lm_head(x)
        if self.config.logit_softcap is not None:  # smooth bound on the logits: cap·tanh(logits / cap)
            cap = self.config.logit_softcap
            logits = cap * torch.tanh(logits / cap)
        return logits
