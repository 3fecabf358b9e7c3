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
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from scratchlm.fileio import atomic_open, read_json, write_json
from scratchlm.layout import Layout, RunFiles
from scratchlm.nn import ModelConfig, TransformerLM
from scratchlm.nn.functional import cross_entropy
from scratchlm.optim import AdamW, clip_gradients, get_lr_cosine_schedule
from scratchlm.progress import progress_bar
from scratchlm.training import distributed
from scratchlm.training.checkpoint import read_checkpoint, save_checkpoint, state_is_finite
from scratchlm.training.config import load_yaml, parse_assignment, resolve_run, total_steps
from scratchlm.training.data import open_split, sample_starts, unigram_entropy, windows
from scratchlm.training.device import (
    CompiledOrEager,
    autocast,
    autocast_dtype,
    configure_backend,
    device_name,
    select_device,
    wants_compile,
)
from scratchlm.training.run_folder import (
    checkpoint_files,
    copy_atomically,
    git_revision,
    load_trained_model,
    move_aside,
    package_versions,
    prune_checkpoints,
    relative_to_run,
    run_folder_lock,
)

log = logging.getLogger(__name__)

# Settings a resumed run must share with its checkpoint; the rest (device, devices, accumulation,
# intervals, ...) may change: the batches do not depend on how a step is split.
RESUME_KEYS = ("corpus", "model", "optimizer", "schedule", "batch_size", "seed")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
EVAL_SEED = 0  # validation batches are the same for every run of a corpus, so runs compare


class TrainingDiverged(RuntimeError):
    """The loss or gradient norm became NaN/inf; the last good checkpoint is kept."""


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM/SIGHUP arrived; a checkpoint was saved and the run can be resumed."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


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
        self.losses: list[torch.Tensor] = []  # train losses (on the device) since the last metrics line

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.start

    def window_rate(self, step: int) -> float:
        """Steps per second since the last metrics line."""
        return (step - self.window_step) / max(time.perf_counter() - self.window_time, 1e-9)

    def new_window(self, step: int) -> None:
        self.window_step, self.window_time, self.losses = step, time.perf_counter(), []


class Trainer:
    """One run: model, optimizer, data and state; ``run()`` trains to the last step.

    Under torchrun each process builds its own Trainer; they draw the same global batch and
    each trains on its rows (``batch_size / world`` of them, in ``grad_accum_steps`` parts), with
    gradients averaged by DDP. Rank 0 alone writes the run folder.
    """

    def __init__(self, settings: dict, data: dict, run_dir: Path, *, run_name: str):
        self.settings, self.data, self.run_dir, self.run_name = settings, data, Path(run_dir), run_name
        self.files = RunFiles(self.run_dir)
        self.checkpoint_dir = self.files.checkpoints
        self.steps = total_steps(settings)
        self.ranks = distributed.ranks_from_env()
        self.device = distributed.rank_device(select_device(settings["device"]), self.ranks)
        distributed.init_process_group(self.ranks, self.device)
        self.amp_dtype = autocast_dtype(self.device, settings["precision"])
        configure_backend(self.device)
        self.model_config = ModelConfig.from_dict({**settings["model"], "vocab_size": data["vocab_size"]})
        context = self.model_config.context_length
        self.train_tokens, counts = open_split(data["train"], data["vocab_size"], context)
        self.valid_tokens, _ = open_split(data["valid"], data["vocab_size"], context)
        self.unigram_entropy = unigram_entropy(counts)
        self.rows, self.micro_rows = self._row_split()
        torch.manual_seed(settings["seed"])
        self.model = TransformerLM.from_config(self.model_config, device=self.device)
        if settings["init_from"]:
            self._init_from(Path(settings["init_from"]))
        self.ddp = (DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda"
                                            else None) if self.ranks.distributed else None)
        module = self.ddp or self.model
        self.forward = CompiledOrEager(module) if wants_compile(settings["compile"], self.device) else module
        self.optimizer = self._optimizer()
        self.rng = np.random.default_rng(settings["seed"])  # the global batch sampler, equal on every rank
        self.eval_batches = self._eval_batches()
        self.state = RunState()

    def _row_split(self) -> tuple[slice, int]:
        """This rank's rows of each global batch, and the rows of one micro-batch."""
        per_rank, remainder = divmod(self.settings["batch_size"], self.ranks.world)
        accum = self.settings["grad_accum_steps"]
        if remainder or per_rank % accum:
            raise ValueError(f"batch_size {self.settings['batch_size']} does not split into {self.ranks.world} "
                             f"processes × grad_accum_steps {accum}")
        return slice(self.ranks.rank * per_rank, (self.ranks.rank + 1) * per_rank), per_rank // accum

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

    def _eval_batches(self) -> list[np.ndarray]:
        """Start positions of a fixed set of validation batches, drawn once (the same for every
        run on this corpus, whatever its number of processes); each rank evaluates its rows."""
        rng = np.random.default_rng(EVAL_SEED)
        size, context = self.settings["batch_size"], self.model_config.context_length
        return [sample_starts(self.valid_tokens, size, context, generator=rng)[self.rows]
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

    def _micro_batches(self, tokens: np.ndarray, starts: np.ndarray) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(inputs, targets) of the windows at ``starts``, ``micro_rows`` at a time."""
        for first in range(0, len(starts), self.micro_rows):
            yield windows(tokens, starts[first:first + self.micro_rows], self.model_config.context_length, self.device)

    def train_step(self) -> tuple[torch.Tensor, float, torch.Tensor]:
        """One optimizer step on a fresh global batch; returns (loss, lr, pre-clip grad norm).

        Loss and norm stay on the device: nothing here waits for the GPU. Where the step is a
        sync step (every step on a CPU, log steps elsewhere) they are checked first, and a
        non-finite one stops the run before the update.
        """
        lr = self.lr_at(self.state.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        starts = sample_starts(self.train_tokens, self.settings["batch_size"], self.model_config.context_length,
                               generator=self.rng)[self.rows]
        self.optimizer.zero_grad(set_to_none=True)
        accum = self.settings["grad_accum_steps"]
        loss = torch.zeros((), device=self.device)
        for index, (inputs, targets) in enumerate(self._micro_batches(self.train_tokens, starts)):
            last = index == accum - 1
            # DDP averages gradients over ranks once, on the last micro-batch of the step.
            with (self.ddp.no_sync() if self.ddp is not None and not last else contextlib.nullcontext()):
                with autocast(self.device, self.amp_dtype):
                    micro_loss = cross_entropy(self.forward(inputs), targets) / accum
                micro_loss.backward()
            loss += micro_loss.detach()
        max_norm = self.settings["optimizer"]["grad_clip"]  # None: measure the norm, never clip
        grad_norm = clip_gradients(self.model.parameters(), math.inf if max_norm is None else max_norm)
        if self._is_sync_step(self.state.step + 1):
            mean_loss = float(distributed.mean_over_ranks(loss, self.ranks))
            if not (math.isfinite(mean_loss) and math.isfinite(float(grad_norm))):
                self._diverged(mean_loss, float(grad_norm), lr)  # before the update: the weights stay finite
        self.optimizer.step()
        self.state.step += 1
        return loss, lr, grad_norm

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
        """Mean loss over the fixed validation batches (each rank its rows, averaged over ranks)."""
        self.model.eval()
        total, batches = torch.zeros((), device=self.device), 0
        for starts in self.eval_batches:
            for inputs, targets in self._micro_batches(self.valid_tokens, starts):
                with autocast(self.device, self.amp_dtype):
                    total += cross_entropy(self.forward(inputs), targets)
                batches += 1
        self.model.train()
        return float(distributed.mean_over_ranks(total / batches, self.ranks))

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
        if self.ranks.is_main:  # every rank holds the same weights and optimizer state
            save_checkpoint(self.model, self.optimizer, self.state.step, path, extra=self._extra())
            prune_checkpoints(self.checkpoint_dir, self.settings["keep_last"])
        return path

    def resume(self, latest: tuple[Path, dict] | None) -> bool:
        """Continue from ``latest`` (``latest_checkpoint()``: path and checkpoint); False when there is none."""
        if latest is None:
            return False
        path, checkpoint = latest
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
                             f"pass --fresh to start the run over (the old files are moved to "
                             f"{self.files.replaced})")

    def differing_settings(self, saved: dict, saved_steps: int | None) -> list[str]:
        """The settings (of RESUME_KEYS, plus the step count) in which a checkpoint differs from this run."""
        differing = [key for key in RESUME_KEYS if saved.get(key) != self.settings[key]]
        if saved_steps != self.steps:
            differing.append("steps/tokens")
        return differing

    def latest_checkpoint(self) -> tuple[Path, dict] | None:
        """(path, checkpoint) of the newest checkpoint, read once (to the CPU), or None."""
        saved = checkpoint_files(self.checkpoint_dir)
        if not saved:
            return None
        return saved[-1][1], read_checkpoint(saved[-1][1])

    # -- the loop ----------------------------------------------------------------------------

    def run(self, *, on_step: Callable[[int, dict], None] | None = None) -> dict:
        """Train from the current state to the last step; returns the summary."""
        self.model.train()
        main = self.ranks.is_main
        wandb_run = _start_wandb(self.settings, self.run_name) if main else None
        clock = _Clock(self.state.step, self.state.elapsed_s)
        progress = progress_bar(f"train {self.run_name}", total=self.steps - self.state.step, unit="steps",
                                quiet=not main)
        speed = ""  # tokens/s of the latest metrics line
        with stop_signals() as received, progress:
            while self.state.step < self.steps:
                loss, lr, grad_norm = self.train_step()
                step = self.state.step
                self.state.elapsed_s = clock.elapsed()
                clock.losses.append(loss)
                line = self._metrics_line(clock, lr, grad_norm) if self._is_log_step(step) else {}
                if line:
                    if main:
                        self._log(line, wandb_run)
                    speed = f"loss {line['train_loss']:.3f} {line['tokens_per_s']:,.0f} tok/s"
                progress.update(1)
                progress.set_postfix_str(f"step {step}/{self.steps} lr {lr:.2e} {speed}", refresh=False)
                if on_step is not None:
                    on_step(step, line)
                # A signal on any rank stops every rank (checked where the ranks sync anyway); at
                # the last step the run just finishes.
                stopping = (self._is_sync_step(step) and step < self.steps
                            and distributed.any_rank(bool(received), self.ranks, self.device))
                if stopping or step % self.settings["checkpoint_interval"] == 0 or step == self.steps:
                    path = self.save()
                if stopping:
                    signum = received[0] if received else int(signal.SIGTERM)
                    raise TrainingInterrupted(f"run {self.run_name!r} stopped by signal {signum} at step {step}; "
                                              f"checkpoint {path} saved, run again to resume", signum)
        if wandb_run is not None:
            wandb_run.finish()
        return distributed.from_main(self.finish() if main else None, self.ranks)

    def _is_sync_step(self, step: int) -> bool:
        """Steps whose loss the host reads: every step on a CPU (free), log steps on accelerators."""
        return self.device.type == "cpu" or self._is_log_step(step)

    def _is_log_step(self, step: int) -> bool:
        return step % self.settings["log_interval"] == 0 or self._is_eval_step(step)

    def _is_eval_step(self, step: int) -> bool:
        return step % self.settings["eval_interval"] == 0 or step == self.steps

    def _metrics_line(self, clock: _Clock, lr: float, grad_norm: torch.Tensor) -> dict:
        """The metrics of the steps since the last line (mean train loss over steps and ranks,
        throughput), plus validation."""
        step, tokens_per_step = self.state.step, self.settings["batch_size"] * self.model_config.context_length
        train_loss = float(distributed.mean_over_ranks(torch.stack(clock.losses).mean(), self.ranks))
        line = {"step": step, "tokens": step * tokens_per_step, "elapsed_s": round(self.state.elapsed_s, 3),
                "train_loss": train_loss, "lr": lr, "grad_norm": float(grad_norm),
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
        with open(self.files.metrics, "a") as handle:
            handle.write(json.dumps(line) + "\n")
        if wandb_run is not None:
            wandb_run.log(line, step=line["step"])

    def write_run_files(self) -> None:
        """config.json and metrics.jsonl as of the current state (rewritten on resume)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.files.config, self.resolved_config())
        with atomic_open(self.files.metrics) as handle:
            handle.writelines(json.dumps(line) + "\n" for line in self.state.history)

    def resolved_config(self) -> dict:
        s = self.settings
        training_keys = ("batch_size", "grad_accum_steps", "devices", "steps", "tokens", "eval_interval",
                         "eval_batches", "log_interval", "checkpoint_interval", "keep_last", "device", "precision",
                         "compile", "wandb")
        return {"run": self.run_name, "model": self.model_config.to_dict(), "optimizer": s["optimizer"],
                "schedule": s["schedule"], "training": {**{k: s[k] for k in training_keys},
                                                        "total_steps": self.steps, "resolved_device": str(self.device),
                                                        "processes": self.ranks.world},
                "data": _plain(self.data) | {"corpus": s["corpus"]},
                "seed": s["seed"], "git_revision": git_revision(), "versions": package_versions(),
                "settings": s}

    def finish(self) -> dict:
        """Write model.pt, model.json, summary.json and curves.png; return the summary."""
        final_val = self.state.history[-1]["val_loss"]
        copy_atomically(checkpoint_files(self.checkpoint_dir)[-1][1], self.files.model)
        write_json(self.files.meta, {
            "model": self.model_config.to_dict(), "corpus": self.settings["corpus"], "step": self.state.step,
            "val_loss": final_val, "vocab": relative_to_run(self.data.get("vocab"), self.run_dir),
            "merges": relative_to_run(self.data.get("merges"), self.run_dir),
            "special_tokens": list(self.data.get("special_tokens", []))})
        tokens = self.state.step * self.settings["batch_size"] * self.model_config.context_length
        summary = {
            "run": self.run_name, "corpus": self.settings["corpus"], "final_val_loss": final_val,
            "final_val_perplexity": math.exp(final_val), "best_val_loss": self.state.best_val_loss,
            "final_train_loss": self.state.history[-1]["train_loss"], "unigram_entropy": self.unigram_entropy,
            "steps": self.state.step, "tokens": tokens, "wall_s": round(self.state.elapsed_s, 2),
            "tokens_per_s": round(tokens / max(self.state.elapsed_s, 1e-9), 1), "device": str(self.device),
            "device_name": device_name(self.device), "processes": self.ranks.world,
            "precision": "bf16" if self.amp_dtype else "fp32",
            "parameters": sum(p.numel() for p in self.model.parameters()),
        }
        write_json(self.files.summary, summary)
        from scratchlm.training.plots import plot_curves

        plot_curves(self.files.metrics, self.files.curves, title=self.run_name)
        return summary


def _plain(data: dict) -> dict:
    """``data`` with its paths as strings (for JSON)."""
    return {key: str(value) if isinstance(value, Path) else value for key, value in data.items()}


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
    ranks = distributed.ranks_from_env()
    if settings["devices"] > 1 and not ranks.distributed:  # start the processes ourselves
        job = {"settings": settings, "data": _plain(data),
               "run_dir": str(run_dir), "run_name": run_name or run_dir.name, "fresh": fresh,
               "replace_finished": replace_finished,
               "threads": max(1, threads // settings["devices"]) if threads else None}  # shared by the processes
        with run_folder_lock(run_dir):
            return distributed.launch(job, settings["devices"], run_dir)
    if ranks.distributed and ranks.world != settings["devices"]:
        log.warning("run %s sets devices: %d but runs in %d processes (torchrun's --nproc-per-node decides)",
                    run_name or run_dir.name, settings["devices"], ranks.world)
    lock_here = ranks.is_main and not os.environ.get(distributed.LOCK_HELD_ENV)
    with run_folder_lock(run_dir) if lock_here else contextlib.nullcontext():
        trainer = Trainer(settings, data, run_dir, run_name=run_name or run_dir.name)
        try:
            return _prepare_and_run(trainer, fresh=fresh, replace_finished=replace_finished, on_step=on_step)
        finally:
            distributed.shutdown()


def _prepare_and_run(trainer: Trainer, *, fresh: bool, replace_finished: bool,
                     on_step: Callable[[int, dict], None] | None) -> dict:
    """Rank 0 decides what the run folder holds (move aside, already finished); every rank follows."""
    finished, latest = None, None
    if trainer.ranks.is_main:
        latest = trainer.latest_checkpoint()
        if fresh or (replace_finished and _is_stale(trainer, latest)):
            move_aside(trainer.run_dir)
            latest = None
        else:
            finished = _finished_summary(trainer, latest)
    finished = distributed.from_main(finished, trainer.ranks)
    if finished is not None:
        return finished
    # from_main was a collective: rank 0 has moved the old run aside, if it had to, by now.
    trainer.resume(latest if trainer.ranks.is_main else trainer.latest_checkpoint())
    if trainer.ranks.is_main:
        trainer.write_run_files()
    distributed.barrier(trainer.ranks)
    log.info("run %s: %d steps of %d tokens on %s × %d, %.2fM parameters, unigram entropy %.4f nats",
             trainer.run_name, trainer.steps, trainer.settings["batch_size"] * trainer.model_config.context_length,
             trainer.device, trainer.ranks.world, sum(p.numel() for p in trainer.model.parameters()) / 1e6,
             trainer.unigram_entropy)
    return trainer.run(on_step=on_step)


def _is_stale(trainer: Trainer, latest: tuple[Path, dict] | None) -> bool:
    """Whether ``latest`` is the checkpoint of a finished run or of one with other settings."""
    if latest is None:
        return False
    extra = latest[1]["extra"]
    return (extra.get("steps") == latest[1]["iteration"]
            or bool(trainer.differing_settings(extra.get("settings", {}), extra.get("steps"))))


def _finished_summary(trainer: Trainer, latest: tuple[Path, dict] | None) -> dict | None:
    """For a run that already finished: its summary (final files rewritten if any is missing); else None."""
    if latest is None or latest[1]["extra"].get("steps") != latest[1]["iteration"]:
        return None
    trainer.resume(latest)  # checks the settings match (else: a clear error suggesting --fresh)
    if all((trainer.run_dir / name).is_file() for name in RunFiles.FINAL):
        log.info("run %s already finished (%s); nothing to do (--fresh trains it again, moving this one aside)",
                 trainer.run_name, latest[0])
        return read_json(trainer.files.summary)
    log.info("run %s finished at %s but some final files are missing; writing them again", trainer.run_name,
             latest[0])
    trainer.write_run_files()
    return trainer.finish()


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
    layout = Layout(str(results))
    return {"corpus": corpus, "train": layout.ids(corpus, "train"), "valid": layout.ids(corpus, "valid"),
            "vocab": layout.vocab_pkl(corpus), "merges": layout.merges_pkl(corpus),
            "vocab_size": corpora[corpus]["vocab_size"],
            "special_tokens": list(corpora[corpus].get("special_tokens", []))}


def run_cli(args: argparse.Namespace) -> int:
    project = load_yaml(args.config_file)
    overrides = [load_yaml(path) for path in args.config] + [parse_assignment(a) for a in args.assignments]
    settings = resolve_run(project, args.run, overrides)
    run_dir = args.run_dir or Layout(args.results).run_dir(args.run)
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
