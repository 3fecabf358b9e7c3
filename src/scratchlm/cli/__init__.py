"""The ``scratchlm`` command: one subcommand per pipeline stage, runnable without Snakemake.

The one table of commands is :data:`COMMANDS`. Each command is a function pair in a module of this
package (``add_NAME_arguments(parser)`` and ``run_NAME(args)``, NAME being the command with ``_``
for ``-`` and spaces) that calls the library function the stage's workflow script calls. Modules
are imported only when their command is used, so ``scratchlm download`` does not pay for torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Sequence

# command -> (module of this package, one-line help). "report KIND" commands share the word `report`.
COMMANDS: dict[str, tuple[str, str]] = {
    "download": ("data", "download (or copy) a corpus file, resumable, .gz aware"),
    "demo-corpus": ("data", "generate the offline demo corpus (synthetic stories)"),
    "plan-shards": ("tokenizer", "cut a corpus file into shards at document boundaries (a plan.json)"),
    "pretokenize": ("tokenizer", "count the pre-tokens of one planned shard into a Parquet file"),
    "train-bpe": ("tokenizer", "train a byte-level BPE tokenizer from pre-token count shards"),
    "encode": ("tokenizer", "encode a corpus file into a uint16 .npy array (worker pool)"),
    "train": ("training", "train a Transformer LM run from config.yaml"),
    "generate": ("training", "sample text from a trained run"),
    "export": ("hf", "export a finished run as a Hugging Face Llama model folder"),
    "import-hf": ("hf", "import a Hugging Face Llama model folder as a run folder"),
    "report tokenizer": ("reports", "tokenizer report: compression, vocabulary, throughput"),
    "report accounting": ("reports", "parameters, FLOPs and memory of model configurations"),
    "report profile": ("reports", "wall time, CPU time and peak RSS of every pipeline stage"),
    "report training": ("reports", "validation loss, throughput and MFU of every run"),
    "report index": ("reports", "results/index.md linking every report, run and sample"),
}


def _top_parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {name:<18} {help_text}" for name, (_, help_text) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="scratchlm", usage="scratchlm [-h] [--version] COMMAND ...",
        description="BPE tokenizer and Transformer LM from scratch. Each command is one pipeline stage.",
        epilog=f"commands:\n{listing}\n\n`scratchlm COMMAND --help` shows a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("command", metavar="COMMAND", choices=sorted({name.split()[0] for name in COMMANDS}))
    return parser


def _version() -> str:
    from scratchlm import __version__

    return __version__


def build_command_parser(name: str) -> tuple[argparse.ArgumentParser, Callable[[argparse.Namespace], int | None]]:
    """The full parser of one command and the function that runs it."""
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(f"scratchlm.cli.{module_name}")
    function = name.replace("-", "_").replace(" ", "_")
    parser = argparse.ArgumentParser(
        prog=f"scratchlm {name}", description=help_text, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    getattr(module, f"add_{function}_arguments")(parser)
    return parser, getattr(module, f"run_{function}")


def _split_command(argv: list[str]) -> tuple[str | None, list[str]]:
    """The command named at the start of ``argv`` (one or two words) and the rest."""
    if argv and argv[0] in COMMANDS:
        return argv[0], argv[1:]
    if len(argv) > 1 and f"{argv[0]} {argv[1]}" in COMMANDS:
        return f"{argv[0]} {argv[1]}", argv[2:]
    return None, argv


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scratchlm`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command, rest = _split_command(argv)
    if command is None:
        parser = _top_parser()
        known = parser.parse_args(argv[:1] or ["--help"])  # --help, --version, or an error naming the choices
        kinds = [name for name in COMMANDS if name.startswith(f"{known.command} ")]
        parser.error(f"`{known.command}` needs one of: {', '.join(name.split()[1] for name in kinds)}")
    from scratchlm.pipeline import USER_ERRORS, configure_logging, describe_error

    parser, run = build_command_parser(command)
    args = parser.parse_args(rest)
    configure_logging()
    try:
        result = run(args)
    except USER_ERRORS as error:  # one clear line, no traceback
        print(f"scratchlm {command}: error: {describe_error(error)}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
