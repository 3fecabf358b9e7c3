"""Sampling language-modelling batches from a 1-D token array (in memory or a ``np.memmap``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from scratchlm.tokenizer.encode import open_ids

COUNT_CHUNK = 1 << 24  # tokens per chunk when counting a split (bounded memory for multi-GB arrays)


def get_batch(x: npt.ArrayLike, batch_size: int, context_length: int, device: str | torch.device, *,
              generator: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of ``x``: inputs (batch, context) and next-token targets (the same windows shifted by one).

    Start positions are uniform over every window that fits; they come from ``generator`` when
    given (reproducible), else from numpy's global random state. Only the sampled windows are
    read, so ``x`` may be a memmap far larger than memory.

    >>> inputs, targets = get_batch(np.arange(10), 2, 3, "cpu", generator=np.random.default_rng(0))
    >>> bool((targets == inputs + 1).all()), inputs.dtype
    (True, torch.int64)
    """
    starts = sample_starts(x, batch_size, context_length, generator=generator)
    return windows(x, starts, context_length, device)


def sample_starts(x: npt.ArrayLike, batch_size: int, context_length: int, *,
                  generator: np.random.Generator | None = None) -> np.ndarray:
    """``batch_size`` uniform start positions of windows of ``context_length + 1`` tokens in ``x``.

    Data-parallel training draws the whole global batch on every rank from one shared
    generator and gives each rank its rows, so the batches (and the loss curve) do not depend
    on the number of ranks, and a run resumes exactly with another number of them.
    """
    if np.ndim(x) != 1:
        raise ValueError(f"get_batch needs a 1-D token array, got shape {np.shape(x)}")
    num_starts = len(x) - context_length  # a window needs context_length + 1 tokens
    if num_starts < 1:
        raise ValueError(f"token array of length {len(x)} is too short for context_length={context_length} "
                         f"(needs at least {context_length + 1} tokens)")
    if generator is not None:
        return generator.integers(0, num_starts, size=batch_size)
    return np.random.randint(0, num_starts, size=batch_size)


def windows(x: npt.ArrayLike, starts: np.ndarray, context_length: int,
            device: str | torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (len(starts), context) and targets (shifted by one) of the windows at ``starts``."""
    # (batch, context + 1) token windows gathered in one fancy-indexing read.
    rows = np.asarray(x[np.asarray(starts)[:, None] + np.arange(context_length + 1)], dtype=np.int64)
    tokens = torch.from_numpy(rows)
    device = torch.device(device)
    if device.type == "cuda":
        tokens = tokens.pin_memory().to(device, non_blocking=True)  # overlap the copy with compute
    else:
        tokens = tokens.to(device)
    return tokens[:, :-1], tokens[:, 1:]


def token_counts(tokens: np.ndarray, vocab_size: int, *, name: str) -> np.ndarray:
    """Occurrences of each id in ``tokens`` (counted in chunks); ValueError naming ``name`` for an id
    outside [0, vocab_size). Ids are range-checked before counting, so no allocation grows with an id."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for start in range(0, len(tokens), COUNT_CHUNK):
        chunk = np.asarray(tokens[start:start + COUNT_CHUNK])
        low, high = (int(chunk.min()), int(chunk.max())) if len(chunk) else (0, 0)
        if low < 0 or high >= vocab_size:
            bad_at = int(np.flatnonzero((chunk < 0) | (chunk >= vocab_size))[0])
            bad = int(chunk[bad_at])
            reason = "is negative" if bad < 0 else f">= vocab size {vocab_size}"
            raise ValueError(f"{name}: token id {bad} {reason} (at position {start + bad_at}; "
                             f"encoded with another tokenizer, or not a token array?)")
        counts += np.bincount(chunk, minlength=vocab_size)
    return counts


def unigram_entropy(counts: np.ndarray) -> float:
    """Entropy in nats of the unigram distribution of ``counts``: the loss of a model that ignores context.

    >>> round(unigram_entropy(np.array([1, 1, 0])), 4)  # two equally likely tokens: ln 2
    0.6931
    """
    probs = counts[counts > 0] / counts.sum()
    return float(-(probs * np.log(probs)).sum())


def open_split(path: str | Path, vocab_size: int, context_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Memory-map an encoded split and check it once: 1-D integers, long enough, ids < vocab_size."""
    tokens = open_ids(path)
    if len(tokens) <= context_length:
        raise ValueError(f"{path}: {len(tokens)} tokens is too short for context_length={context_length}")
    return tokens, token_counts(tokens, vocab_size, name=str(path))
