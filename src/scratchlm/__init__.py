"""scratchlm: a byte-level BPE tokenizer and a decoder-only Transformer LM, from scratch."""

__version__ = "0.1.0"
