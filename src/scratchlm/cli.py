"""The ``scratchlm`` command: one subcommand per pipeline stage, runnable without Snakemake.

Each subcommand lives in the module that implements the stage, which provides
``add_arguments(parser)`` and ``run_cli(args)``; modules are imported only when their
command is used, so ``scratchlm download`` does not pay for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "download": ("scratchlm.data.download", "download (or copy) a corpus file, resumable, .gz aware"),
    "demo-corpus": ("scratchlm.data.demo", "generate the offline demo corpus (synthetic stories)"),
    "pretokenize": ("scratchlm.tokenizer.pretokenize", "count pre-tokens of one chunk of a corpus into a shard"),
    "train-bpe": ("scratchlm.tokenizer.training", "train a byte-level BPE tokenizer"),
    "encode": ("scratchlm.tokenizer.encode", "encode a corpus into a uint16 .npy array"),
    "train": ("scratchlm.training.loop", "train a Transformer LM run from config.yaml"),
    "generate": ("scratchlm.generation", "sample text from a trained run"),
    "report": ("scratchlm.reports", "write the reports (tokenizer, accounting, profile, runs, index)"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scratchlm",
        description="BPE tokenizer and Transformer LM from scratch. Each command is one pipeline stage.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _version() -> str:
    from scratchlm import __version__

    return __version__


def build_command_parser(name: str) -> tuple[argparse.ArgumentParser, object]:
    """The full parser of one subcommand and the module that runs it."""
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(
        prog=f"scratchlm {name}", description=help_text, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    module.add_arguments(parser)
    return parser, module


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scratchlm`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        _top_parser().parse_args(argv or ["--help"])
        return 2
    from scratchlm.pipeline import USER_ERRORS, configure_logging, describe_error

    parser, module = build_command_parser(argv[0])
    args = parser.parse_args(argv[1:])
    configure_logging()
    try:
        result = module.run_cli(args)
    except USER_ERRORS as error:  # one clear line, no traceback
        print(f"scratchlm {argv[0]}: error: {describe_error(error)}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
