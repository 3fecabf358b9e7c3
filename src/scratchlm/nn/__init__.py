"""The Transformer LM and its layers, written from scratch (CS336 state-dict layout)."""

from scratchlm.nn.functional import cross_entropy, scaled_dot_product_attention, silu, softmax
from scratchlm.nn.kv_cache import KVCache, LayerKVCache
from scratchlm.nn.model import (
    Embedding,
    Linear,
    ModelConfig,
    MultiHeadSelfAttention,
    ReLU2FeedForward,
    RMSNorm,
    RotaryPositionalEmbedding,
    SiLUFeedForward,
    SwiGLU,
    TransformerBlock,
    TransformerLM,
    default_d_ff,
)

__all__ = [
    "Embedding", "KVCache", "LayerKVCache", "Linear", "ModelConfig", "MultiHeadSelfAttention", "ReLU2FeedForward",
    "RMSNorm",
    "RotaryPositionalEmbedding", "SiLUFeedForward", "SwiGLU", "TransformerBlock", "TransformerLM",
    "cross_entropy", "default_d_ff", "scaled_dot_product_attention", "silu", "softmax",
]
