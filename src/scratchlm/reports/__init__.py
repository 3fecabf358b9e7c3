"""Human-readable reports of the pipeline: ``scratchlm report KIND`` writes one of them.

Each kind lives in its own module with ``add_arguments(parser)`` and ``run_cli(args)``;
modules are imported only when their kind is used (accounting needs torch, profile does not).
"""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path

# kind -> (module, one-line help)
KINDS: dict[str, tuple[str, str]] = {
    "tokenizer": ("scratchlm.reports.tokenizer_report", "tokenizer report: compression, vocabulary, throughput"),
    "accounting": ("scratchlm.reports.accounting", "parameters, FLOPs and memory of model configurations"),
    "profile": ("scratchlm.reports.profile", "wall time, CPU time and peak RSS of every pipeline stage"),
    "training": ("scratchlm.reports.training_report", "validation loss, throughput and MFU of every run"),
    "index": ("scratchlm.reports.index", "results/index.md linking every report, run and sample"),
}


def relative_link(target: str | os.PathLike, document: str | os.PathLike) -> str:
    """Path of ``target`` relative to the folder of ``document``, with / separators, for markdown links.

    >>> relative_link("results/runs/demo/curves.png", "results/reports/training.md")
    '../runs/demo/curves.png'
    """
    return Path(os.path.relpath(Path(target).resolve(), Path(document).resolve().parent)).as_posix()


def markdown_table(header: list[str], rows: list[list[object]]) -> list[str]:
    """Lines of a markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One subcommand per report kind, each with its own options."""
    sub = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    for kind, (module_name, help_text) in KINDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:  # a broken report module must fail loudly
                raise
            continue  # a report module that is not part of this checkout (yet)
        kind_parser = sub.add_parser(kind, help=help_text, description=help_text,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module.add_arguments(kind_parser)
        kind_parser.set_defaults(report_module=module)


def run_cli(args: argparse.Namespace) -> int | None:
    return args.report_module.run_cli(args)
