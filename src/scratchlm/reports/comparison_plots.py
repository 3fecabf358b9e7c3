"""The plots of a comparison report (``scratchlm.reports.comparison``): validation curves of every
run, and the final validation loss against each swept value."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from scratchlm.figures import pyplot, save_figure

CURVE_AXES = (("step", "step", 1.0), ("tokens", "tokens seen", 1.0), ("elapsed_s", "wall-clock (minutes)", 1 / 60))
LOSS_LABEL = "validation loss (nats/token)"
ENDED_BADLY = ("diverged", "failed")


def finite(value: Any) -> bool:
    """A number that can be plotted."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _point(entry: Any) -> str:
    """An entry's values but the seed: runs of one point share a colour."""
    return ", ".join(f"{key}={value}" for key, value in entry.values.items() if key != "seed") or entry.name


def _colours(entries: Sequence[Any]) -> dict[str, Any]:
    cycle = pyplot().get_cmap("tab10" if len({_point(e) for e in entries}) <= 10 else "tab20")
    return {point: cycle(i % cycle.N) for i, point in enumerate(dict.fromkeys(_point(e) for e in entries))}


def _log_if_wide(ax: Any, values: list[float], axis: str = "y") -> None:
    """Log scale where the values span more than a factor of 10 (and are positive)."""
    values = [v for v in values if finite(v)]
    if values and min(values) > 0 and max(values) / min(values) > 10:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


def plot_curves(entries: Sequence[Any], out: str | Path, *, title: str) -> None:
    """Validation loss of every run against steps, tokens and wall-clock time; one colour per point
    (seeds share it, in other line styles). The y range is the completed runs' (log-scaled if wide):
    a diverged run leaves it at the top and ends in a red cross there."""
    fig, axes = pyplot().subplots(1, 3, figsize=(15, 4.8), sharey=True)
    kept = [line["val_loss"] for e in entries if e.status not in ENDED_BADLY for line in e.metrics
            if finite(line.get("val_loss"))]
    top = max(kept) * 1.1 if kept else None
    colours, labelled = _colours(entries), set()
    for entry in entries:
        point = _point(entry)
        _plot_run_curves(axes, entry, colours[point], label=point if point not in labelled else None, top=top)
        labelled.add(point)
    for ax, (_, label, _) in zip(axes, CURVE_AXES):
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(LOSS_LABEL)
    if kept:
        axes[0].set_ylim(min(kept) * 0.95, top)
        _log_if_wide(axes[0], kept)
    if labelled:
        axes[0].legend(fontsize="small", title="red ×: diverged (off the top)", title_fontsize="small")
    fig.suptitle(title)
    save_figure(fig, out)


def _plot_run_curves(axes: Any, entry: Any, colour: Any, *, label: str | None, top: float | None) -> None:
    """One run's validation curve on each of the three axes (its seed picks the line style)."""
    lines = [line for line in entry.metrics if finite(line.get("val_loss"))]
    seed = entry.values.get("seed")
    style = ("-", "--", ":", "-.")[seed % 4 if isinstance(seed, int) else 0]
    for ax, (key, _, scale) in zip(axes, CURVE_AXES):
        xs, ys = [line[key] * scale for line in lines], [line["val_loss"] for line in lines]
        ax.plot(xs, ys, style, marker="o", markersize=2.5, color=colour, label=label if ax is axes[0] else None)
        if entry.status == "diverged" and xs:
            ax.plot(xs[-1], min(ys[-1], top or ys[-1]), "x", color="red", markersize=9, mew=2)


def plot_sweep(entries: Sequence[Any], columns: list[str], out: str | Path, *, title: str) -> None:
    """Final validation loss against each numeric swept value (log x for learning rates and wide
    ranges), or per run when no value is numeric; diverged and failed runs as red crosses at the top."""
    numeric = [c for c in columns if c != "seed" and all(finite(e.values.get(c)) for e in entries)]
    if not numeric:
        _plot_per_run(entries, out, title=title)
        return
    fig, axes = pyplot().subplots(1, len(numeric), figsize=(5.5 * len(numeric), 4.5), squeeze=False)
    finals = [e.final for e in entries if e.status not in ENDED_BADLY and finite(e.final)]
    top = max(finals) * 1.05 if finals else 1.0
    for ax, column in zip(axes[0], numeric):
        _plot_sweep_axis(ax, entries, column, top)
    fig.suptitle(title)
    save_figure(fig, out)


def _plot_sweep_axis(ax: Any, entries: Sequence[Any], column: str, top: float) -> None:
    """The final loss against ``column``: one series (points and the line of their seed means) per
    combination of the other values; runs that ended badly as red crosses at ``top``."""
    cycle = pyplot().get_cmap("tab10")
    for index, (point, group) in enumerate(_by_other_values(entries, column).items()):
        fine = [e for e in group if e.status not in ENDED_BADLY and finite(e.final)]
        ax.plot([e.values[column] for e in fine], [e.final for e in fine], "o", color=cycle(index % 10), label=point)
        ax.plot(*_means(fine, column), "-", color=cycle(index % 10), alpha=0.6)
    bad = [e for e in entries if e.status in ENDED_BADLY or not finite(e.final)]
    ax.plot([e.values[column] for e in bad], [top] * len(bad), "x", color="red", markersize=9, mew=2,
            label="diverged / failed" if bad else None)
    if column.endswith("lr"):
        ax.set_xscale("log")
    else:
        _log_if_wide(ax, [e.values[column] for e in entries], axis="x")
    ax.set_xlabel(column)
    ax.set_ylabel("final " + LOSS_LABEL)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")


def _means(entries: Sequence[Any], column: str) -> tuple[list[float], list[float]]:
    """The mean final loss at each value of ``column`` (over seeds), in order of the value."""
    by_value: dict[float, list[float]] = {}
    for entry in entries:
        by_value.setdefault(entry.values[column], []).append(entry.final)
    xs = sorted(by_value)
    return xs, [sum(by_value[x]) / len(by_value[x]) for x in xs]


def _by_other_values(entries: Sequence[Any], column: str) -> dict[str, list[Any]]:
    """Entries grouped by their values other than ``column`` and the seed (one series each)."""
    groups: dict[str, list[Any]] = {}
    for entry in entries:
        key = ", ".join(f"{k}={v}" for k, v in entry.values.items() if k not in (column, "seed")) or "runs"
        groups.setdefault(key, []).append(entry)
    return groups


def _plot_per_run(entries: Sequence[Any], out: str | Path, *, title: str) -> None:
    """Final validation loss of each run as a bar (red: diverged or failed, at the top)."""
    ordered = sorted(entries, key=lambda e: (not finite(e.final), e.final if finite(e.final) else 0.0))
    finals = [e.final for e in ordered if finite(e.final)]
    top = max(finals) * 1.05 if finals else 1.0
    fig, ax = pyplot().subplots(figsize=(8, 0.4 * len(ordered) + 1.5))
    heights = [e.final if finite(e.final) and e.status not in ENDED_BADLY else top for e in ordered]
    colours = ["tab:red" if e.status in ENDED_BADLY else "tab:blue" for e in ordered]
    ax.barh([e.name for e in ordered], heights, color=colours)
    ax.invert_yaxis()
    ax.set_xlabel("final " + LOSS_LABEL + " (red: diverged or failed)")
    ax.grid(alpha=0.3, axis="x")
    fig.suptitle(title)
    save_figure(fig, out)
