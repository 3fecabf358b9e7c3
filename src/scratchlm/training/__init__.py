"""Training: batch sampling and checkpoints (``data``, ``checkpoint``); the training loop lives in ``loop``."""

from scratchlm.training.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from scratchlm.training.data import get_batch

__all__ = ["get_batch", "load_checkpoint", "read_checkpoint", "save_checkpoint"]
