"""The architecture of a TransformerLM: ``ModelOptions`` (what a run sets) and ``ModelConfig``
(those plus the vocabulary size, which comes from the corpus's tokenizer).

Torch-free, so that reading settings (the CLI, the Snakefile) does not load torch.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, model_validator

from scratchlm.settings.base import Float, Int, Section, default_of

Norm = Literal["pre", "post", "none"]
Position = Literal["rope", "none"]
Ffn = Literal["swiglu", "silu", "relu2"]
AttentionBackend = Literal["scratch", "sdpa"]
NORMS, POSITIONS, FFNS, ATTENTION_BACKENDS = (get_args(kind) for kind in (Norm, Position, Ffn, AttentionBackend))


class ModelOptions(Section):
    """A run's architecture; the defaults are the CS336 TinyStories base model."""

    context_length: Int = Field(256, gt=0)
    """tokens per training sequence (and the longest context at generation)"""
    d_model: Int = Field(512, gt=0)
    """width of the residual stream"""
    num_layers: Int = Field(4, gt=0)
    """Transformer blocks"""
    num_heads: Int = Field(16, gt=0)
    """attention heads (they divide d_model)"""
    d_ff: Int | None = Field(None, gt=0)
    """feed-forward width; null: 8/3·d_model rounded to 64 (swiglu), 4·d_model (silu, relu2)"""
    rope_theta: Float = Field(10000.0, gt=0)
    """RoPE base"""
    norm: Norm = "pre"
    """RMSNorm placement: pre, post or none (an ablation)"""
    position: Position = "rope"
    """rope, or none (no position information: an ablation)"""
    ffn: Ffn = "swiglu"
    """swiglu, silu (a two-matrix MLP) or relu2 (a two-matrix MLP with ReLU²)"""
    qk_norm: bool = False
    """RMSNorm of the queries and keys of each head (before RoPE), with gains"""
    zero_init_out: bool = False
    """the attention and feed-forward output projections and the LM head start at zero"""
    logit_softcap: Float | None = Field(None, gt=0)
    """cap·tanh(logits / cap) on the logits (e.g. 15–30); null: off"""
    tie_embeddings: bool = False
    """share the token embedding with the LM head"""
    attention_backend: AttentionBackend = "scratch"
    """scratch, or sdpa (torch's fused kernel, faster on GPU; same numerics)"""

    @model_validator(mode="after")
    def _heads_fit(self) -> ModelOptions:
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by num_heads={self.num_heads}")
        if self.position == "rope" and (self.d_model // self.num_heads) % 2:
            raise ValueError(f"RoPE needs an even head size, got d_model/num_heads={self.d_model // self.num_heads}")
        if self.zero_init_out and self.tie_embeddings:
            raise ValueError("zero_init_out with tie_embeddings would start the token embeddings at zero too")
        return self


def default_d_ff(d_model: int, ffn: str = default_of(ModelOptions, "ffn")) -> int:
    """Hidden size of the feed-forward layer: 8/3·d_model rounded to a multiple of 64 (SwiGLU),
    4·d_model (the two-matrix MLPs).

    The 8/3 keeps SwiGLU's three matrices at the parameter count of a 4·d_model two-matrix MLP.

    >>> default_d_ff(512), default_d_ff(512, "silu"), default_d_ff(512, "relu2")
    (1344, 2048, 2048)
    """
    if ffn != "swiglu":
        return 4 * d_model
    return max(64, 64 * round(8 * d_model / 3 / 64))


class ModelConfig(ModelOptions):
    """The architecture of one model: a run's ModelOptions and the tokenizer's vocabulary size;
    ``d_ff=None`` is resolved to its default."""

    vocab_size: Int = Field(gt=0)
    """tokens of the tokenizer (embedding rows, LM head outputs)"""

    @model_validator(mode="after")
    def _resolve_d_ff(self) -> ModelConfig:
        if self.d_ff is None:
            object.__setattr__(self, "d_ff", default_d_ff(self.d_model, self.ffn))  # frozen: set once, here
        return self

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        """Build from a plain dict (model.json, a run's config), rejecting unknown keys by name."""
        unknown = set(values) - set(cls.model_fields)
        if unknown:
            raise ValueError(f"unknown model option(s): {', '.join(sorted(unknown))}")
        return cls.model_validate(values)

    def to_dict(self) -> dict:
        """The plain mapping (model.json, checkpoints)."""
        return self.model_dump()
