"""``scratchlm export`` and ``scratchlm import-hf``: runs to and from Hugging Face Llama folders."""

from __future__ import annotations

import argparse

from scratchlm.cli.common import Subparsers, add_command, add_run_arguments, run_dir_of


def register(commands: Subparsers) -> None:
    """``export`` and ``import-hf``."""
    parser = add_command(commands, "export", run_export, "export a finished run as a Hugging Face Llama model folder")
    add_run_arguments(parser, what="to export (finished)")
    parser.add_argument("--output", default=None, help="folder to write (default: the run's hf/)")

    parser = add_command(commands, "import-hf", run_import_hf,
                         "import a Hugging Face Llama model folder as a run folder")
    parser.add_argument("hf_dir", help="a LlamaForCausalLM folder (config.json, model.safetensors, tokenizer.json)")
    add_run_arguments(parser, what="to create (model.pt, model.json, vocab/merges pickles)")


def run_export(args: argparse.Namespace) -> None:
    from scratchlm.hf import export_run
    from scratchlm.layout import RunFiles

    run_dir = run_dir_of(args)
    print(export_run(run_dir, args.output or RunFiles(run_dir).hf))


def run_import_hf(args: argparse.Namespace) -> None:
    from scratchlm.hf import import_hf

    print(import_hf(args.hf_dir, run_dir_of(args)))
