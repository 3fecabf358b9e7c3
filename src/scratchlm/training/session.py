"""One training session's bookkeeping: the state a checkpoint carries besides the weights, the
wall clock and throughput, the stop signals that end a session with a checkpoint, and W&B."""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

from scratchlm.progress import format_duration
from scratchlm.settings import RunSettings
from scratchlm.settings.run import DivergenceSettings

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class TrainingDiverged(RuntimeError):
    """The run diverged (a NaN/inf loss or gradient, or a loss that stayed high): a result, which
    ``Trainer.run`` records in the summary (``status: diverged``) before it stops early."""

    def __init__(self, message: str, *, step: int, loss: float | None = None, lr: float | None = None):
        super().__init__(message)
        self.step, self.loss, self.lr = step, loss, lr

    def record(self) -> dict:
        """What summary.json says about the stop."""
        finite = self.loss is not None and math.isfinite(self.loss)
        return {"status": "diverged", "step": self.step, "loss": self.loss if finite else str(self.loss),
                "lr": self.lr, "reason": str(self)}


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM/SIGHUP arrived; a checkpoint was saved and the run can be resumed."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        """The shell's convention for a process stopped by a signal: 128 + its number."""
        return 128 + self.signum


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
    stopped: dict | None = None  # why the run stopped before its last step (TrainingDiverged.record)
    initial_loss: float | None = None  # the train loss of the first step, before any update
    # Train losses (averaged over ranks) of the steps since the last metrics line: a resumed run's
    # next line then averages the same steps as an uninterrupted run's.
    pending_losses: list[float] = field(default_factory=list)

    @property
    def best_val_loss(self) -> float | None:
        losses = [line["val_loss"] for line in self.history if line.get("val_loss") is not None]
        return min(losses) if losses else None

    def diverging(self, rule: DivergenceSettings) -> str | None:
        """Why the logged train loss counts as diverged under ``rule``, or None.

        >>> state = RunState(history=[{"train_loss": 9.0}, {"train_loss": 15.0}, {"train_loss": 30.0}], initial_loss=7)
        >>> state.diverging(DivergenceSettings(loss_factor=2, patience=2))
        'train loss 30 has stayed above 2 × the initial loss 7 for 2 logged steps'
        """
        if self.initial_loss is None:
            return None
        limit = rule.loss_factor * self.initial_loss
        high = list(itertools.takewhile(lambda line: not line["train_loss"] <= limit, reversed(self.history)))
        if len(high) < rule.patience:
            return None
        return (f"train loss {high[0]['train_loss']:.4g} has stayed above {rule.loss_factor:g} × the initial "
                f"loss {self.initial_loss:.4g} for {len(high)} logged steps")


def perplexity_of(loss: float | None) -> float | None:
    """exp(loss), capped at exp(50) (no overflow early in a run); None without a loss.

    >>> perplexity_of(0.0), perplexity_of(None)
    (1.0, None)
    """
    return None if loss is None else math.exp(min(loss, 50.0))


def ending_text(summary: dict) -> str:
    """How a run ended, in one line for its log (from its summary.json).

    >>> ending_text({"status": "finished", "steps": 1500, "tokens": 3072000, "wall_s": 200.0,
    ...              "final_val_loss": 0.856, "unigram_entropy": 5.661})
    'finished: 1500 steps, 3,072,000 tokens in 03:20; final val loss 0.8560 (unigram entropy 5.6610)'
    """
    loss = summary.get("final_val_loss")
    text = (f"{summary['steps']} steps, {summary['tokens']:,} tokens in {format_duration(summary['wall_s'])}; "
            f"final val loss {'n/a' if loss is None else format(loss, '.4f')} "
            f"(unigram entropy {summary['unigram_entropy']:.4f})")
    if summary.get("status") == "diverged":
        stopped = summary["stopped"]
        lr = f", lr {stopped['lr']:.3g}" if stopped.get("lr") is not None else ""
        return (f"diverged at step {stopped['step']} ({stopped['reason']}{lr}) and stopped early: {text}; "
                f"summary.json says status: diverged")
    return f"finished: {text}"


def progress_text(line: dict, steps: int) -> str:
    """One metrics line for a job log: step, loss, learning rate, throughput and time left.

    >>> progress_text({"step": 50, "train_loss": 3.2, "lr": 3e-3, "tokens_per_s": 12345.6, "elapsed_s": 30}, 200)
    'step 50/200 (25%): train loss 3.2000, lr 3.00e-03, 12,346 tokens/s, 01:30 left'
    """
    step, left = line["step"], line["elapsed_s"] / max(line["step"], 1) * (steps - line["step"])
    val = f", val loss {line['val_loss']:.4f}" if "val_loss" in line else ""
    return (f"step {step}/{steps} ({100 * step / steps:.0f}%): train loss {line['train_loss']:.4f}{val}, "
            f"lr {line['lr']:.2e}, {line['tokens_per_s']:,.0f} tokens/s, {format_duration(left)} left")


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
        log.warning("wandb.enabled is true but wandb is not installed (pip install -e '.[wandb]' in the "
                    "project's venv); logging to metrics.jsonl only")
        return None
    return wandb.init(project=settings.wandb.project, name=run_name, config=settings.to_dict(), resume="allow")
