"""Sampling language-modelling batches from a 1-D token array (in memory or a ``np.memmap``)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch


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
