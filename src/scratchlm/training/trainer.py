"""The Trainer: one run's model, optimizer, data and state, and the loop that trains it to the last
step with checkpoints, metrics, evaluation and divergence and signal handling (see loop.train)."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from scratchlm.fileio import atomic_open, write_json
from scratchlm.layout import RunFiles
from scratchlm.nn import ModelConfig, TransformerLM
from scratchlm.nn.functional import cross_entropy
from scratchlm.optim import AdamW, Muon, clip_gradients, schedule_lr
from scratchlm.progress import progress_bar
from scratchlm.training import distributed
from scratchlm.training.checkpoint import read_checkpoint, require_finite, save_checkpoint, state_is_finite
from scratchlm.settings import RunSettings
from scratchlm.training.data import open_split, sample_starts, unigram_entropy, windows
from scratchlm.training.device import (
    CompiledOrEager,
    autocast,
    autocast_dtype,
    check_model_fits,
    configure_backend,
    device_name,
    select_device,
    wants_compile,
)
from scratchlm.training.run_folder import (
    checkpoint_files,
    copy_atomically,
    git_revision,
    keep_final_files,
    load_trained_model,
    package_versions,
    plain_paths,
    prune_checkpoints,
    relative_to_run,
)
from scratchlm.training.session import (
    Clock,
    RunState,
    TrainingDiverged,
    TrainingInterrupted,
    ending_text,
    perplexity_of,
    progress_text,
    start_wandb,
    stop_signals,
)

log = logging.getLogger(__name__)

EVAL_SEED = 0  # validation batches are the same for every run of a corpus, so runs compare


class Trainer:
    """One run: model, optimizer, data and state; ``run()`` trains to the last step.

    Under torchrun each process builds its own Trainer; they draw the same global batch and
    each trains on its rows (``batch_size / world`` of them, in ``grad_accum_steps`` parts), with
    gradients averaged by DDP. Rank 0 alone writes the run folder.
    """

    def __init__(self, settings: RunSettings, data: dict, run_dir: Path, *, run_name: str):
        self.settings, self.data, self.run_dir, self.run_name = settings, data, Path(run_dir), run_name
        self.files = RunFiles(self.run_dir)
        self.checkpoint_dir = self.files.checkpoints
        self.steps = settings.total_steps
        self.ranks = distributed.ranks_from_env()
        self.device = distributed.rank_device(select_device(settings.device), self.ranks)
        distributed.init_process_group(self.ranks, self.device)
        self.amp_dtype = autocast_dtype(self.device, settings.precision)
        configure_backend(self.device)
        self.model_config = ModelConfig(**settings.model.model_dump(), vocab_size=data["vocab_size"])
        context = self.model_config.context_length
        self.train_tokens, counts = open_split(data["train"], data["vocab_size"], context)
        self.valid_tokens, _ = open_split(data["valid"], data["vocab_size"], context)
        self.unigram_entropy = unigram_entropy(counts)
        self.rows, self.micro_rows = self._row_split()
        check_model_fits(self.model_config, self.device, micro_batch=self.micro_rows)
        torch.manual_seed(settings.seed)
        self.model = TransformerLM.from_config(self.model_config, device=self.device)
        if settings.init_from:
            self._init_from(Path(settings.init_from))
        self.ddp = (DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda"
                                            else None) if self.ranks.distributed else None)
        module = self.ddp or self.model
        self.forward = CompiledOrEager(module) if wants_compile(settings.compile, self.device) else module
        self.optimizer = self._optimizer()
        self.rng = np.random.default_rng(settings.seed)  # the global batch sampler, equal on every rank
        self.eval_batches = self._eval_batches()
        self.state = RunState()
        self.clock: Clock | None = None  # the running session's (``_loop``)

    def _row_split(self) -> tuple[slice, int]:
        """This rank's rows of each global batch, and the rows of one micro-batch."""
        per_rank, remainder = divmod(self.settings.batch_size, self.ranks.world)
        accum = self.settings.grad_accum_steps
        if remainder or per_rank % accum:
            raise ValueError(f"batch_size {self.settings.batch_size} does not split into {self.ranks.world} "
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
        """AdamW, or Muon for the blocks' matrices and AdamW for the rest."""
        opt, muon = self.settings.optimizer, self.settings.optimizer.muon
        on_muon, rest = [], []
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                hidden = opt.name == "muon" and name.startswith("layers.") and p.dim() == 2
                (on_muon if hidden else rest).append(p)
        # Decay matrices only: shrinking RMSNorm gains towards zero would fight the normalisation.
        groups = [{"params": on_muon, "muon": True, "lr": muon.lr, "weight_decay": muon.weight_decay,
                   "momentum": muon.momentum, "nesterov": muon.nesterov, "ns_steps": muon.ns_steps,
                   "scale": muon.scale},
                  {"params": [p for p in rest if p.dim() >= 2], "weight_decay": opt.weight_decay},
                  {"params": [p for p in rest if p.dim() < 2], "weight_decay": 0.0}]
        kind = Muon if opt.name == "muon" else AdamW
        return kind([g for g in groups if g["params"]], lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps)

    def _eval_batches(self) -> list[np.ndarray]:
        """Start positions of a fixed set of validation batches, drawn once (the same for every
        run on this corpus, whatever its number of processes); each rank evaluates its rows."""
        rng = np.random.default_rng(EVAL_SEED)
        size, context = self.settings.batch_size, self.model_config.context_length
        return [sample_starts(self.valid_tokens, size, context, generator=rng)[self.rows]
                for _ in range(self.settings.eval_batches)]

    def lr_at(self, step: int) -> float:
        """Learning rate of the step after ``step`` completed ones: warm-up, then the schedule's decay
        (``schedule.kind``) to min_lr at the last step.

        The schedule is evaluated at the 1-based step number, so the first step already has a
        non-zero rate and the last one (number ``steps``) has exactly min_lr.
        """
        max_lr = self.settings.optimizer.lr
        schedule = self.settings.schedule
        warmup, decay = int(schedule.warmup_fraction * self.steps), round(schedule.decay_fraction * self.steps)
        return schedule_lr(schedule.kind, step + 1, max_lr, max_lr * schedule.min_lr_ratio, warmup, self.steps, decay)

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
        lr, opt = self.lr_at(self.state.step), self.settings.optimizer
        for group in self.optimizer.param_groups:  # Muon's matrices follow the same schedule from their own peak
            group["lr"] = lr * opt.muon.lr / opt.lr if group.get("muon") else lr
        starts = sample_starts(self.train_tokens, self.settings.batch_size, self.model_config.context_length,
                               generator=self.rng)[self.rows]
        self.optimizer.zero_grad(set_to_none=True)
        accum = self.settings.grad_accum_steps
        loss = torch.zeros((), device=self.device)
        for index, (inputs, targets) in enumerate(self._micro_batches(self.train_tokens, starts)):
            last = index == accum - 1
            # DDP averages gradients over ranks once, on the last micro-batch of the step.
            with (self.ddp.no_sync() if self.ddp is not None and not last else contextlib.nullcontext()):
                with autocast(self.device, self.amp_dtype):
                    micro_loss = cross_entropy(self.forward(inputs), targets) / accum
                micro_loss.backward()
            loss += micro_loss.detach()
        max_norm = self.settings.optimizer.grad_clip  # None: measure the norm, never clip
        grad_norm = clip_gradients(self.model.parameters(), math.inf if max_norm is None else max_norm)
        if self._is_sync_step(self.state.step + 1):
            mean_loss = float(distributed.mean_over_ranks(loss, self.ranks))
            if not (math.isfinite(mean_loss) and math.isfinite(float(grad_norm))):
                self._diverged(mean_loss, float(grad_norm), lr)  # before the update: the weights stay finite
        self.optimizer.step()
        self.state.step += 1
        return loss, lr, grad_norm

    def _diverged(self, loss: float, grad_norm: float, lr: float) -> None:
        raise TrainingDiverged(f"loss {loss}, grad norm {grad_norm} at step {self.state.step + 1} (before its update)",
                               step=self.state.step + 1, loss=loss, lr=lr)

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
                "settings": self.settings.to_dict(), "steps": self.steps, "stopped": self.state.stopped,
                "initial_loss": self.state.initial_loss, "pending_losses": self._pending_losses()}

    def _pending_losses(self) -> list[float]:
        """The losses since the last metrics line, averaged over ranks (a collective: every rank saves)."""
        losses = self.clock.losses if self.clock else []
        return distributed.mean_over_ranks(torch.stack(losses), self.ranks).tolist() if losses else []

    def save(self) -> Path:
        path = self.checkpoint_dir / f"step_{self.state.step:07d}.pt"
        if not state_is_finite(self.model.state_dict(), self.optimizer.state_dict()):
            raise TrainingDiverged(f"non-finite weights or optimizer state at step {self.state.step}",
                                   step=self.state.step)
        if self.ranks.is_main:  # every rank holds the same weights and optimizer state
            save_checkpoint(self.model, self.optimizer, self.state.step, path, extra=self._extra())
            prune_checkpoints(self.checkpoint_dir, self.settings.keep_last)
        return path

    def resume(self, latest: tuple[Path, dict] | None) -> bool:
        """Continue from ``latest`` (``latest_checkpoint()``: path and checkpoint); False when there is none."""
        if latest is None:
            return False
        path, checkpoint = latest
        extra = checkpoint["extra"]
        self._check_compatible(path, extra.get("settings", {}), extra.get("steps"))
        require_finite(checkpoint, f"{path} (remove it to resume from an older checkpoint, or pass --fresh)")
        try:
            self.model.load_state_dict(checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.rng.bit_generator.state = extra["rng"]["numpy"]
            torch.set_rng_state(extra["rng"]["torch"].cpu())
            if "cuda" in extra["rng"] and self.device.type == "cuda":
                torch.cuda.set_rng_state(extra["rng"]["cuda"].cpu(), self.device)
            self.state = RunState(checkpoint["iteration"], float(extra["elapsed_s"]), list(extra["history"]),
                                  extra.get("stopped"), extra.get("initial_loss"), extra.get("pending_losses", []))
        except (KeyError, RuntimeError, ValueError, TypeError) as error:
            raise ValueError(f"{path}: checkpoint does not match this run ({type(error).__name__}: {error}); "
                             f"pass --fresh to start the run over (the old files are moved aside)") from error
        log.info("resuming run %s from %s (step %d of %d)", self.run_name, path, self.state.step, self.steps)
        return True

    def _check_compatible(self, path: Path, saved: dict, saved_steps: int | None) -> None:
        differing = self.settings.differing_from(saved, saved_steps)
        if differing:
            raise ValueError(f"{path}: checkpoint was written with different settings ({', '.join(differing)}); "
                             f"pass --fresh to start the run over (the old files are moved to "
                             f"{self.files.replaced})")

    # -- the loop ----------------------------------------------------------------------------

    def run(self, *, on_step: Callable[[int, dict], None] | None = None) -> dict:
        """Train from the current state to the last step, or until the run diverges; returns the summary."""
        self.model.train()
        main = self.ranks.is_main
        wandb_run = start_wandb(self.settings, self.run_name) if main else None
        progress = progress_bar(f"train {self.run_name}", total=self.steps - self.state.step, unit="steps",
                                quiet=not main)
        with stop_signals() as received, progress:
            try:
                self._loop(received, progress, wandb_run, on_step)
            except TrainingDiverged as diverged:
                self._stop_diverged(diverged, wandb_run)
        if wandb_run is not None:
            wandb_run.finish()
        return distributed.from_main(self.finish() if main else None, self.ranks)

    def _loop(self, received: list[int], progress: Any, wandb_run: Any,
              on_step: Callable[[int, dict], None] | None) -> None:
        clock = self.clock = Clock(self.state.step, self.state.elapsed_s)
        clock.losses = [torch.tensor(loss, device=self.device) for loss in self.state.pending_losses]
        speed = ""  # loss and tokens/s of the latest metrics line
        while self.state.step < self.steps:
            loss, lr, grad_norm = self.train_step()
            step = self.state.step
            if self.state.initial_loss is None:  # the untrained model's loss: divergence is measured from it
                self.state.initial_loss = float(distributed.mean_over_ranks(loss, self.ranks))
            self.state.elapsed_s = clock.elapsed()
            clock.losses.append(loss)
            line = self._metrics_line(clock, lr, grad_norm) if self._is_log_step(step) else {}
            if line:
                self._log(line, wandb_run, progress)
                speed = f"loss {line['train_loss']:.3f} {line['tokens_per_s']:,.0f} tok/s"
            progress.update(1)
            progress.set_postfix_str(f"step {step}/{self.steps} lr {lr:.2e} {speed}", refresh=False)
            if on_step is not None:
                on_step(step, line)
            if line and (reason := self.state.diverging(self.settings.divergence)):
                raise TrainingDiverged(reason, step=step, loss=line["train_loss"], lr=lr)
            # A signal on any rank stops every rank (checked where the ranks sync anyway); at
            # the last step the run just finishes.
            stopping = (self._is_sync_step(step) and step < self.steps
                        and distributed.any_rank(bool(received), self.ranks, self.device))
            if stopping or step % self.settings.checkpoint_interval == 0 or step == self.steps:
                path = self.save()
            if stopping:
                signum = received[0] if received else int(signal.SIGTERM)
                raise TrainingInterrupted(f"run {self.run_name!r} stopped by signal {signum} at step {step}; "
                                          f"checkpoint {path} saved, run again to resume", signum)

    def _stop_diverged(self, diverged: TrainingDiverged, wandb_run: Any) -> None:
        """End a diverged run as a result: finite weights (the last good checkpoint's if the update
        went through), a validation pass, and a final checkpoint that records the stop."""
        if not state_is_finite(self.model.state_dict(), self.optimizer.state_dict()):
            self._restore_last_good()
        self.state.stopped = diverged.record()
        val = self.evaluate()
        finite = [value if value is not None and math.isfinite(value) else None for value in (diverged.loss, val)]
        line = {"step": self.state.step, "tokens": self.state.step * self.settings.tokens_per_step,
                "elapsed_s": round(self.state.elapsed_s, 3), "train_loss": finite[0], "lr": diverged.lr,
                "val_loss": finite[1], "val_perplexity": perplexity_of(finite[1]), "stopped": "diverged"}
        self._log(line, wandb_run)
        self.save()

    def _restore_last_good(self) -> None:
        """Weights and optimizer state of the newest finite checkpoint, or the initial weights."""
        for _, path in reversed(checkpoint_files(self.checkpoint_dir)):
            try:
                checkpoint = read_checkpoint(path, map_location=self.device)
            except ValueError:
                continue  # unreadable: an older one may do
            if state_is_finite(checkpoint["model"], checkpoint["optimizer"]):
                self.model.load_state_dict(checkpoint["model"])
                self.optimizer.load_state_dict(checkpoint["optimizer"])
                return
        torch.manual_seed(self.settings.seed)  # no finite checkpoint: the weights the run started from
        self.model.load_state_dict(TransformerLM.from_config(self.model_config, device=self.device).state_dict())
        if self.settings.init_from:
            self._init_from(Path(self.settings.init_from))
        self.optimizer = self._optimizer()

    def _is_sync_step(self, step: int) -> bool:
        """Steps whose loss the host reads: every step on a CPU (free), log steps on accelerators."""
        return self.device.type == "cpu" or self._is_log_step(step)

    def _is_log_step(self, step: int) -> bool:
        return step % self.settings.log_interval == 0 or self._is_eval_step(step)

    def _is_eval_step(self, step: int) -> bool:
        return step % self.settings.eval_interval == 0 or step == self.steps

    def _metrics_line(self, clock: Clock, lr: float, grad_norm: torch.Tensor) -> dict:
        """The metrics of the steps since the last line (mean train loss over steps and ranks,
        throughput), plus validation."""
        step, tokens_per_step = self.state.step, self.settings.tokens_per_step
        train_loss = float(distributed.mean_over_ranks(torch.stack(clock.losses).mean(), self.ranks))
        line = {"step": step, "tokens": step * tokens_per_step, "elapsed_s": round(self.state.elapsed_s, 3),
                "train_loss": train_loss, "lr": lr, "grad_norm": float(grad_norm),
                "tokens_per_s": round(clock.window_rate(step) * tokens_per_step, 1)}
        if self._is_eval_step(step):
            val = self.evaluate()
            line.update(val_loss=val, val_perplexity=perplexity_of(val))
        clock.new_window(step)
        return line

    def _log(self, line: dict, wandb_run: Any, progress: Any = None) -> None:
        """Every rank keeps the line (divergence is decided from it); rank 0 writes metrics.jsonl, W&B,
        and, where no progress bar is drawn (a job log), a line of text."""
        self.state.history.append(line)
        if not self.ranks.is_main:
            return
        with open(self.files.metrics, "a") as handle:
            handle.write(json.dumps(line) + "\n")
        if wandb_run is not None:
            wandb_run.log(line, step=line["step"])
        if progress is not None and (progress.disable or "val_loss" in line):
            log.info("run %s: %s", self.run_name, progress_text(line, self.steps))

    def write_run_files(self) -> None:
        """config.json and metrics.jsonl as of the current state (rewritten on resume)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.files.config, self.resolved_config())
        with atomic_open(self.files.metrics) as handle:
            handle.writelines(json.dumps(line) + "\n" for line in self.state.history)

    def resolved_config(self) -> dict:
        """config.json: every setting, as resolved for this run (devices, steps), and provenance."""
        s = self.settings.to_dict()
        training_keys = ("batch_size", "grad_accum_steps", "devices", "nodes", "steps", "tokens", "eval_interval",
                         "eval_batches", "log_interval", "checkpoint_interval", "keep_last", "device", "precision",
                         "compile", "wandb")
        return {"run": self.run_name, "model": self.model_config.to_dict(), "optimizer": s["optimizer"],
                "schedule": s["schedule"], "training": {**{k: s[k] for k in training_keys},
                                                        "total_steps": self.steps, "resolved_device": str(self.device),
                                                        "processes": self.ranks.world},
                "data": plain_paths(self.data) | {"corpus": s["corpus"]},
                "seed": s["seed"], "git_revision": git_revision(), "versions": package_versions(),
                "settings": s}

    def finish(self) -> dict:
        """Write model.pt, model.json, summary.json and curves.png; return the summary (and log, in one
        line, how the run ended)."""
        final_val = self.state.history[-1].get("val_loss")
        copy_atomically(checkpoint_files(self.checkpoint_dir)[-1][1], self.files.model)
        write_json(self.files.meta, {
            "model": self.model_config.to_dict(), "corpus": self.settings.corpus, "step": self.state.step,
            "val_loss": final_val, "vocab": relative_to_run(self.data.get("vocab"), self.run_dir),
            "merges": relative_to_run(self.data.get("merges"), self.run_dir),
            "special_tokens": list(self.data.get("special_tokens", []))})
        tokens = self.state.step * self.settings.tokens_per_step
        stopped = self.state.stopped or {}
        summary = {
            "run": self.run_name, "corpus": self.settings.corpus, "status": stopped.get("status", "finished"),
            **({"stopped": stopped} if stopped else {}), "final_val_loss": final_val,
            "final_val_perplexity": perplexity_of(final_val),
            "best_val_loss": self.state.best_val_loss,
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
        keep_final_files(self.run_dir)
        log.info("run %s %s", self.run_name, ending_text(summary))
        return summary
