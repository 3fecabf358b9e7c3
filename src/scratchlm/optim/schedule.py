"""Learning-rate schedules: linear warm-up, then cosine decay (CS336), linear decay, or warm-up–stable–decay."""

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


def get_lr_linear_schedule(it: int, max_learning_rate: float, min_learning_rate: float, warmup_iters: int,
                           decay_end_iters: int) -> float:
    """Linear warm-up to max_learning_rate, then a straight line down to min_learning_rate (0 allowed)
    at decay_end_iters, then flat.

    >>> [round(get_lr_linear_schedule(t, 1.0, 0.0, 2, 6), 3) for t in range(8)]
    [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """
    if it < warmup_iters:
        return max_learning_rate * it / warmup_iters
    if it >= decay_end_iters:
        return min_learning_rate
    progress = (it - warmup_iters) / (decay_end_iters - warmup_iters)
    return max_learning_rate + progress * (min_learning_rate - max_learning_rate)


def get_lr_wsd_schedule(it: int, max_learning_rate: float, min_learning_rate: float, warmup_iters: int,
                        decay_start_iters: int, decay_end_iters: int) -> float:
    """Warm-up–stable–decay: linear warm-up, max_learning_rate until decay_start_iters, then linear
    down to min_learning_rate at decay_end_iters.

    >>> [round(get_lr_wsd_schedule(t, 1.0, 0.0, 1, 4, 6), 3) for t in range(8)]
    [0.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.0, 0.0]
    """
    if it < warmup_iters:
        return max_learning_rate * it / warmup_iters
    if it < decay_start_iters:
        return max_learning_rate
    return get_lr_linear_schedule(it, max_learning_rate, min_learning_rate, decay_start_iters, decay_end_iters)


def schedule_lr(kind: str, it: int, max_learning_rate: float, min_learning_rate: float, warmup_iters: int,
                total_iters: int, decay_iters: int) -> float:
    """The rate of schedule ``kind`` (cosine, linear, wsd) at step ``it`` of ``total_iters``; ``decay_iters``:
    the length of WSD's final decay."""
    if kind == "cosine":
        return get_lr_cosine_schedule(it, max_learning_rate, min_learning_rate, warmup_iters, total_iters)
    if kind == "linear":
        return get_lr_linear_schedule(it, max_learning_rate, min_learning_rate, warmup_iters, total_iters)
    if kind == "wsd":
        start = max(warmup_iters, total_iters - decay_iters)
        return get_lr_wsd_schedule(it, max_learning_rate, min_learning_rate, warmup_iters, start, total_iters)
    raise ValueError(f"unknown schedule {kind!r} (cosine, linear or wsd)")
