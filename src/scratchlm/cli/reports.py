"""``scratchlm report KIND``: the reports the pipeline writes, one command each. Every report reads
``--results`` and writes its files where the pipeline puts them unless told otherwise."""

from __future__ import annotations

import argparse

from scratchlm.cli.common import (
    Subparsers,
    add_command,
    add_group,
    add_project_arguments,
    add_results_argument,
    add_setting,
    add_special_tokens_argument,
    project_and_overrides,
    section_from,
)
from scratchlm.layout import Layout
from scratchlm.settings import AccountingSettings, EncodeSettings

# file suffix -> the option that names the file
OUTPUT_OPTIONS = {"md": "markdown", "json": "json", "png": "plot"}


def register(commands: Subparsers) -> None:
    """``report tokenizer|accounting|profile|training|index``."""
    kinds = add_group(commands, "report", "write one of the pipeline's reports")

    def add(kind: str, run, help_text: str) -> argparse.ArgumentParser:
        return add_command(kinds, kind, run, help_text, command=f"report {kind}")

    parser = add("tokenizer", run_report_tokenizer, "tokenizer report: compression, vocabulary, throughput")
    _add_outputs(parser, "tokenizer", json=True)
    parser.add_argument("--corpora", nargs="+", metavar="NAME",
                        help="corpora whose tokenizers to report (default: every one under RESULTS)")
    add_special_tokens_argument(parser)
    for flag, field in (("--documents", "report_documents"), ("--throughput-mb", "report_throughput_mb"),
                        ("--workers", "report_workers"), ("--seed", "report_seed")):
        add_setting(parser, EncodeSettings, field, flag)

    parser = add("accounting", run_report_accounting, "parameters, FLOPs and memory of model configurations")
    _add_outputs(parser, "accounting", json=True, plot=True)
    for field in AccountingSettings.model_fields:
        add_setting(parser, AccountingSettings, field)

    parser = add("profile", run_report_profile, "wall time, CPU time and peak RSS of every pipeline stage")
    _add_outputs(parser, "profile", plot=True)

    parser = add("training", run_report_training, "validation loss, throughput and MFU of every run")
    parser.add_argument("runs", nargs="*", help="run folders (default: every finished run under RESULTS/runs)")
    _add_outputs(parser, "training", plot=True)

    parser = add("experiment", run_report_experiment, "an experiment's report: its runs compared (table, plots)")
    parser.add_argument("experiment", help="name of the experiment under `experiments:` in the config file")
    add_project_arguments(parser)
    add_results_argument(parser)

    parser = add("index", run_report_index, "results/index.md linking every report, run and sample")
    add_results_argument(parser, "results folder to index")
    parser.add_argument("--markdown", default=None, help=f"index page to write (default: {Layout().index()})")


def _add_outputs(parser: argparse.ArgumentParser, name: str, *, json: bool = False, plot: bool = False) -> None:
    """``--markdown`` (and ``--json``, ``--plot``): the report's files, by default RESULTS/reports/NAME.*"""
    add_results_argument(parser)
    default = Layout().report(name)
    parser.add_argument("--markdown", default=None, help=f"markdown report to write (default: {default}.md)")
    if json:
        parser.add_argument("--json", default=None, help=f"JSON report to write (default: {default}.json)")
    if plot:
        parser.add_argument("--plot", default=None, help=f"plot (PNG) to write (default: {default}.png)")


def _output(args: argparse.Namespace, name: str, suffix: str) -> str:
    """The path of one of the report's files: the option's value, or where the pipeline puts it."""
    return getattr(args, OUTPUT_OPTIONS[suffix]) or Layout(args.results).report(f"{name}.{suffix}")


def run_report_tokenizer(args: argparse.Namespace) -> None:
    from scratchlm.reports.tokenizer_report import write_tokenizer_report

    corpora = args.corpora or Layout.corpora_with(Layout(args.results).vocab_pkl)
    if not corpora:
        raise FileNotFoundError(f"{args.results}: no trained tokenizer to report on")
    markdown = _output(args, "tokenizer", "md")
    write_tokenizer_report(args.results, {corpus: args.special_tokens for corpus in corpora}, markdown,
                           _output(args, "tokenizer", "json"), section_from(args, EncodeSettings))
    print(markdown)


def run_report_accounting(args: argparse.Namespace) -> None:
    from scratchlm.reports.accounting import write_accounting_report

    paths = [_output(args, "accounting", kind) for kind in ("md", "json", "png")]
    report = write_accounting_report(*paths, section_from(args, AccountingSettings))
    print(f"wrote {', '.join(paths)} (GPT-2 XL training: {report['training_time']['days']:,.0f} days)")


def run_report_profile(args: argparse.Namespace) -> None:
    from scratchlm.reports.profile import write_profile_report

    markdown, plot = _output(args, "profile", "md"), _output(args, "profile", "png")
    records = write_profile_report(args.results, markdown, plot)
    print(f"wrote {markdown} and {plot} ({len(records)} jobs)")


def run_report_training(args: argparse.Namespace) -> None:
    from scratchlm.reports.training_report import find_runs, write_training_report

    run_dirs = args.runs or find_runs(Layout(args.results).runs_dir())
    if not run_dirs:
        raise FileNotFoundError(f"no finished runs under {Layout(args.results).runs_dir()} (no */summary.json)")
    markdown, plot = _output(args, "training", "md"), _output(args, "training", "png")
    runs = write_training_report(run_dirs, markdown, plot)
    print(f"wrote {markdown} and {plot} ({len(runs)} runs)")


def run_report_experiment(args: argparse.Namespace) -> None:
    from scratchlm.reports.comparison import experiment_report_runs, write_experiment_report

    project, layout = project_and_overrides(args)[0], Layout(args.results)
    if args.experiment not in project.experiments:
        raise ValueError(f"{project.source}: no experiment {args.experiment!r} under `experiments:` "
                         f"(configured: {', '.join(project.experiments) or 'none'})")
    runs = experiment_report_runs(project, args.experiment, layout)
    data = write_experiment_report(args.experiment, runs, project.experiments[args.experiment].columns(),
                                   layout.experiment_files(args.experiment))
    print(f"wrote {layout.experiment_files(args.experiment)['markdown']} ({len(data['runs'])} runs, "
          f"best: {data['best']})")


def run_report_index(args: argparse.Namespace) -> None:
    from scratchlm.reports.index import write_index

    markdown = args.markdown or Layout(args.results).index()
    write_index(args.results, markdown)
    print(f"wrote {markdown}")
