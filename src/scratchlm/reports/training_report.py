"""Training report: validation loss, throughput and model FLOPs utilisation of every run, with curves.

Reads each run folder written by ``scratchlm.training.loop`` (summary.json, config.json,
metrics.jsonl, curves.png, samples.md) and writes ``results/reports/training.md`` plus one
plot of every run's validation loss against tokens seen.

MFU = achieved model FLOP/s / device peak, where model FLOPs per token = 3x the forward
matmul FLOPs of ``scratchlm.reports.accounting`` (backward = 2x forward) and the achieved
rate uses the run's overall tokens/s (evaluation time included, so it is a lower bound).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from scratchlm.fileio import atomic_open, read_json_object
from scratchlm.layout import RunFiles, run_folders
from scratchlm.nn.model import ModelConfig
from scratchlm.reports import markdown_table, relative_link
from scratchlm.nn.accounting import training_flops_per_token
from scratchlm.training.plots import plot_comparison, read_metrics, run_labels

# Dense (no sparsity) tensor-core peaks in TFLOP/s from NVIDIA's data sheets. "fp32" is the
# TF32 rate on GPUs that have it, since training enables TF32 matmuls on CUDA. Matched as a
# substring of the device name, first match wins (so "A100" is tried before "A10").
DEVICE_PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H100 PCIe": {"bf16": 756.0, "fp32": 378.0},
    "H100": {"bf16": 989.4, "fp32": 494.7},  # SXM
    "H200": {"bf16": 989.4, "fp32": 494.7},
    "A100": {"bf16": 312.0, "fp32": 156.0},
    "A10": {"bf16": 125.0, "fp32": 62.5},
    "L40S": {"bf16": 362.0, "fp32": 183.0},
    "L4": {"bf16": 121.0, "fp32": 60.0},
    "V100": {"fp32": 15.7},  # no bf16 or TF32 tensor cores
}


def device_peak_flops(device_name: str | None, precision: str) -> float | None:
    """Peak FLOP/s of a device at ``precision`` (bf16 or fp32), or None when unknown.

    >>> device_peak_flops("NVIDIA A100-SXM4-80GB", "bf16"), device_peak_flops("cpu", "fp32")
    (312000000000000.0, None)
    """
    name = (device_name or "").lower()
    for key, peaks in DEVICE_PEAK_TFLOPS.items():
        if key.lower() in name:
            return peaks[precision] * 1e12 if precision in peaks else None
    return None


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (has the run finished?)")
    return read_json_object(path, what=f"run {path.stem}")


def read_run_summary(run_dir: str | Path) -> dict:
    """One run's summary, config, metrics and MFU, plus the paths of its curves and samples if present."""
    run_dir, files = Path(run_dir), RunFiles(run_dir)
    summary = _read_json(files.summary)
    config = _read_json(files.config)
    try:
        model = ModelConfig.from_dict(config["model"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{files.config}: no valid model configuration ({error})") from None
    device_name = summary.get("device_name") or summary.get("device")
    precision = summary.get("precision", "fp32")
    peak = device_peak_flops(device_name, precision)
    flops_per_token = training_flops_per_token(model)
    metrics = files.metrics
    achieved = summary.get("tokens_per_s", 0) * flops_per_token
    return {
        "name": summary.get("run", run_dir.name), "dir": run_dir, "summary": summary, "model": model,
        "metrics": read_metrics(metrics) if metrics.is_file() else [],
        "device_name": device_name, "precision": precision,
        "flops_per_token": flops_per_token, "achieved_flops": achieved,
        "mfu": achieved / peak if peak else None,
        "curves": files.curves if files.curves.is_file() else None,
        "samples": files.samples if files.samples.is_file() else None,
    }


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _summary_table(runs: list[dict]) -> list[str]:
    rows = []
    for run in runs:
        s = run["summary"]
        mfu = f"{100 * run['mfu']:.3g}%" if run["mfu"] is not None else "n/a (peak unknown)"
        rows.append([run["name"], s.get("corpus", "n/a"), f"{s.get('parameters', 0):,}", f"{s.get('steps', 0):,}",
                     f"{s.get('tokens', 0):,}", _fmt(s.get("wall_s"), ",.0f"), _fmt(s.get("tokens_per_s"), ",.0f"),
                     f"{run['device_name']} ({run['precision']})", _fmt(s.get("final_val_loss"), ".4f"),
                     _fmt(s.get("best_val_loss"), ".4f"), _fmt(s.get("unigram_entropy"), ".3f"),
                     f"{run['achieved_flops'] / 1e12:.3g}", mfu])
    header = ["run", "corpus", "parameters", "steps", "tokens", "wall (s)", "tokens/s", "device",
              "final val loss", "best val loss", "unigram entropy", "model TFLOP/s", "MFU"]
    return markdown_table(header, rows)


def _run_section(run: dict, markdown_path: Path) -> list[str]:
    m, s = run["model"], run["summary"]
    lines = [f"## {run['name']}", "",
             f"Model: {m.num_layers} layers, d_model {m.d_model}, {m.num_heads} heads, d_ff {m.d_ff}, context "
             f"{m.context_length}, vocabulary {m.vocab_size} ({m.norm}-norm, {m.position}, {m.ffn}); "
             f"{run['flops_per_token'] / 1e6:,.1f} MFLOPs a trained token. "
             f"Final validation perplexity {_fmt(s.get('final_val_perplexity'), ',.2f')}.", ""]
    links = [f"[run folder]({relative_link(run['dir'], markdown_path)}/)"]
    if run["samples"]:
        links.append(f"[samples]({relative_link(run['samples'], markdown_path)})")
    lines += [" · ".join(links), ""]
    if run["curves"]:
        lines += [f"![learning curves of {run['name']}]({relative_link(run['curves'], markdown_path)})", ""]
    return lines


def render_markdown(runs: list[dict], markdown_path: str | Path, *, plot_path: str | Path | None = None,
                    unfinished: Sequence[str] = ()) -> str:
    """The report; links are relative to ``markdown_path``."""
    markdown_path = Path(markdown_path)
    lines = ["# Training runs", "",
             "Losses are mean cross-entropy in nats per token; the unigram entropy of the training tokens is "
             "what a model ignoring context would reach. Tokens/s is the run's overall rate (evaluation "
             "included), model FLOPs = 3x forward matmul FLOPs, MFU = model FLOP/s / the device's dense peak "
             "(shown where the device is in the table of known peaks: "
             f"{', '.join(DEVICE_PEAK_TFLOPS)}).", "", *_summary_table(runs), ""]
    if unfinished:
        lines += [f"Did not finish (their jobs failed; see results/logs/train/): {', '.join(unfinished)}.", ""]
    if plot_path is not None:
        lines += [f"![validation loss of every run]({relative_link(plot_path, markdown_path)})", ""]
    for run in runs:
        lines += _run_section(run, markdown_path)
    return "\n".join(lines)


def find_runs(runs_dir: str | Path) -> list[Path]:
    """Run folders under ``runs_dir`` (at any depth: experiments nest theirs) that have a summary.json
    (finished runs), by name; moved-aside runs (``replaced/``) excluded."""
    return run_folders(runs_dir, RunFiles(".").summary.name)


def write_training_report(run_dirs: list[str | Path], markdown_path: str | Path, plot_path: str | Path, *,
                          unfinished: Sequence[str] = ()) -> list[dict]:
    """Write training.md and the validation-loss plot for the given run folders (naming ``unfinished`` runs)."""
    if not run_dirs:
        raise FileNotFoundError("no finished runs to report (no run folder with a summary.json)")
    runs = [read_run_summary(path) | {"name": label} for path, label in zip(run_dirs, run_labels(run_dirs))]
    plot_comparison(run_dirs, plot_path, x="tokens")
    with atomic_open(markdown_path, "w") as handle:
        handle.write(render_markdown(runs, markdown_path, plot_path=plot_path, unfinished=unfinished))
    return runs
