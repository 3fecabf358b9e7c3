"""``results/index.md``: the one page to open after a pipeline run, linking every report and run.

Built from what exists under the results folder, so it also works after a partial run
(missing reports are listed as not built yet). All links are relative to the index.
"""

from __future__ import annotations

from pathlib import Path

from scratchlm.fileio import atomic_open, read_json_object
from scratchlm.layout import SPLITS, Layout, RunFiles, read_summary, run_folders
from scratchlm.reports import markdown_table, relative_link
from scratchlm.training.plots import read_metrics

# (report file, title, what it shows)
REPORTS = (
    ("tokenizer.md", "Tokenizer", "compression ratio, vocabulary, throughput of each trained tokenizer"),
    ("training.md", "Training", "validation loss, tokens/s and MFU of every run, learning curves"),
    ("accounting.md", "Resource accounting", "parameters, FLOPs and AdamW memory of GPT-2-sized models"),
    ("profile.md", "Pipeline profile", "wall time, CPU time and peak RSS of every pipeline stage"),
)


def _link(text: str, target: Path, index_path: Path) -> str:
    return f"[{text}]({relative_link(target, index_path)})"


def _reports_section(layout: Layout, index_path: Path) -> list[str]:
    lines = ["## Reports", ""]
    for name, title, what in REPORTS:
        path = Path(layout.report(name))
        lines.append(f"- {_link(title, path, index_path)}: {what}" if path.is_file()
                     else f"- {title}: not built yet (`{path}`)")
    return lines + [""]


def _run_state(run_dir: Path) -> tuple[str | None, float | None, str, str]:
    """(corpus, final validation loss, steps, status) of a run folder: from its summary once it
    finished; for an import, from model.json; while it trains or after it stopped, from its
    config.json and the last line of its metrics."""
    run = RunFiles(run_dir)
    summary = read_summary(run_dir)
    if summary is not None:
        return summary.get("corpus"), summary.get("final_val_loss"), f"{summary.get('steps', 0):,}", \
            summary.get("status", "finished")
    if not run.config.is_file():
        meta = read_json_object(run.meta, what="model metadata")
        source = meta.get("imported_from")
        return meta.get("corpus"), None, "n/a", f"imported from `{source}`" if source else "model only"
    config = read_json_object(run.config, what="run config")
    lines = read_metrics(run.metrics) if run.metrics.is_file() else []
    done, total = (lines[-1].get("step", 0) if lines else 0), (config.get("training") or {}).get("total_steps")
    steps = f"{done:,} of {total:,}" if total else f"{done:,}"
    return (config.get("data") or {}).get("corpus"), None, steps, "not finished"


def _run_row(run_dir: Path, runs_dir: Path, index_path: Path) -> list[str]:
    run = RunFiles(run_dir)
    corpus, loss, steps, status = _run_state(run_dir)
    files = [(run.curves, "curves"), (run.samples, "samples"), (run.metrics, "metrics"), (run.config, "config"),
             (run.hf, "Hugging Face export")]
    links = " · ".join(_link(label, path, index_path) for path, label in files if path.exists())
    name = run_dir.relative_to(runs_dir).as_posix()
    return [f"[{name}]({relative_link(run_dir, index_path)}/)", corpus or "n/a",
            "n/a" if loss is None else f"{loss:.4f}", steps, status, links or "none"]


def _runs_section(layout: Layout, index_path: Path) -> list[str]:
    runs_dir = Path(layout.runs_dir())
    run_dirs = run_folders(runs_dir, RunFiles(".").config.name, RunFiles(".").meta.name)
    if not run_dirs:
        return ["## Runs", "", "No training runs yet.", ""]
    rows = [_run_row(path, runs_dir, index_path) for path in run_dirs]
    lines = ["## Runs", "", *markdown_table(["run", "corpus", "final val loss", "steps", "status", "files"], rows), ""]
    plot = Path(layout.report("training.png"))
    if plot.is_file():
        lines += [f"![validation loss of every run]({relative_link(plot, index_path)})", ""]
    return lines


def _experiments_section(layout: Layout, index_path: Path) -> list[str]:
    """Each experiment's report, its best run and how its runs ended."""
    reports = sorted(Path(layout.experiments_dir()).glob(f"*/{Path(layout.experiment_files('x')['json']).name}"))
    rows = []
    for path in reports:
        summary = read_json_object(path, what="experiment report")
        markdown = Path(layout.experiment_files(path.parent.name)["markdown"])
        statuses = [run["status"] for run in summary.get("runs", [])]
        counts = ", ".join(f"{statuses.count(s)} {s}" for s in dict.fromkeys(statuses))
        rows.append([_link(path.parent.name, markdown, index_path), summary.get("best") or "none", counts])
    if not rows:
        return []
    return ["## Experiments", "", *markdown_table(["experiment", "best run", "runs"], rows), ""]


def _corpora_section(layout: Layout, index_path: Path) -> list[str]:
    """Each corpus folder: its text and encoded splits, and its tokenizer in every format."""
    corpora = layout.corpora_with(layout.corpus_dir)
    if not corpora:
        return []
    rows = []
    for corpus in corpora:
        files = [*((layout.corpus_text(corpus, split), f"{split}.txt") for split in SPLITS),
                 *((layout.ids(corpus, split), f"{split}.npy") for split in SPLITS),
                 (layout.vocab_pkl(corpus), "vocab.pkl"), (layout.merges_pkl(corpus), "merges.pkl"),
                 (layout.vocab_json(corpus), "vocab.json"), (layout.merges_txt(corpus), "merges.txt"),
                 (layout.hf_tokenizer(corpus), "tokenizer.json"), (layout.tokenizer_summary(corpus), "summary")]
        rows.append([f"[{corpus}]({relative_link(layout.corpus_dir(corpus), index_path)}/)",
                     " · ".join(_link(label, Path(path), index_path) for path, label in files if Path(path).is_file())])
    return ["## Corpora (text, encoded splits, tokenizer files)", "", *markdown_table(["corpus", "files"], rows), ""]


def render_index(results_dir: str | Path, index_path: str | Path) -> str:
    """The index page for ``results_dir``, with links relative to ``index_path``."""
    layout, index_path = Layout(str(results_dir)), Path(index_path)
    lines = ["# scratchlm results", "",
             "Everything the pipeline produced, one click away. Rebuild with `snakemake` (or `make demo`); "
             "`snakemake --report results/report.html` adds Snakemake's own HTML report of the jobs.", ""]
    lines += _reports_section(layout, index_path) + _experiments_section(layout, index_path)
    lines += _runs_section(layout, index_path)
    lines += _corpora_section(layout, index_path)
    logs = Path(layout.logs_dir())
    if logs.is_dir():
        lines += ["## Logs", "", f"Each job's log is under {_link('logs/', logs, index_path)} "
                  "(`<rule>/<wildcards>.log`).", ""]
    return "\n".join(lines)


def write_index(results_dir: str | Path, index_path: str | Path) -> None:
    """Write the index page for ``results_dir`` to ``index_path``."""
    if not Path(results_dir).is_dir():
        raise FileNotFoundError(f"results folder {results_dir} does not exist; run the pipeline first")
    text = render_index(results_dir, index_path)
    with atomic_open(index_path, "w") as handle:
        handle.write(text)
