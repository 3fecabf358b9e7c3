"""Run configuration: defaults, named runs (override sets) and command-line overrides, deep-merged.

A run's settings are resolved in layers, each deep-merged onto the previous one::

    DEFAULTS <- config.yaml `training:` <- config.yaml `runs: {name}` <- --config FILE ... <- --set key=value ...

Every key of an override must already exist in DEFAULTS (so a typo such as ``optimizer.lr_max``
fails with the list of valid keys instead of being silently ignored); ``corpus`` is the one key a
run must add. The schema in workflow/schemas/config.schema.yaml repeats these defaults for
Snakemake's validation, and a test keeps the two in sync.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import yaml

from scratchlm.fileio import require_file

# Defaults of every run setting. The model's vocab_size comes from the run's corpus.
DEFAULTS: dict[str, Any] = {
    "corpus": None,
    "model": {
        "context_length": 256,
        "d_model": 512,
        "num_layers": 4,
        "num_heads": 16,
        "d_ff": None,  # None: 8/3·d_model rounded to 64 (SwiGLU) or 4·d_model (SiLU)
        "rope_theta": 10000.0,
        "norm": "pre",
        "position": "rope",
        "ffn": "swiglu",
        "tie_embeddings": False,
        "attention_backend": "scratch",
    },
    "optimizer": {"lr": 1.0e-3, "betas": [0.9, 0.95], "eps": 1.0e-8, "weight_decay": 0.1, "grad_clip": 1.0},
    "schedule": {"warmup_fraction": 0.05, "min_lr_ratio": 0.1},
    "batch_size": 32,  # sequences per optimizer step, over all devices and accumulation steps
    "grad_accum_steps": 1,  # micro-batches per step on each device (same global batch, less memory)
    "devices": 1,  # data-parallel processes (GPUs of one node), launched with torchrun
    "steps": None,  # number of optimizer steps; None: derived from `tokens`
    "tokens": 40_960_000,  # token budget, used when steps is None: steps = tokens / (batch_size · context_length)
    "eval_interval": 200,
    "eval_batches": 20,
    "log_interval": 10,
    "checkpoint_interval": 500,
    "keep_last": 3,
    "device": "auto",  # auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps
    "precision": "auto",  # auto: bf16 autocast on CUDA, fp32 elsewhere; or fp32, bf16
    "compile": "auto",  # auto: torch.compile on CUDA (eager if compilation fails); true; false
    "seed": 0,
    "wandb": {"enabled": False, "project": "scratchlm"},
    "init_from": None,  # a run folder (e.g. from `scratchlm import-hf`) whose final weights start this run
    "hf_export": False,  # the pipeline also writes results/runs/{run}/hf/ (a transformers Llama folder)
}

# Settings that may be null besides their default, and the type they have otherwise.
NULLABLE = {"corpus": str, "model.d_ff": int, "steps": int, "tokens": int, "optimizer.grad_clip": float,
            "init_from": str}
# Devices a run may name (whether one is present is checked when training starts).
DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"
POSITIVE_INTS = ("batch_size", "grad_accum_steps", "devices", "eval_interval", "eval_batches", "log_interval",
                 "checkpoint_interval", "keep_last")
# Settings checked by hand rather than by the type of their default.
CHOICES = {"compile": ("auto", True, False)}


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


def resolve_run(project: dict, run: str, overrides: list[dict] = ()) -> dict:
    """The full settings of ``run``: DEFAULTS <- project["training"] <- project["runs"][run] <- overrides."""
    runs = project.get("runs") or {}
    if run not in runs:
        known = ", ".join(sorted(runs)) or "none"
        raise ValueError(f"unknown run {run!r}; runs configured under `runs:` in config.yaml: {known}")
    try:
        settings = deep_merge(DEFAULTS, project.get("training") or {})
        for layer in (runs[run] or {}, *overrides):
            settings = deep_merge(settings, layer)
        check_settings(settings)
    except ValueError as error:
        raise ValueError(f"run {run!r}: {error}") from None
    corpora = project.get("corpora")
    if corpora is not None and settings["corpus"] not in corpora:
        raise ValueError(f"run {run!r}: corpus {settings['corpus']!r} is not configured under `corpora:` "
                         f"(configured: {', '.join(sorted(corpora)) or 'none'})")
    return settings


def check_settings(settings: dict) -> None:
    """Raise ValueError for a setting of the wrong type or range (model options are checked by ModelConfig)."""
    _check_types(DEFAULTS, settings, "")
    if not settings["corpus"]:
        raise ValueError("the run sets no corpus (add `corpus: NAME` to its entry under `runs:`)")
    for key in POSITIVE_INTS:
        if settings[key] <= 0:
            raise ValueError(f"training setting {key!r} must be a positive integer, got {settings[key]!r}")
    for key, choices in CHOICES.items():
        if settings[key] not in choices or not isinstance(settings[key], (str, bool)):
            raise ValueError(f"training setting {key!r} must be one of {', '.join(map(str, choices))}, "
                             f"got {settings[key]!r}")
    shards = settings["devices"] * settings["grad_accum_steps"]
    if settings["batch_size"] % shards:
        raise ValueError(f"batch_size {settings['batch_size']} is not divisible by devices × grad_accum_steps "
                         f"= {shards} (each device runs batch_size / devices sequences, in grad_accum_steps parts)")
    if settings["steps"] is None and settings["tokens"] is None:
        raise ValueError("set either `steps` or `tokens` (the token budget) for the run")
    for key in ("steps", "tokens"):
        if settings[key] is not None and settings[key] <= 0:
            raise ValueError(f"training setting {key!r} must be positive, got {settings[key]!r}")
    if not 0 <= settings["schedule"]["warmup_fraction"] < 1:
        raise ValueError("schedule.warmup_fraction must be in [0, 1)")
    if not 0 <= settings["schedule"]["min_lr_ratio"] <= 1:
        raise ValueError("schedule.min_lr_ratio must be in [0, 1]")
    if settings["precision"] not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {settings['precision']!r}")
    if not re.fullmatch(DEVICE_PATTERN, settings["device"]):
        raise ValueError(f"training setting 'device' must be auto, cpu, cuda, cuda:N or mps, "
                         f"got {settings['device']!r}")
    _check_optimizer(settings["optimizer"])
    from scratchlm.nn import ModelConfig  # the model's own checks (heads divide d_model, ...); imports torch

    ModelConfig.from_dict({**settings["model"], "vocab_size": 256})  # the corpus's vocab size is checked later


def _check_optimizer(opt: dict) -> None:
    for key, positive in (("lr", True), ("eps", True), ("weight_decay", False)):
        if not (opt[key] > 0 if positive else opt[key] >= 0):
            raise ValueError(f"training setting 'optimizer.{key}' must be {'>' if positive else '>='} 0, "
                             f"got {opt[key]!r}")
    betas = opt["betas"]
    if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
        raise ValueError(f"training setting 'optimizer.betas' must be two numbers in [0, 1), got {betas!r}")
    if opt["grad_clip"] is not None and not opt["grad_clip"] > 0:
        raise ValueError(f"training setting 'optimizer.grad_clip' must be > 0, or null to disable clipping; "
                         f"got {opt['grad_clip']!r}")


def _check_types(defaults: dict, settings: dict, where: str) -> None:
    for key, default in defaults.items():
        path, value = f"{where}{key}", settings[key]
        if path in CHOICES:
            continue
        if isinstance(default, dict):
            _check_types(default, value, f"{path}.")
            continue
        expected = NULLABLE.get(path, type(default))
        if value is None and path in NULLABLE:
            continue
        ok = isinstance(value, expected) and not (isinstance(value, bool) and expected is not bool)
        if expected is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        elif expected is int and isinstance(value, float) and value.is_integer():
            settings[key] = int(value)  # 3.2768e8 written in YAML or on the command line
            ok = True
        if not ok:
            raise ValueError(f"training setting {path!r} must be {expected.__name__}, got {value!r}")


def total_steps(settings: dict) -> int:
    """Optimizer steps of a run: ``steps``, or the token budget over tokens per step (rounded up).

    >>> total_steps({"steps": None, "tokens": 327_680_000, "batch_size": 128, "model": {"context_length": 256}})
    10000
    """
    if settings["steps"] is not None:
        return settings["steps"]
    per_step = settings["batch_size"] * settings["model"]["context_length"]
    return math.ceil(settings["tokens"] / per_step)
