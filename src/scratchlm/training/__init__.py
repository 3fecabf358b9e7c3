"""Training an LM run (its settings: ``scratchlm.settings.RunSettings``): ``loop.train`` (the entry
point: locking, resume, torchrun), ``trainer`` (the step and the loop), ``session`` (state, clock,
signals), ``data``, ``device``, ``checkpoint``, ``run_folder`` and ``distributed``."""

from scratchlm.training.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from scratchlm.training.data import get_batch

__all__ = ["get_batch", "load_checkpoint", "read_checkpoint", "save_checkpoint"]
