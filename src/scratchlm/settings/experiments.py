"""Experiments: a base run varied over a grid of settings, named variants (ablations) and seeds,
expanded into ordinary runs with readable, stable names.

A run of experiment ``E`` is named ``E[/VARIANT][/KEY=VALUE ...][/seed=S]``: grid keys in sorted
order (so listing them in another order names the same runs), each by its last dotted part unless
two keys share it, values written compactly (``lr=3e-4``, ``batch_size=64``, ``norm=none``).

>>> experiment = ExperimentSettings(base="demo", grid={"optimizer.lr": [3e-4, 1e-2]}, seeds=[0, 1])
>>> [point.name("demo-lr") for point in experiment_points(experiment)][:2]
['demo-lr/lr=3e-4/seed=0', 'demo-lr/lr=3e-4/seed=1']
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import dpath
from pydantic import Field, model_validator

from scratchlm.settings.base import Int, Name, Section

SAFE_VALUE = re.compile(r"^[A-Za-z0-9._+-]+$")  # a value as it may appear in a run (folder) name


class BatchScaling(Section):
    """How settings follow batch_size where an experiment changes it (relative to the base run's batch)."""

    keep_tokens: bool = True
    """steps scale with 1 / batch_size, so every point sees the base run's tokens (a token budget does anyway)"""
    lr: Literal["constant", "linear", "sqrt"] = "constant"
    """the learning rate scales with batch_size / base batch_size: not at all, linearly, or with its square root"""


class ExperimentSettings(Section):
    """A set of runs compared in one report: ``base`` varied by ``grid``, ``variants`` and ``seeds``."""

    base: Name
    """the run (under `runs:`) that every point starts from"""
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] = {}
    """dotted setting -> values; every combination is a point (the Cartesian product)"""
    variants: dict[Name, dict[str, Any]] = {}
    """named override blocks (ablations), each combined with every grid point"""
    seeds: list[Int] = []
    """every point runs once per seed (its `seed` setting)"""
    batch_scaling: BatchScaling = BatchScaling()
    """how steps and lr follow batch_size where a point changes it"""

    def columns(self) -> list[str]:
        """What sets its runs apart, in report order: variant, grid keys, seed."""
        return [*(["variant"] if self.variants else []), *sorted(self.grid), *(["seed"] if self.seeds else [])]

    @model_validator(mode="after")
    def _varies_something(self) -> ExperimentSettings:
        if not (self.grid or self.variants or self.seeds):
            raise ValueError("an experiment needs a `grid:`, `variants:` or `seeds:` (it varies nothing)")
        if len(set(self.seeds)) < len(self.seeds):
            raise ValueError(f"seeds are listed twice: {self.seeds}")
        return self


@dataclass(frozen=True)
class Point:
    """One run of an experiment: its variant, grid values (dotted key -> value) and seed."""

    variant: str | None
    values: tuple[tuple[str, Any], ...]
    seed: int | None

    def overrides(self, experiment: ExperimentSettings) -> list[tuple[str, dict]]:
        """(where, settings) layers of this point after the base run's: variant, grid values, seed."""
        layers = [(f"variants.{self.variant}", experiment.variants[self.variant])] if self.variant is not None else []
        grid: dict = {}
        for key, value in self.values:
            dpath.new(grid, key, value, separator=".")
        layers += [("grid", grid)] if grid else []
        return layers + ([("seeds", {"seed": self.seed})] if self.seed is not None else [])

    def name(self, experiment: str, typed: dict[str, Any] | None = None) -> str:
        """The run's name; ``typed``: the grid values as the settings read them (3e-4, not "3e-4")."""
        keys = [key for key, _ in self.values]
        parts = [experiment, *([self.variant] if self.variant is not None else [])]
        for key, value in self.values:
            parts.append(f"{short_key(key, keys)}={value_text((typed or {}).get(key, value))}")
        return "/".join(parts + ([f"seed={self.seed}"] if self.seed is not None else []))

    def labels(self) -> dict[str, Any]:
        """The swept values of this point, for reports: variant, grid keys, seed."""
        return {**({"variant": self.variant} if self.variant is not None else {}), **dict(self.values),
                **({"seed": self.seed} if self.seed is not None else {})}


def experiment_points(experiment: ExperimentSettings) -> list[Point]:
    """Every point of ``experiment``: variants × grid (keys sorted) × seeds."""
    keys = sorted(experiment.grid)
    combos = list(itertools.product(*(experiment.grid[key] for key in keys)))
    variants = list(experiment.variants) or [None]
    seeds = list(experiment.seeds) or [None]
    return [Point(variant, tuple(zip(keys, combo)), seed)
            for variant in variants for combo in combos for seed in seeds]


def short_key(key: str, keys: list[str]) -> str:
    """``optimizer.lr`` -> ``lr``, unless another key ends the same way.

    >>> short_key("optimizer.lr", ["optimizer.lr", "batch_size"]), short_key("a.x", ["a.x", "b.x"])
    ('lr', 'a.x')
    """
    last = key.rsplit(".", 1)[-1]
    return last if sum(k.rsplit(".", 1)[-1] == last for k in keys) == 1 else key


def value_text(value: Any) -> str:
    """A setting's value as it appears in a run name.

    >>> [value_text(v) for v in (3e-4, 0.003, 0.05, 0.1, 1.0, 64, 327680000.0, True, None, "none")]
    ['3e-4', '3e-3', '5e-2', '0.1', '1', '64', '3.2768e8', 'true', 'null', 'none']
    """
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, (int, float)):
        return _number_text(value)
    text = str(value)
    if not SAFE_VALUE.match(text):
        raise ValueError(f"value {text!r} cannot be part of a run name (letters, digits, . _ + - only)")
    return text


def _number_text(value: float) -> str:
    if value == 0 or not math.isfinite(value):
        return str(value)
    exponent = math.floor(math.log10(abs(value)))
    if -1 <= exponent < 5:
        return f"{value:.6g}"
    mantissa = f"{value / 10**exponent:.6f}".rstrip("0").rstrip(".")
    return f"{mantissa}e{exponent}"
