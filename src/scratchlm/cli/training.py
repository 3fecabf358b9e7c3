"""``scratchlm train`` and ``scratchlm generate``: a run of config.yaml, and samples from it."""

from __future__ import annotations

import argparse
import json
import logging

from scratchlm.cli.common import (
    Subparsers,
    add_command,
    add_project_arguments,
    add_results_argument,
    add_run_arguments,
    add_setting,
    project_and_overrides,
    run_dir_of,
    section_from,
)
from scratchlm.settings import GenerationSettings, SamplingSettings, TrainingSettings

log = logging.getLogger(__name__)


def register(commands: Subparsers) -> None:
    """``train`` and ``generate``."""
    parser = add_command(commands, "train", run_train, "train a Transformer LM run from config.yaml")
    parser.add_argument("run", help="name of the run under `runs:` in the config file")
    add_project_arguments(parser)
    parser.add_argument("--run-dir", default=None, help="run folder; RESULTS/runs/RUN when not given")
    add_results_argument(parser, "results folder with the encoded splits and tokenizers (and runs/)")
    parser.add_argument("--fresh", action="store_true",
                        help="start the run over; its existing files are moved to RUN_DIR/replaced/TIME/, not deleted")

    parser = add_command(commands, "compare", run_compare, "compare runs in one report: the settings that differ, "
                         "losses, status, curves and sweep plots")
    parser.add_argument("runs", nargs="+", metavar="RUN", help="runs (names under RESULTS/runs) or run folders")
    parser.add_argument("--out", required=True, help="folder to write report.md, summary.json, curves.png, sweep.png")
    parser.add_argument("--title", default=None, help="the report's title (default: the runs' names)")
    add_results_argument(parser)

    parser = add_command(commands, "generate", run_generate, "sample text from a trained run")
    add_run_arguments(parser, what="to sample from")
    add_setting(parser, GenerationSettings, "prompts", "--prompt", nargs="+", metavar="PROMPT")
    add_setting(parser, GenerationSettings, "max_new_tokens")
    add_setting(parser, SamplingSettings, "temperature")
    add_setting(parser, SamplingSettings, "top_p")
    add_setting(parser, GenerationSettings, "seed")
    add_setting(parser, TrainingSettings, "device")
    parser.add_argument("--special-token", nargs="+", dest="special_tokens", default=None,
                        help="special tokens of the run's tokenizer (default: those model.json records)")
    parser.add_argument("--valid", default=None, help="encoded split (.npy) whose perplexity to report too")
    parser.add_argument("--output", default=None, help="markdown file to write (default: print the samples)")


def run_train(args: argparse.Namespace) -> int:
    from scratchlm.layout import Layout
    from scratchlm.settings import resolve_run
    from scratchlm.training.loop import TrainingInterrupted, corpus_data, train

    project, overrides = project_and_overrides(args)
    settings = resolve_run(project, args.run, overrides)
    data = corpus_data(settings.corpus, project.corpus(settings.corpus), Layout(args.results))
    try:
        summary = train(settings, data, run_dir_of(args), run_name=args.run, fresh=args.fresh)
    except TrainingInterrupted as stop:
        log.warning("%s", stop)
        return stop.exit_status
    print(json.dumps(summary, indent=2))  # a diverged run is a result too: its status says so
    return 0


def run_compare(args: argparse.Namespace) -> None:
    from pathlib import Path

    from scratchlm.layout import Layout, RunFiles
    from scratchlm.reports.comparison import compare_runs

    layout = Layout(args.results)
    folders = [run if RunFiles(run).config.is_file() else layout.run_dir(run) for run in args.runs]
    missing = [run for run, folder in zip(args.runs, folders) if not Path(folder).is_dir()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)}: neither a run folder nor a run in {layout.run_dir('*')}")
    data = compare_runs(folders, args.out, title=args.title or "Comparison of " + ", ".join(args.runs))
    print(f"wrote {Path(args.out) / 'report.md'} ({len(data['runs'])} runs, best: {data['best']})")


def run_generate(args: argparse.Namespace) -> None:
    from scratchlm.generation import write_samples

    generation = section_from(args, GenerationSettings, settings=[section_from(args, SamplingSettings)])
    text = write_samples(run_dir_of(args), args.output, generation, valid=args.valid,
                         device=section_from(args, TrainingSettings).device, special_tokens=args.special_tokens)
    if args.output is None:
        print(text)
