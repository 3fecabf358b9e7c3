"""One training session's bookkeeping: the state a checkpoint carries besides the weights, the
wall clock and throughput, the stop signals that end a session with a checkpoint, and W&B."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

from scratchlm.settings import RunSettings

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class TrainingDiverged(RuntimeError):
    """The loss or gradient norm became NaN/inf; the last good checkpoint is kept."""


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM/SIGHUP arrived; a checkpoint was saved and the run can be resumed."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


@contextlib.contextmanager
def stop_signals() -> Iterator[list[int]]:
    """Record SIGINT/SIGTERM/SIGHUP in the yielded list instead of dying, so the loop can checkpoint first.

    SIGHUP is what a closed terminal (or some schedulers) sends: it checkpoints like SIGTERM.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # handlers only work there
        yield received
        return
    previous = {sig: signal.signal(sig, lambda signum, _frame: received.append(signum))
                for sig in STOP_SIGNALS}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class RunState:
    """What a checkpoint must carry besides model and optimizer to continue a run exactly."""

    step: int = 0
    elapsed_s: float = 0.0
    history: list[dict] = field(default_factory=list)  # the metrics.jsonl lines so far

    @property
    def best_val_loss(self) -> float | None:
        losses = [line["val_loss"] for line in self.history if "val_loss" in line]
        return min(losses) if losses else None


class Clock:
    """Wall-clock bookkeeping of a training session: total elapsed (across resumes) and throughput."""

    def __init__(self, step: int, elapsed_before: float):
        self.start, self.before = time.perf_counter(), elapsed_before
        self.window_step, self.window_time = step, self.start
        self.losses: list[torch.Tensor] = []  # train losses (on the device) since the last metrics line

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.start

    def window_rate(self, step: int) -> float:
        """Steps per second since the last metrics line."""
        return (step - self.window_step) / max(time.perf_counter() - self.window_time, 1e-9)

    def new_window(self, step: int) -> None:
        self.window_step, self.window_time, self.losses = step, time.perf_counter(), []


def start_wandb(settings: RunSettings, run_name: str) -> Any:
    """A Weights & Biases run when enabled in config and installed; otherwise None."""
    if not settings.wandb.enabled:
        return None
    try:
        import wandb
    except ImportError:
        log.warning("wandb.enabled is true but wandb is not installed; logging to metrics.jsonl only")
        return None
    return wandb.init(project=settings.wandb.project, name=run_name, config=settings.to_dict(), resume="allow")
