"""Human-readable reports of the pipeline: ``scratchlm report KIND`` writes one of them.

Each kind lives in its own module with ``add_arguments(parser)`` and ``run_cli(args)``;
modules are imported only when their kind is used (accounting needs torch, profile does not).
Shared helpers for the markdown they write live here too.
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
    """The report kind, then that kind's own options (parsed by its module, imported only when used)."""
    kinds = "; ".join(f"{kind}: {help_text}" for kind, (_, help_text) in KINDS.items())
    parser.add_argument("kind", choices=KINDS, metavar="KIND", help=f"which report ({kinds})")
    parser.add_argument("options", nargs=argparse.REMAINDER,
                        help="options of that report; see `scratchlm report KIND --help`")


def kind_parser(kind: str) -> tuple[argparse.ArgumentParser, object]:
    """The parser of one report kind and the module that writes it."""
    module_name, help_text = KINDS[kind]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"scratchlm report {kind}", description=help_text,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    module.add_arguments(parser)
    return parser, module


def run_cli(args: argparse.Namespace) -> int | None:
    parser, module = kind_parser(args.kind)
    return module.run_cli(parser.parse_args(args.options))
