"""The resolved settings as YAML, every value commented with where it came from and what it means.

The output is itself a valid configuration: loaded back, it resolves every run to the same settings.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import yaml
from pydantic import BaseModel

from scratchlm.settings.errors import SettingsError
from scratchlm.settings.loading import Layer, Project, experiment_runs, resolve_run, run_layers, run_names

# origin(section, key, key path below the shown entry) -> where the value came from
Origin = Callable[[BaseModel, str, tuple[str, ...]], str]


def show_settings(project: Project, names: Sequence[str] = (), overrides: Sequence[Layer] = ()) -> str:
    """YAML of the whole configuration (``names`` empty) or of the named runs (with their corpora),
    experiments (with their runs) and corpora, resolved (defaults included; ``overrides`` apply to runs)."""
    runs = run_names(project)
    unknown = [name for name in names if name not in runs and name not in project.corpora
               and name not in project.experiments]
    if unknown:
        raise SettingsError(f"{project.source}: no run, experiment or corpus named {', '.join(map(repr, unknown))} "
                            f"(runs: {', '.join(runs) or 'none'}; corpora: {', '.join(sorted(project.corpora))})")
    chosen_runs = {name for name in names if name in runs} | {
        run for name in names if name in project.experiments for run in experiment_runs(project, name)}
    # By section: a run, a corpus and an experiment may share a name (the demo run and corpus do).
    chosen = {"runs": chosen_runs,
              "corpora": {name for name in names if name in project.corpora}
              | {resolve_run(project, run, overrides).corpus for run in chosen_runs},
              "experiments": {name for name in names if name in project.experiments}} if names else {}
    lines = [f"# resolved from {project.source}" + (" with overrides" if overrides else "")]
    for section, info in type(project).model_fields.items():
        lines += _section(project, section, info.description, chosen, overrides)
    return "\n".join(lines) + "\n"


def _section(project: Project, section: str, description: str | None, chosen: dict[str, set[str]],
             overrides: Sequence[Layer]) -> list[str]:
    """One top-level section: every entry of runs, experiments and corpora (or the chosen ones), the others
    whole; experiments' runs appear under `runs:` only when chosen (their names hold slashes)."""
    origin = _set_in(project.source)
    if section == "runs":
        runs = [run for run in run_names(project)
                if run in chosen.get("runs", ()) or (not chosen and run in project.runs)]
        return _entries(section, description, runs, lambda run: _run_lines(project, run, overrides))
    if section in ("corpora", "experiments"):
        entries = getattr(project, section)
        return _entries(section, description, [name for name in entries if not chosen or name in chosen[section]],
                        lambda name: _lines(entries[name], origin, (), 2))
    if chosen:
        return []
    return [f"{section}:  # {description}", *_lines(getattr(project, section), origin, (), 1)]


def _entries(section: str, description: str | None, names: list[str], body: Callable[[str], list[str]]) -> list[str]:
    if not names:
        return []
    lines = [f"{section}:  # {description}"]
    for name in names:
        lines += [f"  {_flow(name)}:", *body(name)]
    return lines


def _run_lines(project: Project, run: str, overrides: Sequence[Layer]) -> list[str]:
    layers = run_layers(project, run, overrides)

    def origin(_section: BaseModel, _key: str, path: tuple[str, ...]) -> str:
        return next((layer.name for layer in reversed(layers) if layer.has(path)), "default")

    return _lines(resolve_run(project, run, overrides), origin, (), 2)


def _set_in(source: str) -> Origin:
    """Origins of a section read from ``source``: values it sets, and defaults."""
    return lambda section, key, _path: source if key in section.model_fields_set else "default"


def _lines(section: BaseModel, origin: Origin, path: tuple[str, ...], depth: int) -> list[str]:
    """One line per value of ``section`` (nested sections indented), each with its comment."""
    pad, lines = "  " * depth, []
    for key, info in type(section).model_fields.items():
        value = getattr(section, key)
        if isinstance(value, BaseModel):
            lines += [f"{pad}{key}:  # {info.description}", *_lines(value, origin, (*path, key), depth + 1)]
        else:
            about = " ".join((info.description or "").split())  # one line, whatever the docstring's
            lines.append(f"{pad}{key}: {_flow(value)}  # {origin(section, key, (*path, key))}: {about}")
    return lines


def _flow(value: Any) -> str:
    """``value`` as one line of YAML.

    >>> _flow(0.003), _flow(""), _flow([0.9, 0.95]), _flow(None)
    ('0.003', "''", '[0.9, 0.95]', 'null')
    """
    plain = value.model_dump() if isinstance(value, BaseModel) else value
    if isinstance(plain, list):
        plain = [item.model_dump() if isinstance(item, BaseModel) else item for item in plain]
    text = yaml.safe_dump(plain, default_flow_style=True, width=2**31, allow_unicode=True, sort_keys=False)
    return text.removesuffix("\n").removesuffix("\n...").strip()
