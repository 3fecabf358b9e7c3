"""Byte-level BPE: training (``train_bpe``) and encoding/decoding (``Tokenizer``)."""

from __future__ import annotations

from typing import Any

__all__ = ["train_bpe", "Tokenizer"]


def __getattr__(name: str) -> Any:
    # Imported lazily so that `import scratchlm.tokenizer.pretokenize` in a worker process
    # stays cheap.
    if name == "train_bpe":
        from scratchlm.tokenizer.bpe import train_bpe

        return train_bpe
    if name == "Tokenizer":
        from scratchlm.tokenizer.tokenizer import Tokenizer

        return Tokenizer
    raise AttributeError(f"module 'scratchlm.tokenizer' has no attribute {name!r}")
