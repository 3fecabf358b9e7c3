"""Learning-rate schedule: linear warm-up, cosine decay, then a constant floor."""

from __future__ import annotations

import math


def get_lr_cosine_schedule(it: int, max_lr: float, min_lr: float, warmup_iters: int,
                           cosine_cycle_iters: int) -> float:
    """Learning rate at ``it``: linear 0 → max_lr over warmup_iters, cosine to min_lr at cosine_cycle_iters, then flat.

    >>> [round(get_lr_cosine_schedule(t, 1.0, 0.1, 2, 4), 3) for t in range(6)]
    [0.0, 0.5, 1.0, 0.55, 0.1, 0.1]
    """
    if it < warmup_iters:
        return max_lr * it / warmup_iters
    if it >= cosine_cycle_iters:
        return min_lr
    progress = (it - warmup_iters) / (cosine_cycle_iters - warmup_iters)  # in [0, 1)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)
