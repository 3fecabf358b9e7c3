"""Optimisation primitives written from scratch: AdamW, the cosine learning-rate schedule, gradient clipping."""

from scratchlm.optim.adamw import AdamW
from scratchlm.optim.clipping import clip_gradients
from scratchlm.optim.schedule import get_lr_cosine_schedule, schedule_lr

__all__ = ["AdamW", "clip_gradients", "get_lr_cosine_schedule", "schedule_lr"]
