"""Keys and values kept between decoding steps, so that generating a token attends to the cached
positions instead of recomputing them."""

from __future__ import annotations

from torch import Tensor


class LayerKVCache:
    """Keys (after RoPE) and values of one attention layer, preallocated for ``max_len`` positions.

    Storage is allocated on the first ``append`` with that call's batch shape, dtype and device.
    Meant for inference (under ``torch.no_grad()``).
    """

    def __init__(self, max_len: int):
        self.max_len = max_len
        self.length = 0
        self.keys: Tensor | None = None  # (..., heads, max_len, d_k)
        self.values: Tensor | None = None

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store k, v (..., heads, seq, d) after the cached positions; return all keys and values so far."""
        end = self.length + k.shape[-2]
        if end > self.max_len:
            raise ValueError(f"KV cache full: {self.length} cached + {k.shape[-2]} new positions > {self.max_len}")
        if self.keys is None:
            self.keys = k.new_empty(*k.shape[:-2], self.max_len, k.shape[-1])
            self.values = v.new_empty(*v.shape[:-2], self.max_len, v.shape[-1])
        elif k.shape[:-2] != self.keys.shape[:-2]:
            raise ValueError(f"KV cache holds batch shape {tuple(self.keys.shape[:-2])}, got {tuple(k.shape[:-2])}")
        self.keys[..., self.length:end, :] = k
        self.values[..., self.length:end, :] = v
        self.length = end
        return self.keys[..., :end, :], self.values[..., :end, :]


class KVCache:
    """Per-layer key/value caches of a TransformerLM for incremental decoding (``model.new_kv_cache()``)."""

    def __init__(self, num_layers: int, max_len: int):
        self.layers = [LayerKVCache(max_len) for _ in range(num_layers)]
        self.max_len = max_len

    @property
    def length(self) -> int:
        """Number of positions cached so far (the position of the next token)."""
        return self.layers[0].length
