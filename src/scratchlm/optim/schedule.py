"""Learning-rate schedule: linear warm-up, cosine decay, then a constant floor."""

from __future__ import annotations

import math


def get_lr_cosine_schedule(it: int, max_learning_rate: float, min_learning_rate: float, warmup_iters: int,
                           cosine_cycle_iters: int) -> float:
    """Learning rate at ``it``: linear 0 → max_learning_rate over warmup_iters, cosine to min_learning_rate
    at cosine_cycle_iters, then flat (the CS336 handout's argument names).

    >>> [round(get_lr_cosine_schedule(t, 1.0, 0.1, 2, 4), 3) for t in range(6)]
    [0.0, 0.5, 1.0, 0.55, 0.1, 0.1]
    """
    if it < warmup_iters:
        return max_learning_rate * it / warmup_iters
    if it >= cosine_cycle_iters:
        return min_learning_rate
    progress = (it - warmup_iters) / (cosine_cycle_iters - warmup_iters)  # in [0, 1)
    return min_learning_rate + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_learning_rate - min_learning_rate)
