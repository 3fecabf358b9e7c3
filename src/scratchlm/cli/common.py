"""What several commands share, written once: declaring a command, options whose default and help
come from a settings field, the results folder, and which run a command means."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from scratchlm.layout import RESULTS, Layout
from scratchlm.settings import PROJECT_FILE, CorpusSettings, Layer, Project, SettingsError
from scratchlm.settings.base import Section
from scratchlm.settings.errors import describe

Subparsers = Any  # argparse's private _SubParsersAction
# (settings section, field) -> the option that sets it, for messages.
SETTING_FLAGS: dict[tuple[type[Section], str], str] = {}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows each option's default, where it has one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


def add_command(commands: Subparsers, name: str, run: Callable[[argparse.Namespace], int | None],
                help_text: str, *, command: str | None = None) -> argparse.ArgumentParser:
    """A subcommand that runs ``run(args)``; options are never matched by prefix."""
    parser = commands.add_parser(name, help=help_text, description=help_text, allow_abbrev=False,
                                 formatter_class=HelpFormatter)
    parser.set_defaults(handler=run, command=command or name)
    return parser


def add_group(commands: Subparsers, name: str, help_text: str) -> Subparsers:
    """A command made of subcommands (``scratchlm report KIND``)."""
    parser = commands.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
    return parser.add_subparsers(title="kinds", metavar="KIND", required=True)


def add_setting(parser: argparse.ArgumentParser, section: type[Section], field: str, flag: str | None = None,
                **options: Any) -> None:
    """``--field`` (or ``flag``), whose default and help are the settings field's own."""
    info = section.model_fields[field]
    flag = flag or f"--{field.replace('_', '-')}"
    SETTING_FLAGS[section, field] = flag
    default = None if info.is_required() else info.get_default(call_default_factory=True)
    if isinstance(default, bool):
        options.setdefault("action", "store_true")
    elif info.annotation in (int, float):
        options.setdefault("type", info.annotation)
    parser.add_argument(flag, dest=field, default=default, help=info.description, **options)


def section_from(args: argparse.Namespace, section: type[Section], **values: Any) -> Any:
    """The settings ``section`` built from the options ``add_setting`` declared (and ``values``), checked."""
    given = {name: getattr(args, name) for name in section.model_fields if hasattr(args, name)}
    try:
        return section.model_validate({**given, **values})
    except ValidationError as error:
        raise SettingsError(describe(error, section, lambda path: SETTING_FLAGS.get(
            (section, str(path[0])), str(path[0])) if path else section.__name__)) from None


def add_project_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config`` (the pipeline's config file) and the run overrides ``--settings FILE`` and ``--set``."""
    parser.add_argument("--config", default=PROJECT_FILE, help="pipeline config with `corpora:`, `training:`, `runs:`")
    parser.add_argument("--settings", action="append", default=[], metavar="FILE",
                        help="YAML file of run settings merged on top of the run (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="assignments",
                        help="override one setting, e.g. --set optimizer.lr=3e-4 --set model.num_layers=2")


def project_and_overrides(args: argparse.Namespace) -> tuple[Project, list[Layer]]:
    """The project ``--config`` names, and the override layers of ``--settings`` and ``--set``."""
    from scratchlm.settings import load_project_file, override_layers

    return load_project_file(args.config), override_layers(args.settings, args.assignments)


def add_results_argument(parser: argparse.ArgumentParser, what: str = "pipeline results folder") -> None:
    """``--results``: the folder the pipeline writes (its layout: ``scratchlm.layout``)."""
    parser.add_argument("--results", default=RESULTS, help=what)


def add_special_tokens_argument(parser: argparse.ArgumentParser, *, nargs: str = "+") -> None:
    """``--special-tokens``, as a corpus's ``special_tokens``; the first one separates documents."""
    add_setting(parser, CorpusSettings, "special_tokens", nargs=nargs, metavar="TOKEN")


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
