"""Learning curves of a run (curves.png) and a comparison across runs (e.g. a learning-rate sweep)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from scratchlm.figures import log_scale_if_wide, pyplot, save_figure
from scratchlm.layout import RunFiles, read_summary


def read_metrics(path: str | Path) -> list[dict]:
    """The lines of a metrics.jsonl file; ValueError naming the file and line if one is not a JSON object."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a UTF-8 text file, so not a metrics.jsonl") from None
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not a JSON line ({error})") from None
            if not isinstance(lines[-1], dict):
                raise ValueError(f"{path}:{number}: not a JSON object (not a metrics.jsonl line)")
    return lines


def _series(lines: list[dict], x: str, y: str) -> tuple[list[float], list[float]]:
    points = [(line[x], line[y]) for line in lines if line.get(y) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot_curves(metrics_path: str | Path, out: str | Path, *, title: str = "") -> None:
    """Train and validation loss against step (left) and wall-clock minutes (right); the loss axis is
    logarithmic where the loss falls by more than a factor of 3 (from ln(vocab) at the start)."""
    lines = read_metrics(metrics_path)
    for line in lines:
        line["elapsed_min"] = line["elapsed_s"] / 60
    fig, axes = pyplot().subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, x, label in ((axes[0], "step", "step"), (axes[1], "elapsed_min", "wall-clock (minutes)")):
        ax.plot(*_series(lines, x, "train_loss"), label="train", linewidth=1)
        ax.plot(*_series(lines, x, "val_loss"), "o-", label="validation", markersize=3)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("loss (nats/token)")
    log_scale_if_wide(axes[0], [line.get(key) for line in lines for key in ("train_loss", "val_loss")])
    axes[0].legend()
    fig.suptitle(title)
    save_figure(fig, out)


def run_labels(run_dirs: Sequence[str | Path]) -> list[str]:
    """Each run's own name (summary.json's ``run``; the folder's name before it finished), or, where
    several folders hold runs of one name (``scratchlm train demo --run-dir ...``), their paths."""
    names = []
    for run_dir in map(Path, run_dirs):
        names.append((read_summary(run_dir) or {}).get("run", run_dir.name))
    return names if len(set(names)) == len(names) else [str(run_dir) for run_dir in run_dirs]


def plot_comparison(run_dirs: list[str | Path], out: str | Path, *, x: str = "step") -> None:
    """Validation loss of several runs (each folder's metrics.jsonl) on one plot, each labelled by its name."""
    fig, ax = pyplot().subplots(figsize=(7, 4.5))
    losses = []
    for run_dir, label in zip(map(Path, run_dirs), run_labels(run_dirs)):
        lines = read_metrics(RunFiles(run_dir).metrics)
        xs, ys = _series(lines, x, "val_loss")
        ax.plot(xs, ys, "o-", markersize=3, label=label)
        losses += ys
    log_scale_if_wide(ax, losses)
    ax.set_xlabel(x)
    ax.set_ylabel("validation loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, out)
