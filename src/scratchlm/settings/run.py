"""The settings of a training run. ``TrainingSettings`` holds every one with its default (config.yaml's
``training:`` section changes them for all runs); ``RunSettings`` is one run, resolved: a corpus, and
checks across settings (a batch that splits over devices, a step count)."""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from scratchlm.settings.architecture import ModelOptions
from scratchlm.settings.base import Float, Int, Section

# Settings a resumed run must share with its checkpoint; the rest (device, devices, accumulation,
# intervals, ...) may change: the batches do not depend on how a step is split.
RESUME_KEYS = ("corpus", "model", "optimizer", "schedule", "batch_size", "seed")
# Settings that change what a run learns: those, its length and its starting weights. The others say
# where it runs and how it is watched and saved (devices, intervals, evaluation batches, W&B): a
# comparison lists their differences but plots the loss against these only.
LEARNING_KEYS = (*RESUME_KEYS, "steps", "tokens", "init_from")


# Devices a run may name (whether one is present is checked when training starts).
DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"


def _device(name: str) -> str:
    if not re.fullmatch(DEVICE_PATTERN, name):
        raise ValueError(f"must be auto, cpu, cuda, cuda:N or mps, got {name!r}")
    return name


Device = Annotated[str, AfterValidator(_device)]


class MuonSettings(Section):
    """Muon, for the hidden matrices (attention and feed-forward) when ``optimizer.name`` is muon."""

    lr: Float = Field(0.02, gt=0)
    """peak learning rate of the hidden matrices (the schedule scales it like optimizer.lr)"""
    momentum: Float = Field(0.95, ge=0, lt=1)
    """momentum of the gradient average that is orthogonalised"""
    nesterov: bool = True
    """Nesterov momentum"""
    ns_steps: Int = Field(5, ge=1)
    """Newton–Schulz iterations per update"""
    weight_decay: Float = Field(0.0, ge=0)
    """decoupled weight decay of the hidden matrices"""
    scale: Literal["original", "match_rms_adamw"] = "original"
    """per-shape learning-rate factor: sqrt(max(1, rows/cols)), or 0.2·sqrt(max(rows, cols)) (AdamW's RMS)"""


class OptimizerSettings(Section):
    """The optimizer (AdamW, or Muon for the hidden matrices) and gradient clipping."""

    lr: Float = Field(1.0e-3, gt=0)
    """peak learning rate of AdamW's parameters (the top of the schedule)"""
    betas: list[Float] = Field([0.9, 0.95], min_length=2, max_length=2)
    """AdamW's moment decay rates, each in [0, 1)"""
    eps: Float = Field(1.0e-8, gt=0)
    """AdamW's denominator term"""
    weight_decay: Float = Field(0.1, ge=0)
    """decoupled weight decay of matrices (gains are not decayed)"""
    grad_clip: Float | None = Field(1.0, gt=0)
    """largest global L2 norm of the gradients; null: no clipping (the norm is still logged)"""
    name: Literal["adamw", "muon"] = "adamw"
    """adamw, or muon (hidden matrices on Muon, embeddings, LM head and gains on AdamW)"""
    muon: MuonSettings = MuonSettings()
    """Muon's settings (used when name is muon)"""

    @model_validator(mode="after")
    def _betas_below_one(self) -> OptimizerSettings:
        if not all(0 <= beta < 1 for beta in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        return self


class ScheduleSettings(Section):
    """Linear warm-up, then a decay to ``min_lr_ratio · lr`` at the last step."""

    kind: Literal["cosine", "linear", "wsd"] = "cosine"
    """cosine (CS336), linear (a straight line down), or wsd (warm-up, stable, then a linear decay)"""
    warmup_fraction: Float = Field(0.05, ge=0, lt=1)
    """share of the steps spent warming up"""
    min_lr_ratio: Float = Field(0.1, ge=0, le=1)
    """the learning rate at the last step, as a fraction of lr (0: decay to zero)"""
    decay_fraction: Float = Field(0.2, gt=0, le=1)
    """wsd: share of the steps in the final decay"""


class WandbSettings(Section):
    """Weights & Biases logging (besides metrics.jsonl)."""

    enabled: bool = False
    """log to W&B (when wandb is installed)"""
    project: str = "scratchlm"
    """W&B project"""


class DivergenceSettings(Section):
    """When a run counts as diverged: it then stops early, and its summary says so (a result, not a failure)."""

    loss_factor: Float = Field(2.0, gt=1)
    """diverged when the logged train loss stays above this multiple of the first step's loss ..."""
    patience: Int = Field(5, ge=1)
    """... for this many logged steps in a row (a NaN or infinite loss: at once)"""


class TrainingSettings(Section):
    """Every setting of a training run, with its default."""

    corpus: str | None = None
    """the corpus (under `corpora:`) whose encoded splits and tokenizer the run uses"""
    model: ModelOptions = ModelOptions()
    """the architecture"""
    optimizer: OptimizerSettings = OptimizerSettings()
    """AdamW"""
    schedule: ScheduleSettings = ScheduleSettings()
    """the learning-rate schedule"""
    batch_size: Int = Field(32, gt=0)
    """sequences per optimizer step, over all devices and accumulation steps"""
    grad_accum_steps: Int = Field(1, gt=0)
    """micro-batches per step on each device: the same batch in less memory"""
    devices: Int = Field(1, gt=0)
    """data-parallel processes per node (its GPUs), started with torchrun"""
    nodes: Int = Field(1, gt=0)
    """nodes of a multi-node run (inside a SLURM allocation): one torchrun agent per node, `devices` each"""
    steps: Int | None = Field(None, gt=0)
    """optimizer steps; null: tokens / (batch_size · context_length), rounded up"""
    tokens: Int | None = Field(40_960_000, gt=0)
    """the token budget, used when steps is null"""
    eval_interval: Int = Field(200, gt=0)
    """steps between validation passes (and one at the last step)"""
    eval_batches: Int = Field(20, gt=0)
    """fixed validation batches (the same for every run of a corpus)"""
    log_interval: Int = Field(10, gt=0)
    """steps between metrics.jsonl lines"""
    checkpoint_interval: Int = Field(500, gt=0)
    """steps between checkpoints"""
    keep_last: Int = Field(3, gt=0)
    """checkpoints kept in the run's checkpoints/"""
    device: Device = "auto"
    """auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps"""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """auto: bf16 autocast on CUDA, fp32 elsewhere"""
    compile: Literal["auto"] | bool = "auto"
    """torch.compile the model; auto: on CUDA (eager if compilation fails)"""
    seed: Int = 0
    """seed of the initialisation and of the batch sampler"""
    divergence: DivergenceSettings = DivergenceSettings()
    """when to stop a run that diverges"""
    wandb: WandbSettings = WandbSettings()
    """Weights & Biases logging"""
    init_from: str | None = None
    """a run folder (e.g. made by `scratchlm import-hf`) whose final weights start the run"""
    hf_export: bool = False
    """the pipeline also writes results/runs/RUN/hf/, a transformers Llama folder"""

    def to_dict(self) -> dict:
        """The plain mapping (config.json, checkpoints, W&B)."""
        return self.model_dump()


class RunSettings(TrainingSettings):
    """One run's settings, resolved (``scratchlm.settings.resolve_run``) and checked as a whole."""

    @model_validator(mode="after")
    def _consistent(self) -> RunSettings:
        if not self.corpus:
            raise ValueError("the run names no corpus (add `corpus: NAME` to its entry under `runs:`)")
        shards = self.world_size * self.grad_accum_steps
        if self.batch_size % shards:
            raise ValueError(f"batch_size {self.batch_size} is not divisible by nodes × devices × grad_accum_steps "
                             f"= {shards} (each process runs batch_size / (nodes × devices) sequences, in "
                             f"grad_accum_steps parts)")
        if self.steps is None and self.tokens is None:
            raise ValueError("set either `steps` or `tokens` (the token budget) for the run")
        return self

    @classmethod
    def from_dict(cls, values: dict) -> RunSettings:
        """Settings from a complete mapping (``to_dict``'s, e.g. a job file or checkpoint)."""
        return cls.model_validate(values)

    def differing_from(self, saved: dict, saved_steps: int | None) -> list[str]:
        """The settings (of RESUME_KEYS, plus the step count) in which a checkpoint's differ from these;
        a setting added since the checkpoint was written counts as its default there."""
        ours, defaults = self.to_dict(), TrainingSettings().to_dict()
        saved = {key: {**defaults[key], **saved[key]} if isinstance(saved.get(key), dict) and
                 isinstance(defaults.get(key), dict) else saved.get(key) for key in RESUME_KEYS}
        differing = [key for key in RESUME_KEYS if saved.get(key) != ours[key]]
        return differing + (["steps/tokens"] if saved_steps != self.total_steps else [])

    @property
    def world_size(self) -> int:
        """Training processes over all nodes."""
        return self.nodes * self.devices

    @property
    def tokens_per_step(self) -> int:
        """Tokens of one optimizer step over all devices."""
        return self.batch_size * self.model.context_length

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the run: ``steps``, or the token budget over tokens per step (rounded up).

        >>> RunSettings(corpus="ts", tokens=327_680_000, batch_size=128).total_steps
        10000
        """
        return self.steps if self.steps is not None else math.ceil(self.tokens / self.tokens_per_step)
