"""The training stage: train a TransformerLM run on memmapped token arrays, resumably.

A run folder ``results/runs/{run}/`` holds config.json (every setting, git revision, package
versions), metrics.jsonl (one JSON line per log step), checkpoints/ (the last ``keep_last``,
written atomically), and at the end model.pt + model.json, summary.json and curves.png.
Restarting a run that did not finish resumes from its latest checkpoint (model, optimizer,
step, RNG states), so its curve continues exactly where it stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import platform
import shutil
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from scratchlm.fileio import atomic_open, atomic_path, exclusive_lock, read_json, require_file, write_json
from scratchlm.nn import ModelConfig, TransformerLM
from scratchlm.nn.functional import cross_entropy
from scratchlm.optim import AdamW, clip_gradients, get_lr_cosine_schedule
from scratchlm.progress import Progress
from scratchlm.training.checkpoint import read_checkpoint, save_checkpoint
from scratchlm.training.config import DEVICE_PATTERN, load_yaml, parse_assignment, resolve_run, total_steps
from scratchlm.training.data import get_batch

log = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"step_(\d+)\.pt")
# Settings a resumed run must share with its checkpoint; the rest (device, intervals, ...) may change.
RESUME_KEYS = ("corpus", "model", "optimizer", "schedule", "batch_size", "seed")
COUNT_CHUNK = 1 << 24  # tokens per chunk when counting a split (bounded memory for multi-GB arrays)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
LOCK_FILE = ".lock"  # in the run folder: held by the one trainer writing it
REPLACED_DIR = "replaced"  # earlier runs moved aside by --fresh (or a changed pipeline config)
FINAL_FILES = ("model.pt", "model.json", "summary.json", "metrics.jsonl", "curves.png", "config.json")
EVAL_SEED = 0  # validation batches are the same for every run of a corpus, so runs compare


class TrainingDiverged(RuntimeError):
    """The loss or gradient norm became NaN/inf; the last good checkpoint is kept."""


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM/SIGHUP arrived; a checkpoint was saved and the run can be resumed."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


# ----------------------------------------------------------------------------------------- data


def token_counts(tokens: np.ndarray, vocab_size: int, *, name: str) -> np.ndarray:
    """Occurrences of each id in ``tokens`` (counted in chunks); ValueError naming ``name`` for an id
    outside [0, vocab_size). Ids are range-checked before counting, so no allocation grows with an id."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for start in range(0, len(tokens), COUNT_CHUNK):
        chunk = np.asarray(tokens[start:start + COUNT_CHUNK])
        low, high = (int(chunk.min()), int(chunk.max())) if len(chunk) else (0, 0)
        if low < 0 or high >= vocab_size:
            bad_at = int(np.flatnonzero((chunk < 0) | (chunk >= vocab_size))[0])
            bad = int(chunk[bad_at])
            reason = "is negative" if bad < 0 else f">= vocab size {vocab_size}"
            raise ValueError(f"{name}: token id {bad} {reason} (at position {start + bad_at}; "
                             f"encoded with another tokenizer, or not a token array?)")
        counts += np.bincount(chunk, minlength=vocab_size)
    return counts


def unigram_entropy(counts: np.ndarray) -> float:
    """Entropy in nats of the unigram distribution of ``counts``: the loss of a model that ignores context.

    >>> round(unigram_entropy(np.array([1, 1, 0])), 4)  # two equally likely tokens: ln 2
    0.6931
    """
    probs = counts[counts > 0] / counts.sum()
    return float(-(probs * np.log(probs)).sum())


def open_split(path: str | Path, vocab_size: int, context_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Memory-map an encoded split and check it once: 1-D integers, long enough, ids < vocab_size."""
    path = Path(path)
    require_file(path, "encoded split")
    try:
        tokens = np.load(path, mmap_mode="r")
    except ValueError as error:
        raise ValueError(f"{path}: not a .npy array ({error})") from None
    if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"{path}: expected a 1-D integer token array, got {tokens.dtype} of shape {tokens.shape}")
    if len(tokens) <= context_length:
        raise ValueError(f"{path}: {len(tokens)} tokens is too short for context_length={context_length}")
    return tokens, token_counts(tokens, vocab_size, name=str(path))


# --------------------------------------------------------------------------------------- device


def select_device(requested: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device that is unavailable is an error."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    device = parse_device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} requested but CUDA is not available (torch {torch.__version__})")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {requested!r} requested but MPS is not available")
    return device


def parse_device(text: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps`` as a torch.device; ValueError for anything else.

    >>> parse_device("cuda:1")
    device(type='cuda', index=1)
    """
    if text == "auto" or not re.fullmatch(DEVICE_PATTERN, text):
        raise ValueError(f"unknown device {text!r}: use auto, cpu, cuda, cuda:N or mps")
    return torch.device(text)


def device_name(device: torch.device) -> str:
    """The accelerator's product name (e.g. for peak-FLOP/s tables), or the CPU's."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return _cpu_model() or platform.processor() or platform.machine()
    return device.type


def _cpu_model() -> str | None:
    """The "model name" line of /proc/cpuinfo (Linux), else None."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """bf16 autocast on CUDA (``auto``) or when asked (``bf16``); None means plain fp32."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def configure_backend(device: torch.device) -> None:
    """TF32 matmuls on CUDA: ~fp32 accuracy for the fp32 parts at tensor-core speed."""
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
        torch.backends.cudnn.allow_tf32 = True


# ---------------------------------------------------------------------------------- checkpoints


def checkpoint_files(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of the checkpoints in ``folder``, oldest first."""
    found = [(int(m.group(1)), p) for p in folder.glob("step_*.pt") if (m := CHECKPOINT_PATTERN.fullmatch(p.name))]
    return sorted(found)


def prune_checkpoints(folder: Path, keep_last: int) -> None:
    for _, path in checkpoint_files(folder)[:-keep_last]:
        path.unlink()


# ---------------------------------------------------------------------------------- provenance


def git_revision() -> str | None:
    """The commit of the source tree (with ``-dirty`` if it has uncommitted changes), or None."""
    source = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if rev.returncode:
        return None
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def package_versions() -> dict[str, str | None]:
    from scratchlm import __version__

    return {"scratchlm": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "cuda": torch.version.cuda}


# ------------------------------------------------------------------------------------- signals


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


# ---------------------------------------------------------------------------------------- run


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


class _Clock:
    """Wall-clock bookkeeping of a training session: total elapsed (across resumes) and throughput."""

    def __init__(self, step: int, elapsed_before: float):
        self.start, self.before = time.perf_counter(), elapsed_before
        self.window_step, self.window_time = step, self.start
        self.losses: list[float] = []  # train losses since the last metrics line

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.start

    def window_rate(self, step: int) -> float:
        """Steps per second since the last metrics line."""
        return (step - self.window_step) / max(time.perf_counter() - self.window_time, 1e-9)

    def new_window(self, step: int) -> None:
        self.window_step, self.window_time, self.losses = step, time.perf_counter(), []


class Trainer:
    """One run: model, optimizer, data and state; ``run()`` trains to the last step."""

    def __init__(self, settings: dict, data: dict, run_dir: Path, *, run_name: str):
        self.settings, self.data, self.run_dir, self.run_name = settings, data, Path(run_dir), run_name
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.steps = total_steps(settings)
        self.device = select_device(settings["device"])
        self.amp_dtype = autocast_dtype(self.device, settings["precision"])
        configure_backend(self.device)
        self.model_config = ModelConfig.from_dict({**settings["model"], "vocab_size": data["vocab_size"]})
        context = self.model_config.context_length
        self.train_tokens, counts = open_split(data["train"], data["vocab_size"], context)
        self.valid_tokens, _ = open_split(data["valid"], data["vocab_size"], context)
        self.unigram_entropy = unigram_entropy(counts)
        torch.manual_seed(settings["seed"])
        self.model = TransformerLM.from_config(self.model_config, device=self.device)
        if settings["init_from"]:
            self._init_from(Path(settings["init_from"]))
        self.forward = torch.compile(self.model) if settings["compile"] else self.model
        self.optimizer = self._optimizer()
        self.rng = np.random.default_rng(settings["seed"])
        self.eval_batches = self._eval_batches()
        self.state = RunState()

    def _init_from(self, run_dir: Path) -> None:
        """Start from the final weights of another run folder (a resumed checkpoint overrides them)."""
        source, _ = load_trained_model(run_dir, device=self.device)
        ours, theirs = self.model_config.to_dict(), source.config.to_dict()
        differing = [key for key in ours if key != "attention_backend" and ours[key] != theirs[key]]
        if differing:
            raise ValueError(f"init_from {run_dir}: its model differs from this run's in "
                             + ", ".join(f"{key} ({theirs[key]} vs {ours[key]})" for key in differing))
        self.model.load_state_dict(source.state_dict())
        log.info("run %s starts from the weights of %s", self.run_name, run_dir)

    def _optimizer(self) -> AdamW:
        opt = self.settings["optimizer"]
        # Decay matrices only: shrinking RMSNorm gains towards zero would fight the normalisation.
        params = [p for p in self.model.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": opt["weight_decay"]},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        return AdamW([g for g in groups if g["params"]], lr=opt["lr"], betas=tuple(opt["betas"]), eps=opt["eps"])

    def _eval_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A fixed set of validation batches, drawn once (the same for every run on this corpus)."""
        rng = np.random.default_rng(EVAL_SEED)
        size, context = self.settings["batch_size"], self.model_config.context_length
        return [get_batch(self.valid_tokens, size, context, self.device, generator=rng)
                for _ in range(self.settings["eval_batches"])]

    def lr_at(self, step: int) -> float:
        """Learning rate of the step after ``step`` completed ones: warm-up, then cosine to min_lr at the last step.

        The schedule is evaluated at the 1-based step number, so the first step already has a
        non-zero rate and the last one (number ``steps``) has exactly min_lr.
        """
        max_lr = self.settings["optimizer"]["lr"]
        schedule = self.settings["schedule"]
        warmup = int(schedule["warmup_fraction"] * self.steps)
        return get_lr_cosine_schedule(step + 1, max_lr, max_lr * schedule["min_lr_ratio"], warmup, self.steps)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def train_step(self) -> tuple[float, float, float]:
        """One optimizer step on a fresh random batch; returns (loss, lr, pre-clip grad norm)."""
        lr = self.lr_at(self.state.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        inputs, targets = get_batch(self.train_tokens, self.settings["batch_size"], self.model_config.context_length,
                                    self.device, generator=self.rng)
        with self._autocast():
            loss = cross_entropy(self.forward(inputs), targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = self.settings["optimizer"]["grad_clip"]  # None: measure the norm, never clip
        grad_norm = clip_gradients(self.model.parameters(), math.inf if max_norm is None else max_norm)
        loss_value = loss.item()
        if not (math.isfinite(loss_value) and math.isfinite(grad_norm)):
            self._diverged(loss_value, grad_norm, lr)  # before the update: the weights stay finite
        self.optimizer.step()
        self.state.step += 1
        return loss_value, lr, grad_norm

    def _diverged(self, loss: float, grad_norm: float, lr: float) -> None:
        raise TrainingDiverged(
            f"run {self.run_name!r} diverged at step {self.state.step + 1}: loss {loss}, grad norm {grad_norm}, "
            f"lr {lr:.3g}; {self._last_good()} Lower optimizer.lr or raise schedule.warmup_fraction and start "
            f"the run again.")

    def _last_good(self) -> str:
        """Names the newest checkpoint whose weights and optimizer state are all finite (each is checked)."""
        for _, path in reversed(checkpoint_files(self.checkpoint_dir)):
            try:
                checkpoint = read_checkpoint(path)
            except ValueError:
                continue
            if state_is_finite(checkpoint["model"], checkpoint["optimizer"]):
                return f"last good checkpoint: {path}."
        return "no good checkpoint was written yet."

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean loss over the fixed validation batches."""
        self.model.eval()
        total = 0.0
        for inputs, targets in self.eval_batches:
            with self._autocast():
                total += cross_entropy(self.forward(inputs), targets).item()
        self.model.train()
        return total / len(self.eval_batches)

    # -- checkpoints -------------------------------------------------------------------------

    def _extra(self) -> dict:
        rng = {"numpy": self.rng.bit_generator.state, "torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"rng": rng, "elapsed_s": self.state.elapsed_s, "history": self.state.history,
                "settings": self.settings, "steps": self.steps}

    def save(self) -> Path:
        path = self.checkpoint_dir / f"step_{self.state.step:07d}.pt"
        if not state_is_finite(self.model.state_dict(), self.optimizer.state_dict()):
            raise TrainingDiverged(f"run {self.run_name!r}: non-finite weights or optimizer state at step "
                                   f"{self.state.step}; {path.name} was not written. {self._last_good()}")
        save_checkpoint(self.model, self.optimizer, self.state.step, path, extra=self._extra())
        prune_checkpoints(self.checkpoint_dir, self.settings["keep_last"])
        return path

    def resume(self) -> bool:
        """Continue from the latest checkpoint of an unfinished run; False when starting afresh."""
        saved = checkpoint_files(self.checkpoint_dir)
        if not saved:
            return False
        path = saved[-1][1]
        checkpoint = read_checkpoint(path, map_location=self.device)
        extra = checkpoint["extra"]
        self._check_compatible(path, extra.get("settings", {}), extra.get("steps"))
        try:
            self.model.load_state_dict(checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.rng.bit_generator.state = extra["rng"]["numpy"]
            torch.set_rng_state(extra["rng"]["torch"].cpu())
            if "cuda" in extra["rng"] and self.device.type == "cuda":
                torch.cuda.set_rng_state(extra["rng"]["cuda"].cpu(), self.device)
            self.state = RunState(checkpoint["iteration"], float(extra["elapsed_s"]), list(extra["history"]))
        except (KeyError, RuntimeError, ValueError, TypeError) as error:
            raise ValueError(f"{path}: checkpoint does not match this run ({type(error).__name__}: {error}); "
                             f"pass --fresh to start the run over (the old files are moved aside)") from error
        log.info("resuming run %s from %s (step %d of %d)", self.run_name, path, self.state.step, self.steps)
        return True

    def _check_compatible(self, path: Path, saved: dict, saved_steps: int | None) -> None:
        differing = self.differing_settings(saved, saved_steps)
        if differing:
            raise ValueError(f"{path}: checkpoint was written with different settings ({', '.join(differing)}); "
                             f"pass --fresh to start the run over (the old files are moved to {self.run_dir / REPLACED_DIR})")

    def differing_settings(self, saved: dict, saved_steps: int | None) -> list[str]:
        """The settings (of RESUME_KEYS, plus the step count) in which a checkpoint differs from this run."""
        differing = [key for key in RESUME_KEYS if saved.get(key) != self.settings[key]]
        if saved_steps != self.steps:
            differing.append("steps/tokens")
        return differing

    def latest_checkpoint(self) -> tuple[Path, dict] | None:
        """(path, extra) of the newest checkpoint, or None."""
        saved = checkpoint_files(self.checkpoint_dir)
        if not saved:
            return None
        return saved[-1][1], read_checkpoint(saved[-1][1])

    # -- the loop ----------------------------------------------------------------------------

    def run(self, *, on_step: Callable[[int, dict], None] | None = None) -> dict:
        """Train from the current state to the last step; returns the summary."""
        self.model.train()
        wandb_run = _start_wandb(self.settings, self.run_name)
        clock = _Clock(self.state.step, self.state.elapsed_s)
        progress = Progress(f"train {self.run_name}", total=self.steps - self.state.step, unit="steps")
        speed = ""  # tokens/s of the latest metrics line
        with stop_signals() as received, progress:
            while self.state.step < self.steps:
                loss, lr, grad_norm = self.train_step()
                step = self.state.step
                self.state.elapsed_s = clock.elapsed()
                clock.losses.append(loss)
                line = self._metrics_line(clock, lr, grad_norm) if self._is_log_step(step) else {}
                if line:
                    self._log(line, wandb_run)
                    speed = f"{line['tokens_per_s']:,.0f} tok/s"
                progress.update(1, extra=f"step {step}/{self.steps} loss {loss:.3f} lr {lr:.2e} {speed}")
                if on_step is not None:
                    on_step(step, line)
                stopping = bool(received) and step < self.steps  # a signal at the last step just finishes
                if stopping or step % self.settings["checkpoint_interval"] == 0 or step == self.steps:
                    path = self.save()
                if stopping:
                    raise TrainingInterrupted(f"run {self.run_name!r} stopped by signal {received[0]} at step {step}; "
                                              f"checkpoint {path} saved, run again to resume", received[0])
        if wandb_run is not None:
            wandb_run.finish()
        return self.finish()

    def _is_log_step(self, step: int) -> bool:
        return step % self.settings["log_interval"] == 0 or self._is_eval_step(step)

    def _is_eval_step(self, step: int) -> bool:
        return step % self.settings["eval_interval"] == 0 or step == self.steps

    def _metrics_line(self, clock: _Clock, lr: float, grad_norm: float) -> dict:
        """The metrics of the steps since the last line (mean train loss, throughput), plus validation."""
        step, tokens_per_step = self.state.step, self.settings["batch_size"] * self.model_config.context_length
        line = {"step": step, "tokens": step * tokens_per_step, "elapsed_s": round(self.state.elapsed_s, 3),
                "train_loss": sum(clock.losses) / len(clock.losses), "lr": lr, "grad_norm": grad_norm,
                "tokens_per_s": round(clock.window_rate(step) * tokens_per_step, 1)}
        if self._is_eval_step(step):
            val = self.evaluate()
            line.update(val_loss=val, val_perplexity=math.exp(min(val, 50.0)))  # cap: no overflow early on
            log.info("step %d/%d: train loss %.4f, val loss %.4f (unigram entropy %.4f)",
                     step, self.steps, line["train_loss"], val, self.unigram_entropy)
        clock.new_window(step)
        return line

    def _log(self, line: dict, wandb_run: Any) -> None:
        self.state.history.append(line)
        with open(self.run_dir / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(line) + "\n")
        if wandb_run is not None:
            wandb_run.log(line, step=line["step"])

    def write_run_files(self) -> None:
        """config.json and metrics.jsonl as of the current state (rewritten on resume)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.run_dir / "config.json", self.resolved_config())
        with atomic_open(self.run_dir / "metrics.jsonl") as handle:
            handle.writelines(json.dumps(line) + "\n" for line in self.state.history)

    def resolved_config(self) -> dict:
        s = self.settings
        training_keys = ("batch_size", "steps", "tokens", "eval_interval", "eval_batches", "log_interval",
                         "checkpoint_interval", "keep_last", "device", "precision", "compile", "wandb")
        return {"run": self.run_name, "model": self.model_config.to_dict(), "optimizer": s["optimizer"],
                "schedule": s["schedule"], "training": {**{k: s[k] for k in training_keys},
                                                        "total_steps": self.steps, "resolved_device": str(self.device)},
                "data": {k: str(v) if isinstance(v, Path) else v for k, v in self.data.items()} | {"corpus": s["corpus"]},
                "seed": s["seed"], "git_revision": git_revision(), "versions": package_versions(),
                "settings": s}

    def finish(self) -> dict:
        """Write model.pt, model.json, summary.json and curves.png; return the summary."""
        final_val = self.state.history[-1]["val_loss"]
        shutil_copy(checkpoint_files(self.checkpoint_dir)[-1][1], self.run_dir / "model.pt")
        write_json(self.run_dir / "model.json", {
            "model": self.model_config.to_dict(), "corpus": self.settings["corpus"], "step": self.state.step,
            "val_loss": final_val, "vocab": _relative_to(self.data.get("vocab"), self.run_dir),
            "merges": _relative_to(self.data.get("merges"), self.run_dir),
            "special_tokens": list(self.data.get("special_tokens", []))})
        tokens = self.state.step * self.settings["batch_size"] * self.model_config.context_length
        summary = {
            "run": self.run_name, "corpus": self.settings["corpus"], "final_val_loss": final_val,
            "final_val_perplexity": math.exp(final_val), "best_val_loss": self.state.best_val_loss,
            "final_train_loss": self.state.history[-1]["train_loss"], "unigram_entropy": self.unigram_entropy,
            "steps": self.state.step, "tokens": tokens, "wall_s": round(self.state.elapsed_s, 2),
            "tokens_per_s": round(tokens / max(self.state.elapsed_s, 1e-9), 1), "device": str(self.device),
            "device_name": device_name(self.device),
            "precision": "bf16" if self.amp_dtype else "fp32",
            "parameters": sum(p.numel() for p in self.model.parameters()),
        }
        write_json(self.run_dir / "summary.json", summary)
        from scratchlm.training.plots import plot_curves

        plot_curves(self.run_dir / "metrics.jsonl", self.run_dir / "curves.png", title=self.run_name)
        return summary


def _relative_to(path: str | Path | None, run_dir: Path) -> str | None:
    """``path`` relative to the run folder (model.json must not depend on the working directory)."""
    return None if path is None else os.path.relpath(Path(path).resolve(), run_dir.resolve())


def state_is_finite(*states: Any) -> bool:
    """Whether every floating-point tensor in the (nested) state dicts is finite."""
    for state in states:
        if isinstance(state, torch.Tensor):
            if state.is_floating_point() and not bool(torch.isfinite(state).all()):
                return False
        elif isinstance(state, dict):
            if not state_is_finite(*state.values()):
                return False
        elif isinstance(state, (list, tuple)):
            if not state_is_finite(*state):
                return False
    return True


def shutil_copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def _start_wandb(settings: dict, run_name: str) -> Any:
    """A Weights & Biases run when enabled in config and installed; otherwise None."""
    if not settings["wandb"]["enabled"]:
        return None
    try:
        import wandb
    except ImportError:
        log.warning("wandb.enabled is true but wandb is not installed; logging to metrics.jsonl only")
        return None
    return wandb.init(project=settings["wandb"]["project"], name=run_name, config=settings, resume="allow")


def train(settings: dict, data: dict, run_dir: str | Path, *, run_name: str | None = None, fresh: bool = False,
          replace_finished: bool = False, threads: int | None = None,
          on_step: Callable[[int, dict], None] | None = None) -> dict:
    """Train one run into ``run_dir``; returns the summary (also written to summary.json).

    ``settings`` is a resolved run (``config.resolve_run``); ``data`` has ``train`` and ``valid``
    (.npy paths), ``vocab_size`` and optionally ``vocab``/``merges`` (tokenizer paths, recorded in
    model.json). An unfinished run resumes from its latest checkpoint. A finished run is left as
    it is (its summary is returned) unless ``fresh``; ``fresh`` moves the old run's files aside
    (``replaced/{time}/`` in the run folder) and starts over. ``replace_finished`` (what the
    pipeline asks, since Snakemake reruns a job only when its inputs changed) also starts over,
    moving the old files aside, when the run finished or was written with other settings.
    The run folder is locked for the whole call: a second trainer on it fails at once.
    ``threads`` sets torch's CPU threads; ``on_step(step, metrics_line)`` is called after
    every step (tests use it).
    """
    if threads:
        torch.set_num_threads(threads)
    run_dir = Path(run_dir)
    with exclusive_lock(run_dir / LOCK_FILE, what=f"run folder {run_dir}"):
        trainer = Trainer(settings, data, run_dir, run_name=run_name or run_dir.name)
        if fresh or (replace_finished and _is_stale(trainer)):
            move_aside(run_dir)
        elif (finished := _finished_summary(trainer)) is not None:
            return finished
        trainer.resume()
        trainer.write_run_files()
        log.info("run %s: %d steps of %d tokens on %s, %.2fM parameters, unigram entropy %.4f nats",
                 trainer.run_name, trainer.steps, settings["batch_size"] * trainer.model_config.context_length,
                 trainer.device, sum(p.numel() for p in trainer.model.parameters()) / 1e6, trainer.unigram_entropy)
        return trainer.run(on_step=on_step)


def _is_stale(trainer: Trainer) -> bool:
    """Whether the run folder holds a finished run or one written with other settings."""
    latest = trainer.latest_checkpoint()
    if latest is None:
        return False
    path, checkpoint = latest
    extra = checkpoint["extra"]
    return (extra.get("steps") == checkpoint["iteration"]
            or bool(trainer.differing_settings(extra.get("settings", {}), extra.get("steps"))))


def _finished_summary(trainer: Trainer) -> dict | None:
    """For a run that already finished: its summary (final files rewritten if any is missing); else None."""
    latest = trainer.latest_checkpoint()
    if latest is None or latest[1]["extra"].get("steps") != latest[1]["iteration"]:
        return None
    path = latest[0]
    trainer.resume()  # checks the settings match (else: a clear error suggesting --fresh)
    if all((trainer.run_dir / name).is_file() for name in FINAL_FILES):
        log.info("run %s already finished (%s); nothing to do (--fresh trains it again, moving this one aside)",
                 trainer.run_name, path)
        return read_json(trainer.run_dir / "summary.json")
    log.info("run %s finished at %s but some final files are missing; writing them again", trainer.run_name, path)
    trainer.write_run_files()
    return trainer.finish()


def move_aside(run_dir: Path) -> Path | None:
    """Move everything in ``run_dir`` (but its lock and earlier replaced runs) to ``replaced/{UTC time}/``."""
    entries = [entry for entry in run_dir.iterdir() if entry.name not in (LOCK_FILE, REPLACED_DIR)]
    if not entries:
        return None
    target = run_dir / REPLACED_DIR / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    suffix = 0
    while target.exists():
        suffix += 1
        target = target.with_name(f"{target.name.split('.')[0]}.{suffix}")
    target.mkdir(parents=True)
    for entry in entries:
        os.replace(entry, target / entry.name)
    log.warning("%s: the previous run was moved to %s (delete it when no longer needed)", run_dir, target)
    return target


def load_trained_model(run_dir: str | Path, *, device: str | torch.device = "cpu") -> tuple[TransformerLM, dict]:
    """The final model of a finished run (in eval mode) and its model.json metadata."""
    run_dir = Path(run_dir)
    meta_path = run_dir / "model.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"no trained model in {run_dir} (missing {meta_path.name}; has the run finished?)")
    meta = read_json(meta_path)
    model = TransformerLM.from_config(ModelConfig.from_dict(meta["model"]), device=device)
    checkpoint = read_checkpoint(run_dir / "model.pt", map_location=device)
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as error:
        raise ValueError(f"{run_dir / 'model.pt'}: weights do not match {meta_path.name}: {error}") from error
    return model.eval(), meta


# ------------------------------------------------------------------------------------------ CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="name of the run under `runs:` in the config file")
    parser.add_argument("--config-file", default="config.yaml", help="pipeline config with `training:` and `runs:`")
    parser.add_argument("--config", action="append", default=[], metavar="FILE",
                        help="YAML file of run settings merged on top of the run (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="assignments",
                        help="override one setting, e.g. --set optimizer.lr=3e-4 --set model.num_layers=2")
    parser.add_argument("--results", default="results",
                        help="folder with the encoded splits ({corpus}_{split}.npy) and tokenizers")
    parser.add_argument("--run-dir", default=None, help="run folder; RESULTS/runs/RUN when not given")
    parser.add_argument("--fresh", action="store_true",
                        help="start the run over; its existing files are moved to RUN_DIR/replaced/TIME/, not deleted")


def corpus_data(project: dict, corpus: str, results: str | Path) -> dict:
    """Data paths and vocab size of ``corpus`` under the pipeline's file layout."""
    corpora = project.get("corpora") or {}
    if corpus not in corpora:
        raise ValueError(f"unknown corpus {corpus!r}; configured corpora: {', '.join(sorted(corpora))}")
    results = Path(results)
    return {"corpus": corpus, "train": str(results / f"{corpus}_train.npy"),
            "valid": str(results / f"{corpus}_valid.npy"), "vocab": str(results / f"{corpus}_vocab.pkl"),
            "merges": str(results / f"{corpus}_merges.pkl"), "vocab_size": corpora[corpus]["vocab_size"],
            "special_tokens": list(corpora[corpus].get("special_tokens", []))}


def run_cli(args: argparse.Namespace) -> int:
    project = load_yaml(args.config_file)
    overrides = [load_yaml(path) for path in args.config] + [parse_assignment(a) for a in args.assignments]
    settings = resolve_run(project, args.run, overrides)
    run_dir = args.run_dir or Path(args.results) / "runs" / args.run
    try:
        summary = train(settings, corpus_data(project, settings["corpus"], args.results), run_dir,
                        run_name=args.run, fresh=args.fresh)
    except TrainingInterrupted as stop:
        log.warning("%s", stop)
        return 128 + stop.signum
    except TrainingDiverged as error:
        log.error("%s", error)
        return 1
    print(json.dumps(summary, indent=2))
    return 0
