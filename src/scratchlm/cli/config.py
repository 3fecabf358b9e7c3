"""``scratchlm config show [NAME]``: the fully resolved settings, and where each value came from."""

from __future__ import annotations

import argparse

from scratchlm.cli.common import Subparsers, add_command, add_group, add_project_arguments, project_and_overrides


def register(commands: Subparsers) -> None:
    """``config show``."""
    kinds = add_group(commands, "config", "the pipeline's settings")
    parser = add_command(kinds, "show", run_config_show, "print the resolved settings as YAML, each value with "
                         "where it came from (default, training, runs.RUN, --settings FILE, --set) and what it means",
                         command="config show")
    parser.add_argument("names", nargs="*", metavar="RUN|CORPUS",
                        help="runs and corpora to show (default: the whole configuration)")
    add_project_arguments(parser)


def run_config_show(args: argparse.Namespace) -> None:
    from scratchlm.settings.show import show_settings

    project, overrides = project_and_overrides(args)
    print(show_settings(project, args.names, overrides), end="")
