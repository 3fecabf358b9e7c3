"""Options several commands share, spelled once: the results folder and which run a command means."""

from __future__ import annotations

import argparse
from pathlib import Path

from scratchlm.layout import RESULTS, Layout
from scratchlm.tokenizer.pretokenize import END_OF_TEXT


def add_results_argument(parser: argparse.ArgumentParser, what: str = "pipeline results folder") -> None:
    """``--results``: the folder the pipeline writes (its layout: ``scratchlm.layout``)."""
    parser.add_argument("--results", default=RESULTS, help=what)


def add_special_tokens_argument(parser: argparse.ArgumentParser, *, nargs: str = "*",
                                 what: str = "special tokens, in id order") -> None:
    """``--special-tokens`` (default: ``<|endoftext|>``); the first one separates documents."""
    parser.add_argument("--special-tokens", nargs=nargs, default=[END_OF_TEXT], metavar="TOKEN",
                        help=f"{what}; the first one separates documents")


def add_run_arguments(parser: argparse.ArgumentParser, *, what: str) -> None:
    """``RUN`` (a run under RESULTS/runs/) or ``--run-dir`` (a run folder anywhere), and ``--results``."""
    parser.add_argument("run", nargs="?", help=f"name of the run {what} (its folder: RESULTS/runs/RUN)")
    parser.add_argument("--run-dir", default=None, help="a run folder anywhere instead of RESULTS/runs/RUN")
    add_results_argument(parser)


def run_dir_of(args: argparse.Namespace) -> Path:
    """The run folder that ``add_run_arguments``' options name."""
    if args.run is None and args.run_dir is None:
        raise ValueError("name a run (RUN) or a run folder (--run-dir DIR)")
    return Path(args.run_dir or Layout(args.results).run_dir(args.run))
