"""Run configuration: defaults, named runs (override sets) and command-line overrides, deep-merged.

A run's settings are resolved in layers, each deep-merged onto the previous one::

    DEFAULTS <- config.yaml `training:` <- config.yaml `runs: {name}` <- --config FILE ... <- --set key=value ...

``DEFAULTS`` is :class:`RunSettings`' defaults as a mapping. Every key of an override must already
exist in it (so a typo such as ``optimizer.lr_max`` fails with the list of valid keys instead of
being silently ignored); ``corpus`` is the one key a run must add. The result is a typed
:class:`RunSettings`. The schema in workflow/schemas/config.schema.yaml repeats the defaults for
Snakemake's validation, and a test keeps the two in sync.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from types import UnionType
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from scratchlm.fileio import require_file

# The model of a run that names no size; the other options' defaults are ModelConfig's own.
MODEL_SIZE = {"context_length": 256, "d_model": 512, "num_layers": 4, "num_heads": 16}
# Devices a run may name (whether one is present is checked when training starts).
DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"
POSITIVE_INTS = ("batch_size", "grad_accum_steps", "devices", "eval_interval", "eval_batches", "log_interval",
                 "checkpoint_interval", "keep_last")
# Settings a resumed run must share with its checkpoint; the rest (device, devices, accumulation,
# intervals, ...) may change: the batches do not depend on how a step is split.
RESUME_KEYS = ("corpus", "model", "optimizer", "schedule", "batch_size", "seed")
# Settings checked by hand rather than by their type.
CHOICES = {"compile": ("auto", True, False), "precision": ("auto", "fp32", "bf16")}


def model_defaults() -> dict:
    """A run's model options (all of ModelConfig's but vocab_size, which comes from the corpus)."""
    from scratchlm.nn.model import ModelConfig

    optional = {f.name: f.default for f in fields(ModelConfig) if f.default is not MISSING}
    return {**MODEL_SIZE, **optional}


@dataclass(frozen=True)
class OptimizerSettings:
    """AdamW and gradient clipping."""

    lr: float = 1.0e-3  # the peak of the schedule
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1.0e-8
    weight_decay: float = 0.1  # matrices only; gains and biases are not decayed
    grad_clip: float | None = 1.0  # None: no clipping (the norm is still logged)


@dataclass(frozen=True)
class ScheduleSettings:
    """Linear warm-up, then cosine decay to ``min_lr_ratio · lr`` at the last step."""

    warmup_fraction: float = 0.05
    min_lr_ratio: float = 0.1


@dataclass(frozen=True)
class WandbSettings:
    """Weights & Biases logging (besides metrics.jsonl)."""

    enabled: bool = False
    project: str = "scratchlm"


@dataclass(frozen=True)
class RunSettings:
    """Every setting of one training run: the one source of their names, types and defaults
    (config.yaml's ``training:`` and the schema repeat them; a test keeps them equal)."""

    corpus: str | None = None
    model: dict = field(default_factory=model_defaults)  # ModelConfig options; d_ff None: its default
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    batch_size: int = 32  # sequences per optimizer step, over all devices and accumulation steps
    grad_accum_steps: int = 1  # micro-batches per step on each device (same global batch, less memory)
    devices: int = 1  # data-parallel processes (GPUs of one node), launched with torchrun
    steps: int | None = None  # number of optimizer steps; None: derived from `tokens`
    tokens: int | None = 40_960_000  # token budget when steps is None: steps = tokens / (batch_size · context)
    eval_interval: int = 200
    eval_batches: int = 20
    log_interval: int = 10
    checkpoint_interval: int = 500
    keep_last: int = 3
    device: str = "auto"  # auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 elsewhere; or fp32, bf16
    compile: str | bool = "auto"  # auto: torch.compile on CUDA (eager if compilation fails); true; false
    seed: int = 0
    wandb: WandbSettings = field(default_factory=WandbSettings)
    init_from: str | None = None  # a run folder (e.g. from `scratchlm import-hf`) whose final weights start this run
    hf_export: bool = False  # the pipeline also writes results/runs/{run}/hf/ (a transformers Llama folder)

    @classmethod
    def from_dict(cls, values: dict) -> RunSettings:
        """Settings from a complete, merged mapping (``resolve_run``'s layers), type-checked by name."""
        return _build(cls, values, "")

    def to_dict(self) -> dict:
        """The plain mapping (config.json, checkpoints, the pipeline's params)."""
        return asdict(self)

    def differing_from(self, saved: dict, saved_steps: int | None) -> list[str]:
        """The settings (of RESUME_KEYS, plus the step count) in which a checkpoint's differ from these."""
        ours = self.to_dict()
        differing = [key for key in RESUME_KEYS if saved.get(key) != ours[key]]
        return differing + (["steps/tokens"] if saved_steps != self.total_steps else [])

    @property
    def tokens_per_step(self) -> int:
        """Tokens of one optimizer step over all devices."""
        return self.batch_size * self.model["context_length"]

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the run: ``steps``, or the token budget over tokens per step (rounded up).

        >>> RunSettings(tokens=327_680_000, batch_size=128).total_steps
        10000
        """
        return self.steps if self.steps is not None else math.ceil(self.tokens / self.tokens_per_step)


DEFAULTS: dict[str, Any] = RunSettings().to_dict()


def deep_merge(base: dict, override: dict, *, where: str = "") -> dict:
    """A copy of ``base`` with ``override`` merged in; unknown keys raise ValueError listing the valid ones.

    >>> deep_merge({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": 5}})
    {'a': 1, 'b': {'c': 5, 'd': 3}}
    """
    merged = copy.deepcopy(base)
    for key, value in override.items():
        path = f"{where}{key}"
        if key not in base:
            valid = ", ".join(f"{where}{k}" for k in base)
            raise ValueError(f"unknown training setting {path!r}; valid settings here: {valid}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ValueError(f"training setting {path!r} must be a mapping, got {value!r}")
            merged[key] = deep_merge(base[key], value, where=f"{path}.")
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_assignment(text: str) -> dict:
    """``"optimizer.lr=3e-4"`` -> ``{"optimizer": {"lr": 0.0003}}`` (the value is parsed as YAML).

    >>> parse_assignment("model.d_model=256"), parse_assignment("device=cpu")
    ({'model': {'d_model': 256}}, {'device': 'cpu'})
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set expects KEY=VALUE (e.g. optimizer.lr=3e-4), got {text!r}")
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        value = _number_or_text(value)  # YAML 1.1 reads "3e-4" as a string
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


def _number_or_text(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def load_yaml(path: str | Path) -> dict:
    """A YAML mapping from ``path``, with the file name in any error."""
    path = Path(path)
    require_file(path, "config file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def resolve_run(project: dict, run: str, overrides: list[dict] = ()) -> RunSettings:
    """The full settings of ``run``: DEFAULTS <- project["training"] <- project["runs"][run] <- overrides."""
    runs = project.get("runs") or {}
    if run not in runs:
        known = ", ".join(sorted(runs)) or "none"
        raise ValueError(f"unknown run {run!r}; runs configured under `runs:` in config.yaml: {known}")
    try:
        settings = deep_merge(DEFAULTS, project.get("training") or {})
        for layer in (runs[run] or {}, *overrides):
            settings = deep_merge(settings, layer)
        settings = RunSettings.from_dict(settings)
        check_settings(settings)
    except ValueError as error:
        raise ValueError(f"run {run!r}: {error}") from None
    corpora = project.get("corpora")
    if corpora is not None and settings.corpus not in corpora:
        raise ValueError(f"run {run!r}: corpus {settings.corpus!r} is not configured under `corpora:` "
                         f"(configured: {', '.join(sorted(corpora)) or 'none'})")
    return settings


def check_settings(settings: RunSettings) -> None:
    """Raise ValueError for a setting out of range (types are checked by ``RunSettings.from_dict``;
    model options by ModelConfig)."""
    if not settings.corpus:
        raise ValueError("the run sets no corpus (add `corpus: NAME` to its entry under `runs:`)")
    for key in POSITIVE_INTS:
        if getattr(settings, key) <= 0:
            raise ValueError(f"training setting {key!r} must be a positive integer, got {getattr(settings, key)!r}")
    for key, choices in CHOICES.items():
        value = getattr(settings, key)
        if value not in choices or not isinstance(value, (str, bool)):
            raise ValueError(f"training setting {key!r} must be one of {', '.join(map(str, choices))}, got {value!r}")
    shards = settings.devices * settings.grad_accum_steps
    if settings.batch_size % shards:
        raise ValueError(f"batch_size {settings.batch_size} is not divisible by devices × grad_accum_steps "
                         f"= {shards} (each device runs batch_size / devices sequences, in grad_accum_steps parts)")
    if settings.steps is None and settings.tokens is None:
        raise ValueError("set either `steps` or `tokens` (the token budget) for the run")
    for key in ("steps", "tokens"):
        if getattr(settings, key) is not None and getattr(settings, key) <= 0:
            raise ValueError(f"training setting {key!r} must be positive, got {getattr(settings, key)!r}")
    if not 0 <= settings.schedule.warmup_fraction < 1:
        raise ValueError("schedule.warmup_fraction must be in [0, 1)")
    if not 0 <= settings.schedule.min_lr_ratio <= 1:
        raise ValueError("schedule.min_lr_ratio must be in [0, 1]")
    if not re.fullmatch(DEVICE_PATTERN, settings.device):
        raise ValueError(f"training setting 'device' must be auto, cpu, cuda, cuda:N or mps, got {settings.device!r}")
    _check_optimizer(settings.optimizer)
    from scratchlm.nn import ModelConfig  # the model's own checks (heads divide d_model, ...); imports torch

    ModelConfig.from_dict({**settings.model, "vocab_size": 256})  # the corpus's vocab size is checked later


def _check_optimizer(opt: OptimizerSettings) -> None:
    for key, positive in (("lr", True), ("eps", True), ("weight_decay", False)):
        value = getattr(opt, key)
        if not (value > 0 if positive else value >= 0):
            raise ValueError(f"training setting 'optimizer.{key}' must be {'>' if positive else '>='} 0, "
                             f"got {value!r}")
    betas = opt.betas
    if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
        raise ValueError(f"training setting 'optimizer.betas' must be two numbers in [0, 1), got {betas!r}")
    if opt.grad_clip is not None and not opt.grad_clip > 0:
        raise ValueError(f"training setting 'optimizer.grad_clip' must be > 0, or null to disable clipping; "
                         f"got {opt.grad_clip!r}")


def _build(cls: type, values: dict, where: str) -> Any:
    """An instance of the settings dataclass ``cls`` from ``values``, each checked against its field's type."""
    hints = get_type_hints(cls)
    unknown = set(values) - set(hints)
    if unknown:
        raise ValueError(f"unknown training setting(s) {', '.join(f'{where}{key}' for key in sorted(unknown))}")
    built = {}
    for key, value in values.items():
        path, hint = f"{where}{key}", hints[key]
        if path == "model":
            built[key] = _checked_model(value)
        elif is_dataclass(hint):
            built[key] = _build(hint, _mapping(path, value), f"{path}.")
        else:
            built[key] = _checked(path, value, hint)
    return cls(**built)


def _mapping(path: str, value: Any) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"training setting {path!r} must be a mapping, got {value!r}")
    return value


def _checked_model(values: Any) -> dict:
    """Model options typed like their defaults (d_ff: an integer or null); ModelConfig checks the rest."""
    model = dict(_mapping("model", values))
    for key, default in model_defaults().items():
        if key in model:
            model[key] = _checked(f"model.{key}", model[key], int | None if default is None else type(default))
    return model


def _checked(path: str, value: Any, hint: Any) -> Any:
    """``value`` if it has type ``hint`` (an integral float becomes an int: YAML reads 3.2768e8 as float)."""
    options = get_args(hint) if isinstance(hint, UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    if path in CHOICES:
        return value
    for expected in (option for option in options if option is not type(None)):
        expected = get_origin(expected) or expected
        if expected is float and isinstance(value, (int, float)) and not isinstance(value, bool) \
                and math.isfinite(value):
            return value
        if expected is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, expected) and not (isinstance(value, bool) and expected is not bool):
            return value
    name = " or ".join(getattr(option, "__name__", str(option)) for option in options if option is not type(None))
    raise ValueError(f"training setting {path!r} must be {name}, got {value!r}")
