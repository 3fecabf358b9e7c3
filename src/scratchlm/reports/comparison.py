"""A report comparing runs: an experiment's (``results/experiments/{experiment}/``) or any set of runs
(``scratchlm compare``).

Each run is a row labelled by its own name, with the values that set it apart (an experiment's
variant, grid keys and seed; for ``compare``, the settings that differ between the runs), its
final and best validation loss, tokens, wall time, throughput and status:

- ``finished``; ``no-better-than-unigram`` when it finished no lower than the unigram entropy of
  its corpus (a run that blew up and fell back can look healthy on a plot);
- ``diverged`` (it stopped early, see ``scratchlm.training``); ``failed`` (no summary: its job failed).

With several seeds per point, a second table gives each point's mean ± standard deviation.
``curves.png`` overlays the validation curves against steps, tokens and wall-clock time;
``sweep.png`` plots the final validation loss against each numeric swept value (or, with none,
per run), diverged runs drawn as red crosses.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from scratchlm.fileio import atomic_open, read_json_object, write_json
from scratchlm.layout import Layout, RunFiles, read_summary
from scratchlm.reports import markdown_table, relative_link
from scratchlm.reports.comparison_plots import plot_curves, plot_sweep, swept_numbers
from scratchlm.settings.loading import Project, experiment_runs, flatten
from scratchlm.settings.run import LEARNING_KEYS
from scratchlm.training.plots import read_metrics, run_labels

FIGURES = ("final val loss", "best val loss", "tokens", "wall (s)", "tokens/s", "status")  # the runs table's
COMPLETED = ("finished", "no-better-than-unigram")  # ran every step
SUMMARY_KEYS = ("final_val_loss", "best_val_loss", "tokens", "steps", "wall_s", "tokens_per_s", "unigram_entropy")


@dataclass
class Entry:
    """One compared run."""

    name: str
    run_dir: Path
    values: dict[str, Any]
    summary: dict | None = None
    metrics: list[dict] = field(default_factory=list)

    @property
    def status(self) -> str:
        """finished, no-better-than-unigram, diverged or failed (see the module doc)."""
        if self.summary is None:
            return "failed"
        status = self.summary.get("status", "finished")
        final, unigram = self.summary.get("final_val_loss"), self.summary.get("unigram_entropy")
        if status == "finished" and final is not None and unigram is not None and final >= unigram:
            return "no-better-than-unigram"
        return status

    @property
    def final(self) -> float | None:
        return None if self.summary is None else self.summary.get("final_val_loss")

    def record(self) -> dict:
        """The entry as summary.json lists it: the run's own summary figures, values and status."""
        figures = {key: (self.summary or {}).get(key) for key in SUMMARY_KEYS}
        stopped = {"stopped": self.summary["stopped"]} if self.summary and "stopped" in self.summary else {}
        return {"run": self.name, "values": self.values, "status": self.status, **figures, **stopped}


def read_entries(runs: Sequence[tuple[str, str | Path, dict[str, Any]]]) -> list[Entry]:
    """(name, run folder, values) -> entries; a run without summary.json is ``failed``."""
    entries = []
    for name, run_dir, values in runs:
        files = RunFiles(run_dir)
        summary = read_summary(run_dir)
        metrics = read_metrics(files.metrics) if summary is not None and files.metrics.is_file() else []
        entries.append(Entry(name, Path(run_dir), dict(values), summary, metrics))
    return entries


def differing_settings(run_dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """For each run folder, the settings (dotted keys, from config.json) whose values differ between the runs."""
    flat = [flatten(_run_settings(RunFiles(run_dir).config)) for run_dir in run_dirs]
    keys = sorted({key for settings in flat for key in settings})
    differing = [key for key in keys if len({repr(settings.get(key)) for settings in flat}) > 1]
    return [{key: settings.get(key) for key in differing} for settings in flat]


def _run_settings(config_path: Path) -> dict[str, Any]:
    """The settings a run's config.json records; ValueError naming the file if they are not a mapping."""
    settings = read_json_object(config_path, what="run config").get("settings", {})
    if not isinstance(settings, dict):
        raise ValueError(f"{config_path}: 'settings' is not a JSON object (not a run config)")
    return settings


def ranked(entries: list[Entry]) -> list[Entry]:
    """By final validation loss, diverged runs after the others and failed ones last, then by name."""
    order = {"diverged": 1, "failed": 2}
    return sorted(entries, key=lambda e: (order.get(e.status, 0), e.final if e.final is not None else 0.0, e.name))


def best(entries: list[Entry]) -> Entry | None:
    """The finished run with the lowest final validation loss."""
    finished = [entry for entry in ranked(entries) if entry.status == "finished"]
    return finished[0] if finished else None


def seed_groups(entries: list[Entry], columns: list[str]) -> list[dict]:
    """Mean ± standard deviation of the final validation loss of each point over its seeds (runs that completed)."""
    if "seed" not in columns:
        return []
    groups: dict[tuple, list[Entry]] = {}
    for entry in entries:
        key = tuple(repr(entry.values.get(column)) for column in columns if column != "seed")
        groups.setdefault(key, []).append(entry)
    points = []
    for members in groups.values():
        losses = [e.final for e in members if e.status in COMPLETED and e.final is not None]
        values = {column: members[0].values.get(column) for column in columns if column != "seed"}
        points.append({"values": values, "runs": len(members), "completed": len(losses),
                       "mean_final_val_loss": statistics.fmean(losses) if losses else None,
                       "std_final_val_loss": statistics.stdev(losses) if len(losses) > 1 else None})
    return sorted(points, key=lambda p: (p["mean_final_val_loss"] is None, p["mean_final_val_loss"] or 0.0))


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-2 or abs(value) >= 1e5 else f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def _runs_table(entries: list[Entry], columns: list[str], top: Entry | None) -> list[str]:
    rows = []
    for entry in ranked(entries):
        s, mark = entry.summary or {}, " ★" if entry is top else ""
        rows.append([f"{'**' if mark else ''}{entry.name}{'**' if mark else ''}{mark}",
                     *(_cell(entry.values.get(column)) for column in columns),
                     _cell(s.get("final_val_loss")), _cell(s.get("best_val_loss")), f"{s.get('tokens') or 0:,}",
                     _cell(s.get("wall_s")), f"{s.get('tokens_per_s') or 0:,.0f}", entry.status])
    header = ["run", *columns, *FIGURES]
    return markdown_table(header, rows)


def _points_table(points: list[dict], columns: list[str]) -> list[str]:
    shown = [column for column in columns if column != "seed"]
    rows = [[*(_cell(p["values"].get(column)) for column in shown), f"{p['completed']}/{p['runs']}",
             "n/a" if p["mean_final_val_loss"] is None else f"{p['mean_final_val_loss']:.4f}"
             + ("" if p["std_final_val_loss"] is None else f" ± {p['std_final_val_loss']:.4f}")] for p in points]
    return markdown_table([*shown, "completed runs", "final val loss (mean ± std over seeds)"], rows)


def _sweep_caption(entries: list[Entry], columns: list[str]) -> str:
    """What sweep.png shows: the final loss against which settings (or per run)."""
    plotted = swept_numbers(entries, columns)
    if not plotted:
        return "final validation loss of each run"
    left = [c for c in columns if c not in plotted and c != "seed"]
    return (f"final validation loss against {', '.join(plotted)}"
            + (f" (not plotted, in the table: {', '.join(left)})" if left else ""))


def render_markdown(title: str, entries: list[Entry], columns: list[str], markdown_path: Path,
                    plots: tuple[Path, Path], notes: Sequence[str] = ()) -> str:
    """The report's markdown (``notes``: lines after the tables); links relative to ``markdown_path``."""
    top, points = best(entries), seed_groups(entries, columns)
    lines = [f"# {title}", "",
             f"{len(entries)} runs, sorted by final validation loss (nats/token); ★ marks the best finished run. "
             "Status: finished; no-better-than-unigram (finished no lower than the corpus's unigram entropy); "
             "diverged (stopped early); failed (no summary: its job failed).", "",
             *_runs_table(entries, columns, top), ""]
    if any(point["runs"] > 1 for point in points):  # else each point is one run, as in the table above
        lines += ["## Over seeds", "", *_points_table(points, columns), ""]
    lines += notes
    for path, what in zip(plots, ("validation loss against steps, tokens and wall-clock time",
                                  _sweep_caption(entries, columns))):
        lines += [f"![{what}]({relative_link(path, markdown_path)})", ""]
    stopped = [e for e in entries if e.summary and "stopped" in e.summary]
    if stopped:
        lines += ["## Stopped early", "", *(f"- {e.name}: {e.summary['stopped'].get('reason')} "
                                            f"(step {e.summary['stopped'].get('step')})" for e in stopped), ""]
    failed = [e.name for e in entries if e.status == "failed"]
    if failed:
        lines += ["## Failed", "", "No summary.json (see each run's job log under results/logs/train/): "
                  + ", ".join(failed), ""]
    return "\n".join(lines)


def write_comparison(title: str, runs: Sequence[tuple[str, str | Path, dict[str, Any]]], columns: list[str], *,
                     markdown: str | Path, json: str | Path, curves: str | Path, sweep: str | Path,
                     notes: Sequence[str] = ()) -> dict:
    """Write the report of ``runs`` ((name, run folder, values) each; ``columns``: the value names, in
    order; ``notes``: markdown lines after the tables) to its four files; returns what summary.json holds."""
    entries = read_entries(runs)
    if not entries:
        raise ValueError(f"{title}: no runs to compare")
    plot_curves(entries, curves, title=title)
    plot_sweep(entries, columns, sweep, title=title)
    top = best(entries)
    data = {"title": title, "columns": columns, "best": top.name if top else None,
            "runs": [entry.record() for entry in ranked(entries)], "points": seed_groups(entries, columns)}
    write_json(json, data)
    with atomic_open(markdown, "w") as handle:
        handle.write(render_markdown(title, entries, columns, Path(markdown), (Path(curves), Path(sweep)), notes))
    return data


def experiment_report_runs(project: Project, experiment: str, layout: Layout) -> list[tuple[str, str, dict]]:
    """(name, run folder, values) of every run of ``experiment``."""
    return [(run, layout.run_dir(run), entry.labels) for run, entry in experiment_runs(project, experiment).items()]


def write_experiment_report(experiment: str, runs: Sequence[tuple[str, str | Path, dict[str, Any]]],
                            columns: list[str], files: dict[str, str]) -> dict:
    """The comparison of an experiment's runs into ``files`` (``Layout.experiment_files``; the rule's
    outputs): the rule's and ``scratchlm report experiment``'s entry."""
    return write_comparison(f"Experiment {experiment}", runs, columns, **files)


def compare_runs(run_dirs: Sequence[str | Path], out_dir: str | Path, *, title: str = "Comparison") -> dict:
    """``scratchlm compare``: the report of any run folders. Its columns are the settings that differ
    and change what a run learns (``LEARNING_KEYS``); the others that differ (intervals, devices, ...)
    get a table of their own and no plot."""
    names = run_labels(run_dirs)
    differing = differing_settings(run_dirs) if all(RunFiles(d).config.is_file() for d in run_dirs) \
        else [{}] * len(names)
    learning = [{k: v for k, v in values.items() if k.split(".")[0] in LEARNING_KEYS} for values in differing]
    others = [{k: v for k, v in values.items() if k not in learned} for values, learned in zip(differing, learning)]
    columns = sorted({key for entry in learning for key in entry})
    out = Path(out_dir)
    return write_comparison(title, list(zip(names, run_dirs, learning)), columns, markdown=out / "report.md",
                            json=out / "summary.json", curves=out / "curves.png", sweep=out / "sweep.png",
                            notes=_other_differences(names, others))


def _other_differences(names: list[str], others: list[dict[str, Any]]) -> list[str]:
    """A table of the differing settings that do not change what a run learns (none: no lines)."""
    keys = sorted({key for values in others for key in values})
    if not keys:
        return []
    rows = [[name, *(_cell(values.get(key)) for key in keys)] for name, values in zip(names, others)]
    return ["## Other differences", "", "Settings that differ but do not change what a run learns "
            "(where it ran, how it was evaluated, logged and saved); not plotted.", "",
            *markdown_table(["run", *keys], rows), ""]
