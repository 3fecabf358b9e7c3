"""``scratchlm report KIND``: the reports the pipeline writes, one command each. Every report reads
``--results`` and writes its files where the pipeline puts them unless told otherwise."""

from __future__ import annotations

import argparse

from scratchlm.cli.common import add_results_argument, add_special_tokens_argument
from scratchlm.layout import Layout


def _add_outputs(parser: argparse.ArgumentParser, name: str, *, json: bool = False, plot: bool = False) -> None:
    """``--markdown`` (and ``--json``, ``--plot``): the report's files, by default RESULTS/reports/NAME.*"""
    add_results_argument(parser)
    default = Layout().report(name)
    parser.add_argument("--markdown", default=None, help=f"markdown report to write (default: {default}.md)")
    if json:
        parser.add_argument("--json", default=None, help=f"JSON report to write (default: {default}.json)")
    if plot:
        parser.add_argument("--plot", default=None, help=f"plot (PNG) to write (default: {default}.png)")


# file suffix -> the option that names the file
OUTPUT_OPTIONS = {"md": "markdown", "json": "json", "png": "plot"}


def _output(args: argparse.Namespace, name: str, suffix: str) -> str:
    """The path of one of the report's files: the option's value, or where the pipeline puts it."""
    return getattr(args, OUTPUT_OPTIONS[suffix]) or Layout(args.results).report(f"{name}.{suffix}")


def add_report_tokenizer_arguments(parser: argparse.ArgumentParser) -> None:
    _add_outputs(parser, "tokenizer", json=True)
    parser.add_argument("--corpora", nargs="+", metavar="NAME",
                        help="corpora whose tokenizers to report (default: every one under RESULTS)")
    add_special_tokens_argument(parser, nargs="+", what="special tokens of every corpus")
    parser.add_argument("--documents", type=int, default=10, help="documents sampled per corpus")
    parser.add_argument("--throughput-mb", type=float, default=4.0, help="MiB encoded to measure throughput")
    parser.add_argument("--workers", type=int, default=16, help="processes assumed in the Pile projection")
    parser.add_argument("--seed", type=int, default=0, help="seed of the document sample")


def run_report_tokenizer(args: argparse.Namespace) -> None:
    from scratchlm.reports.tokenizer_report import write_tokenizer_report

    corpora = args.corpora or Layout.corpora_with(Layout(args.results).vocab_pkl)
    if not corpora:
        raise FileNotFoundError(f"{args.results}: no trained tokenizer to report on")
    markdown = _output(args, "tokenizer", "md")
    write_tokenizer_report(args.results, {corpus: args.special_tokens for corpus in corpora}, markdown,
                           _output(args, "tokenizer", "json"), documents=args.documents,
                           throughput_mb=args.throughput_mb, workers=args.workers, seed=args.seed)
    print(markdown)


def add_report_accounting_arguments(parser: argparse.ArgumentParser) -> None:
    from scratchlm.nn.accounting import MEMORY_BUDGET_BYTES
    from scratchlm.reports.accounting import A100_FP32_PEAK_FLOPS

    _add_outputs(parser, "accounting", json=True, plot=True)
    parser.add_argument("--steps", type=int, default=400_000, help="training steps of the training-time estimate")
    parser.add_argument("--batch-size", type=int, default=1024, help="batch size of the training-time estimate")
    parser.add_argument("--peak-tflops", type=float, default=A100_FP32_PEAK_FLOPS / 1e12,
                        help="device peak in TFLOP/s (A100 float32 by default)")
    parser.add_argument("--mfu", type=float, default=0.5, help="model FLOPs utilisation assumed for training time")
    parser.add_argument("--memory-gb", type=float, default=MEMORY_BUDGET_BYTES / 1e9,
                        help="device memory (decimal GB) for the largest batch")


def run_report_accounting(args: argparse.Namespace) -> None:
    from scratchlm.reports.accounting import write_accounting_report

    if not 0 < args.mfu <= 1:
        raise ValueError(f"--mfu must be in (0, 1], got {args.mfu}")
    paths = [_output(args, "accounting", kind) for kind in ("md", "json", "png")]
    report = write_accounting_report(*paths, steps=args.steps, batch_size=args.batch_size,
                                     peak_flops=args.peak_tflops * 1e12, mfu=args.mfu,
                                     budget_bytes=int(args.memory_gb * 1e9))
    print(f"wrote {', '.join(paths)} (GPT-2 XL training: {report['training_time']['days']:,.0f} days)")


def add_report_profile_arguments(parser: argparse.ArgumentParser) -> None:
    _add_outputs(parser, "profile", plot=True)
    parser.add_argument("--exclude", nargs="*", default=["profile_report", "index"],
                        help="rules left out (those that run after this report)")


def run_report_profile(args: argparse.Namespace) -> None:
    from scratchlm.reports.profile import write_profile_report

    markdown, plot = _output(args, "profile", "md"), _output(args, "profile", "png")
    records = write_profile_report(args.results, markdown, plot, exclude_rules=tuple(args.exclude))
    print(f"wrote {markdown} and {plot} ({len(records)} jobs)")


def add_report_training_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="*", help="run folders (default: every finished run under RESULTS/runs)")
    _add_outputs(parser, "training", plot=True)


def run_report_training(args: argparse.Namespace) -> None:
    from scratchlm.reports.training_report import find_runs, write_training_report

    run_dirs = args.runs or find_runs(Layout(args.results).runs_dir())
    if not run_dirs:
        raise FileNotFoundError(f"no finished runs under {Layout(args.results).runs_dir()} (no */summary.json)")
    markdown, plot = _output(args, "training", "md"), _output(args, "training", "png")
    runs = write_training_report(run_dirs, markdown, plot)
    print(f"wrote {markdown} and {plot} ({len(runs)} runs)")


def add_report_index_arguments(parser: argparse.ArgumentParser) -> None:
    add_results_argument(parser, "results folder to index")
    parser.add_argument("--markdown", default=None, help=f"index page to write (default: {Layout().index()})")


def run_report_index(args: argparse.Namespace) -> None:
    from scratchlm.reports.index import write_index

    markdown = args.markdown or Layout(args.results).index()
    write_index(args.results, markdown)
    print(f"wrote {markdown}")
