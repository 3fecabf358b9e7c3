"""The plots of a comparison report (``scratchlm.reports.comparison``): validation curves of every
run, and the final validation loss against each swept value."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

from scratchlm.figures import finite, log_scale_if_wide, pyplot, save_figure

CURVE_AXES = (("step", "step", 1.0), ("tokens", "tokens seen", 1.0), ("elapsed_s", "wall-clock (minutes)", 1 / 60))
LOSS_LABEL = "validation loss (nats/token)"
ENDED_BADLY = ("diverged", "failed")


SEED_STYLES = (("-", "solid"), ("--", "dashed"), (":", "dotted"), ("-.", "dash-dot"))
MAX_SWEEP_PANELS = 6  # at most 2 rows of 3: more swept settings are in the report's table only


def _point(entry: Any) -> str:
    """An entry's values but the seed: runs of one point share a colour."""
    return ", ".join(f"{key}={value}" for key, value in entry.values.items() if key != "seed") or entry.name


def _colours(entries: Sequence[Any]) -> dict[str, Any]:
    cycle = pyplot().get_cmap("tab10" if len({_point(e) for e in entries}) <= 10 else "tab20")
    return {point: cycle(i % cycle.N) for i, point in enumerate(dict.fromkeys(_point(e) for e in entries))}


def _seed_style(seed: Any) -> tuple[str, str]:
    """(matplotlib line style, its name) of a run's seed (the first style where it has none)."""
    return SEED_STYLES[seed % len(SEED_STYLES) if isinstance(seed, int) else 0]


def display_names(entries: Sequence[Any]) -> list[str]:
    """The runs' names without the folder they all share (an experiment's ``NAME/``, in the title).

    >>> from types import SimpleNamespace as E
    >>> display_names([E(name="demo-lr/lr=3e-4/seed=0"), E(name="demo-lr/lr=1e-2/seed=0")])
    ['lr=3e-4/seed=0', 'lr=1e-2/seed=0']
    """
    names = [entry.name for entry in entries]
    shared = os.path.commonprefix(names).rpartition("/")[0]
    return [name[len(shared) + 1:] for name in names] if shared and len(names) > 1 else names


def _legend_title(entries: Sequence[Any]) -> str:
    """What the line styles and marks mean: the seeds, and the red cross of a diverged run."""
    seeds = sorted({e.values["seed"] for e in entries if isinstance(e.values.get("seed"), int)})
    parts = []
    if len(seeds) > 1:
        styles = dict.fromkeys(f"{_seed_style(seed)[1]} = seed {seed}" for seed in seeds)
        parts.append("colour: the settings; line: " + ", ".join(styles))
    if any(e.status == "diverged" for e in entries):
        parts.append("red ×: diverged (off the top)")
    return "\n".join(parts)


def plot_curves(entries: Sequence[Any], out: str | Path, *, title: str) -> None:
    """Validation loss of every run against steps, tokens and wall-clock time, each run labelled by
    its name below the plots; one colour per point (its seeds share it, in the line styles the
    legend names). The y range is the completed runs' (log-scaled if wide): a diverged run leaves
    it at the top and ends in a red cross there."""
    fig, axes = pyplot().subplots(1, 3, figsize=(13, 4.2), sharey=True)
    kept = [line["val_loss"] for e in entries if e.status not in ENDED_BADLY for line in e.metrics
            if finite(line.get("val_loss"))]
    top = max(kept) * 1.1 if kept else None
    colours = _colours(entries)
    for entry, name in zip(entries, display_names(entries)):
        _plot_run_curves(axes, entry, colours[_point(entry)], label=name, top=top)
    for ax, (_, label, _) in zip(axes, CURVE_AXES):
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    from matplotlib.ticker import EngFormatter

    axes[1].xaxis.set_major_formatter(EngFormatter(sep=""))  # 200k tokens, not 200000 running into 175000
    axes[0].set_ylabel(LOSS_LABEL)
    if kept:
        axes[0].set_ylim(min(kept) * 0.95, top)
        log_scale_if_wide(axes[0], kept)
    if entries:
        fig.legend(loc="outside lower center", ncols=min(4, len(entries)), fontsize="small",
                   title=_legend_title(entries) or None, title_fontsize="small")
    fig.suptitle(title)
    save_figure(fig, out)


def _plot_run_curves(axes: Any, entry: Any, colour: Any, *, label: str | None, top: float | None) -> None:
    """One run's validation curve on each of the three axes (its seed picks the line style)."""
    lines = [line for line in entry.metrics if finite(line.get("val_loss"))]
    style = _seed_style(entry.values.get("seed"))[0]
    for ax, (key, _, scale) in zip(axes, CURVE_AXES):
        xs, ys = [line[key] * scale for line in lines], [line["val_loss"] for line in lines]
        ax.plot(xs, ys, style, marker="o", markersize=2.5, color=colour, label=label if ax is axes[0] else None)
        if entry.status == "diverged" and xs:
            ax.plot(xs[-1], min(ys[-1], top or ys[-1]), "x", color="red", markersize=9, mew=2)


def swept_numbers(entries: Sequence[Any], columns: list[str]) -> list[str]:
    """The columns ``plot_sweep`` draws a panel for: numeric in every run, more than one value, not
    the seed; the first :data:`MAX_SWEEP_PANELS` of them."""
    numeric = [c for c in columns if c != "seed" and all(finite(e.values.get(c)) for e in entries)
               and len({e.values[c] for e in entries}) > 1]
    return numeric[:MAX_SWEEP_PANELS]


def plot_sweep(entries: Sequence[Any], columns: list[str], out: str | Path, *, title: str) -> None:
    """Final validation loss against each numeric swept value (``swept_numbers``; log x for learning
    rates and wide ranges), three panels a row, or per run when no value is numeric; diverged and
    failed runs as red crosses at the top."""
    numeric = swept_numbers(entries, columns)
    if not numeric:
        _plot_per_run(entries, out, title=title)
        return
    rows, cols = math.ceil(len(numeric) / 3), min(3, len(numeric))
    fig, axes = pyplot().subplots(rows, cols, figsize=(4.6 * cols, 3.8 * rows), squeeze=False)
    finals = [e.final for e in entries if e.status not in ENDED_BADLY and finite(e.final)]
    top = max(finals) * 1.05 if finals else 1.0
    names = dict(zip(map(id, entries), display_names(entries)))
    for ax, column in zip(axes.flat, numeric):
        _plot_sweep_axis(ax, entries, column, top, names)
    for ax in list(axes.flat)[len(numeric):]:
        ax.set_visible(False)
    fig.suptitle(title)
    save_figure(fig, out)


def _plot_sweep_axis(ax: Any, entries: Sequence[Any], column: str, top: float, names: dict[int, str]) -> None:
    """The final loss against ``column``: one series (points and the line of their seed means) per
    combination of the other values, labelled by them, or by its run's name where each series is
    one run; runs that ended badly as red crosses at ``top``."""
    cycle = pyplot().get_cmap("tab10")
    groups = _by_other_values(entries, column)
    one_run_each = all(len(group) == 1 for group in groups.values())
    for index, (point, group) in enumerate(groups.items()):
        fine = [e for e in group if e.status not in ENDED_BADLY and finite(e.final)]
        label = names[id(group[0])] if one_run_each else point
        ax.plot([e.values[column] for e in fine], [e.final for e in fine], "o", color=cycle(index % 10), label=label)
        ax.plot(*_means(fine, column), "-", color=cycle(index % 10), alpha=0.6)
    bad = [e for e in entries if e.status in ENDED_BADLY or not finite(e.final)]
    ax.plot([e.values[column] for e in bad], [top] * len(bad), "x", color="red", markersize=9, mew=2,
            label="diverged / failed" if bad else None)
    values = sorted({e.values[column] for e in entries})
    if column.endswith("lr"):
        ax.set_xscale("log")
    else:
        log_scale_if_wide(ax, values, axis="x", factor=10)
    if ax.get_xscale() == "log":  # ticks at the swept values: a log axis's own ones crowd each other
        from matplotlib.ticker import NullFormatter

        ax.set_xticks(values, [f"{value:g}" for value in values])
        ax.xaxis.set_minor_formatter(NullFormatter())
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
    ax.barh(display_names(ordered), heights, color=colours)
    ax.invert_yaxis()
    ax.set_xlabel("final " + LOSS_LABEL + " (red: diverged or failed)")
    ax.grid(alpha=0.3, axis="x")
    fig.suptitle(title)
    save_figure(fig, out)
