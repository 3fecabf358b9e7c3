"""The ``scratchlm`` command: one subcommand per pipeline stage, runnable without Snakemake.

Each module of this package declares its commands (``register``) with argparse subparsers; a
command runs the library function that the stage's workflow script runs, with the same settings
objects, and its option defaults come from those settings (``scratchlm.settings``). Heavy
libraries are imported only when a command runs, so ``scratchlm download`` does not pay for torch.
"""

from __future__ import annotations

import argparse
import sys
from typing import Iterator, Sequence

from scratchlm.cli import common, config, data, hf, reports, tokenizer, training


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``scratchlm`` and all its commands."""
    parser = argparse.ArgumentParser(
        prog="scratchlm", allow_abbrev=False,
        description="BPE tokenizer and Transformer LM from scratch. Each command is one pipeline stage.",
        epilog="`scratchlm COMMAND --help` shows a command's options.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for module in (data, tokenizer, training, hf, reports, config):
        module.register(commands)
    return parser


def _version() -> str:
    from scratchlm import __version__

    return __version__


def command_parsers(parser: argparse.ArgumentParser | None = None, prefix: str = "") -> Iterator[
        tuple[str, argparse.ArgumentParser]]:
    """Every runnable command (``"report tokenizer"``...) and its parser."""
    parser = parser or build_parser()
    for action in parser._subparsers._group_actions if parser._subparsers else ():
        for name, child in action.choices.items():
            if child._subparsers is None:
                yield f"{prefix}{name}", child
            else:
                yield from command_parsers(child, f"{prefix}{name} ")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scratchlm`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv or ["--help"])
    from scratchlm.pipeline import USER_ERRORS, configure_logging, describe_error

    configure_logging()
    try:
        result = args.handler(args)
    except USER_ERRORS as error:  # one clear line, no traceback
        print(f"scratchlm {args.command}: error: {describe_error(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # outputs are written atomically: nothing half-written is left
        print(f"scratchlm {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


__all__ = ["build_parser", "command_parsers", "common", "main"]

if __name__ == "__main__":
    sys.exit(main())
