"""Pipeline profile: wall time, CPU time and peak RSS of every stage, from what the stages recorded.

Two sources describe each job, both named ``<rule>/<wildcard values>``:

- ``results/benchmarks/<rule>/<job>.tsv``: Snakemake's ``benchmark:`` record of the whole job
  (``s`` = wall seconds including interpreter start-up, ``cpu_time``, ``max_rss`` in MiB);
  its sampler can miss a short-lived job or worker process, which it writes as ``NA``/``-``.
- ``results/profiles/<rule>/<job>.json``: the stage's own ``ProcessTreeMonitor`` (wall_s and
  cpu_s of the stage body, including exited worker processes, and the tree's peak RSS).

The report takes wall time from the benchmark (what the user waited) and, for CPU time and
peak RSS, the larger of the two figures: the benchmark sees interpreter start-up and imports,
the profile sees workers that exited between the benchmark's samples.
"""

from __future__ import annotations

import csv
import glob
import json
from dataclasses import dataclass
from pathlib import Path

from scratchlm.figures import pyplot, save_figure
from scratchlm.fileio import atomic_open
from scratchlm.layout import Layout
from scratchlm.progress import format_duration
from scratchlm.reports import markdown_table, relative_link


@dataclass
class StageRecord:
    """What one job of a rule cost; None where neither source measured it."""

    rule: str
    job: str
    wall_s: float | None = None
    cpu_s: float | None = None
    peak_rss_mb: float | None = None
    processes: int | None = None
    finished: float = 0.0  # mtime of the newest record, to list jobs in the order they ran

    @property
    def label(self) -> str:
        return self.rule if self.job == "all" else f"{self.rule} [{self.job}]"


def _number(value: str | None) -> float | None:
    """A benchmark cell as a float; Snakemake writes NA or - when it has no sample."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def read_benchmark(path: str | Path) -> dict[str, float | None]:
    """Wall seconds (mean over repeats), CPU seconds and peak RSS (MiB, max over repeats) of a benchmark TSV."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if not rows or "s" not in rows[0]:
        raise ValueError(f"{path}: not a Snakemake benchmark file (no header with an 's' column, or no rows)")
    walls = [w for w in (_number(r.get("s")) for r in rows) if w is not None]
    cpus = [c for c in (_number(r.get("cpu_time")) for r in rows) if c is not None]
    rss = [m for m in (_number(r.get("max_rss")) for r in rows) if m is not None]
    return {"wall_s": sum(walls) / len(walls) if walls else None,
            "cpu_s": sum(cpus) / len(cpus) if cpus else None,
            "peak_rss_mb": max(rss) if rss else None}


def read_profile(path: str | Path) -> dict:
    """A stage profile JSON written by ``StageProfile.to_json``."""
    try:
        data = json.loads(Path(path).read_text())
        return {"wall_s": float(data["wall_s"]), "cpu_s": float(data["cpu_s"]),
                "peak_rss_mb": float(data["peak_rss_bytes"]) / 2**20,
                "processes": int(data.get("peak_processes", 1))}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: not a stage profile ({error})") from None


def collect_stage_records(results_dir: str | Path = "results", *,
                          exclude_rules: tuple[str, ...] = ()) -> list[StageRecord]:
    """One record per job found under ``<results>/benchmarks`` or ``<results>/profiles``, in finishing order.

    ``exclude_rules`` drops rules that run after the report (their records would be stale).
    """
    layout = Layout(str(results_dir))
    records: dict[tuple[str, str], StageRecord] = {}

    def record(path: Path) -> StageRecord:
        key = (path.parent.name, path.stem)
        entry = records.setdefault(key, StageRecord(*key))
        entry.finished = max(entry.finished, path.stat().st_mtime)
        return entry

    for path in sorted(map(Path, glob.glob(layout.profile("*", "*")))):
        entry, prof = record(path), read_profile(path)
        entry.wall_s, entry.cpu_s, entry.peak_rss_mb = prof["wall_s"], prof["cpu_s"], prof["peak_rss_mb"]
        entry.processes = prof["processes"]
    for path in sorted(map(Path, glob.glob(layout.benchmark("*", "*")))):
        entry, bench = record(path), read_benchmark(path)
        entry.wall_s = bench["wall_s"] if bench["wall_s"] is not None else entry.wall_s
        entry.cpu_s = _max_known([entry.cpu_s, bench["cpu_s"]])
        entry.peak_rss_mb = _max_known([entry.peak_rss_mb, bench["peak_rss_mb"]])
    kept = [r for r in records.values() if r.rule not in exclude_rules]
    return sorted(kept, key=lambda r: (r.finished, r.rule, r.job))


def _cell(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def _sum_known(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _max_known(values: list[float | None]) -> float | None:
    return max((v for v in values if v is not None), default=None)


def by_rule(records: list[StageRecord]) -> list[StageRecord]:
    """One record per rule: wall and CPU summed over its jobs, the largest peak RSS; in finishing order."""
    groups: dict[str, list[StageRecord]] = {}
    for r in records:
        groups.setdefault(r.rule, []).append(r)
    merged = [StageRecord(rule, "all" if len(jobs) == 1 else f"{len(jobs)} jobs",
                          wall_s=_sum_known([j.wall_s for j in jobs]), cpu_s=_sum_known([j.cpu_s for j in jobs]),
                          peak_rss_mb=_max_known([j.peak_rss_mb for j in jobs]),
                          processes=_max_known([j.processes for j in jobs]), finished=max(j.finished for j in jobs))
              for rule, jobs in groups.items()]
    return sorted(merged, key=lambda r: (r.finished, r.rule))


def _table(records: list[StageRecord]) -> list[str]:
    """Markdown table of the records with a total row (time summed, memory maximum)."""
    total_wall = sum(r.wall_s or 0 for r in records)
    total_cpu = sum(r.cpu_s or 0 for r in records)
    peak = max((r.peak_rss_mb for r in records if r.peak_rss_mb is not None), default=None)
    rows = [[r.label, _cell(r.wall_s, ",.1f"), _cell(r.cpu_s, ",.1f"),
             _cell(r.cpu_s / r.wall_s if r.cpu_s is not None and r.wall_s else None, ".2f"),
             _cell(r.peak_rss_mb, ",.0f"), r.processes or "n/a"] for r in records]
    rows.append(["**total**", f"**{total_wall:,.1f}** ({format_duration(total_wall)})",
                 f"**{total_cpu:,.1f}** ({format_duration(total_cpu)})", "", f"**{_cell(peak, ',.0f')}** (max)", ""])
    return markdown_table(["stage", "wall (s)", "CPU (s)", "CPU / wall", "peak RSS (MiB)", "processes"], rows)


def _where_it_goes(stages: list[StageRecord]) -> list[str]:
    total_wall = sum(r.wall_s or 0 for r in stages)
    if total_wall <= 0:
        return []
    slowest = sorted(stages, key=lambda r: r.wall_s or 0, reverse=True)[:3]
    biggest = max(stages, key=lambda r: r.peak_rss_mb or 0)
    shares = ", ".join(f"{r.rule} {100 * (r.wall_s or 0) / total_wall:.0f}%" for r in slowest)
    return [f"Where the wall time goes (summed over jobs; parallel jobs overlap): {shares}. "
            f"Most memory: {biggest.rule}, {_cell(biggest.peak_rss_mb, ',.0f')} MiB.", ""]


def render_markdown(records: list[StageRecord], *, plot_name: str | None = None) -> str:
    """Per-stage summary (with the chart), then every job."""
    stages = by_rule(records)
    lines = ["# Pipeline profile", "",
             "Every stage's cost, from its Snakemake benchmark (`results/benchmarks/`) and its own process-tree "
             "profile (`results/profiles/`). Wall time is the whole job as Snakemake timed it (interpreter "
             "start-up included); CPU time and peak RSS cover the job's whole process tree, worker processes "
             "included. Stages and jobs are listed in the order they finished. This report cannot include its "
             "own cost, nor that of the index written after it: their benchmarks are written when they finish.",
             "", "## By stage", "", *_table(stages), "", *_where_it_goes(stages)]
    if plot_name:
        lines += [f"![wall time, CPU time and peak RSS of every stage]({plot_name})", ""]
    return "\n".join(lines + ["## By job", "", *_table(records), ""])


def plot_profile(records: list[StageRecord], path: str | Path) -> None:
    """Two bar charts side by side: wall and CPU seconds, and peak RSS, one bar group per record."""
    plt = pyplot()

    labels = [r.label for r in records]
    positions = range(len(records))
    fig, (time_ax, rss_ax) = plt.subplots(1, 2, sharey=True, figsize=(11, 0.35 * len(records) + 1.8))
    height = 0.4
    # Labelled bars: a 1-second stage next to a 10-minute one is invisible otherwise.
    wall = time_ax.barh([p - height / 2 for p in positions], [r.wall_s or 0 for r in records], height, label="wall")
    cpu = time_ax.barh([p + height / 2 for p in positions], [r.cpu_s or 0 for r in records], height, label="CPU")
    for bars in (wall, cpu):
        time_ax.bar_label(bars, fmt="%.1f", fontsize="x-small", padding=2)
    time_ax.set_xlabel("seconds")
    time_ax.set_title("time")
    time_ax.legend(fontsize="small", loc="lower right")
    rss = rss_ax.barh(list(positions), [r.peak_rss_mb or 0 for r in records], 2 * height, color="tab:green")
    rss_ax.bar_label(rss, fmt="%.0f", fontsize="x-small", padding=2)
    rss_ax.set_xlabel("MiB")
    rss_ax.set_title("peak RSS of the process tree")
    for ax in (time_ax, rss_ax):
        ax.margins(x=0.15)  # room for the labels
    time_ax.set_yticks(list(positions), labels, fontsize="small")
    time_ax.invert_yaxis()  # first job on top, like the table
    save_figure(fig, path, dpi=110)


# Rules that run after the profile report: their records would be stale in it.
LATER_RULES = ("profile_report", "index")


def write_profile_report(results_dir: str | Path, markdown_path: str | Path, plot_path: str | Path, *,
                         exclude_rules: tuple[str, ...] = LATER_RULES) -> list[StageRecord]:
    """Collect every stage record under ``results_dir`` (but ``exclude_rules``') and write the markdown
    table and the bar chart."""
    records = collect_stage_records(results_dir, exclude_rules=tuple(exclude_rules))
    if not records:
        layout = Layout(str(results_dir))
        raise FileNotFoundError(f"no stage benchmarks ({layout.benchmark('*', '*')}) or profiles "
                                f"({layout.profile('*', '*')}); run the pipeline first")
    plot_profile(by_rule(records), plot_path)
    with atomic_open(markdown_path, "w") as handle:
        handle.write(render_markdown(records, plot_name=relative_link(plot_path, markdown_path)))
    return records
