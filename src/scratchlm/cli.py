"""The ``scratchlm`` command: one subcommand per pipeline stage, runnable without Snakemake.

Each subcommand lives in the module that implements the stage, which provides
``add_arguments(parser)`` and ``run_cli(args)`` (``add_NAME_arguments``/``run_NAME_cli`` for a
``module:NAME`` entry, when a module has several commands); modules are imported only when their
command is used, so ``scratchlm download`` does not pay for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Sequence

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
    "export": ("scratchlm.hf:export", "export a finished run as a Hugging Face Llama model folder"),
    "import-hf": ("scratchlm.hf:import", "import a Hugging Face Llama model folder as a run folder"),
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


def build_command_parser(name: str) -> tuple[argparse.ArgumentParser, Callable[[argparse.Namespace], int]]:
    """The full parser of one subcommand and the function that runs it."""
    target, help_text = COMMANDS[name]
    module_name, _, part = target.partition(":")
    module = importlib.import_module(module_name)
    infix = f"{part}_" if part else ""
    parser = argparse.ArgumentParser(
        prog=f"scratchlm {name}", description=help_text, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    getattr(module, f"add_{infix}arguments")(parser)
    return parser, getattr(module, f"run_{infix}cli")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scratchlm`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        _top_parser().parse_args(argv or ["--help"])
        return 2
    from scratchlm.pipeline import USER_ERRORS, configure_logging, describe_error

    parser, run = build_command_parser(argv[0])
    args = parser.parse_args(argv[1:])
    configure_logging()
    try:
        result = run(args)
    except USER_ERRORS as error:  # one clear line, no traceback
        print(f"scratchlm {argv[0]}: error: {describe_error(error)}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
