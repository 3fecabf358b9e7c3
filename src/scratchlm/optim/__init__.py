"""Optimisation primitives written from scratch: AdamW, Muon, the learning-rate schedules, gradient clipping."""

from scratchlm.optim.adamw import AdamW
from scratchlm.optim.clipping import clip_gradients
from scratchlm.optim.muon import Muon
from scratchlm.optim.schedule import get_lr_cosine_schedule, schedule_lr

__all__ = ["AdamW", "Muon", "clip_gradients", "get_lr_cosine_schedule", "schedule_lr"]
