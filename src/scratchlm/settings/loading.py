"""Reading the configuration: config.yaml into a checked ``ProjectSettings``, and a run's settings
resolved in layers, each deep-merged onto the ones before it::

    defaults <- config.yaml `training:` <- config.yaml `runs: NAME` <- --settings FILE ... <- --set KEY=VALUE ...

Every value is checked by the typed model (``scratchlm.settings``); an error is one line that
names the layer the bad value came from (the file, or ``--set``) and its key path.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import dpath
import yaml
from pydantic import PrivateAttr, ValidationError

from scratchlm.layout import RunFiles
from scratchlm.settings.errors import SettingsError, describe
from scratchlm.settings.experiments import BatchScaling, Point, experiment_points
from scratchlm.settings.project import ProjectSettings
from scratchlm.settings.run import RunSettings

PROJECT_FILE = "config.yaml"


@dataclass(frozen=True)
class Layer:
    """Settings from one place: ``origin`` names it in messages (a file, ``--set``), ``prefix`` is the
    key path of the values inside it (``runs.demo``), ``name`` is how ``config show`` labels them."""

    name: str
    values: dict
    origin: str
    prefix: str = ""

    def where(self, path: Sequence[str | int]) -> str:
        """``origin: prefix.key.path``, the place of one value of this layer."""
        keys = ".".join(str(part) for part in (*([self.prefix] if self.prefix else []), *path))
        return f"{self.origin}: {keys}" if keys else self.origin

    def has(self, path: Sequence[str | int]) -> bool:
        """Whether this layer sets the value at ``path``."""
        try:
            dpath.get(self.values, [str(part) for part in path])
        except (KeyError, ValueError):
            return False
        return True


class Project(ProjectSettings):
    """ProjectSettings that remember the files (or ``--config``) they were read from, for messages."""

    _sources: tuple[Layer, ...] = PrivateAttr((Layer(PROJECT_FILE, {}, PROJECT_FILE),))
    _experiment_runs: dict[str, ExperimentRun] | None = PrivateAttr(None)

    @property
    def source(self) -> str:
        """Where the settings were read from (the files, in order)."""
        return ", ".join(dict.fromkeys(layer.origin for layer in self._sources))

    def source_of(self, *path: str) -> str:
        """The file (or ``--config``) that set the value at ``path``; all of them if none did."""
        layer = last_setter(self._sources, path)
        return layer.origin if layer else self.source


def load_yaml(path: str | Path) -> dict:
    """A YAML mapping from ``path``, with the file name in any error."""
    path = Path(path)
    if not path.is_file():
        raise SettingsError(f"{path}: no such settings file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise SettingsError(f"{path}: not a UTF-8 text file, so not a YAML settings file") from None
    except yaml.YAMLError as error:
        raise SettingsError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load_project(data: dict, *, source: str | Sequence[Layer] = PROJECT_FILE) -> Project:
    """The checked configuration: every section, every run resolved, every target configured.

    ``source`` names where ``data`` came from: a file name, or the layers it was merged from (the
    Snakefile's config files and ``--config``), so that an error names the one that set the value.
    """
    sources = (Layer(source, data, source),) if isinstance(source, str) else tuple(source)
    try:
        project = Project.model_validate(data)
    except ValidationError as error:
        raise SettingsError(describe(error, ProjectSettings, lambda path: setter(sources, path).where(path))) from None
    project._sources = sources
    for run in project.runs:  # first, so that an error in a base run is blamed on it, not on an experiment
        resolve_run(project, run)
    for run in experiment_runs(project):
        resolve_run(project, run)
    for section in ("corpora", "runs", "experiments"):
        configured = getattr(project, section)
        for name in getattr(project.targets, section):
            if name not in configured:
                raise SettingsError(f"{project.source_of('targets', section)}: targets.{section} names {name!r}, "
                                    f"which is not configured under `{section}:` "
                                    f"(configured: {', '.join(sorted(configured)) or 'none'})")
    return project


def load_project_file(path: str | Path = PROJECT_FILE) -> Project:
    """``load_project`` of a YAML file."""
    return load_project(load_yaml(path), source=str(path))


def parse_assignment(text: str) -> dict:
    """``"optimizer.lr=3e-4"`` -> ``{"optimizer": {"lr": "3e-4"}}`` (the value is read as YAML; the
    model reads "3e-4" as the number it is).

    >>> parse_assignment("model.d_model=256"), parse_assignment("device=cpu")
    ({'model': {'d_model': 256}}, {'device': 'cpu'})
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SettingsError(f"--set expects KEY=VALUE (e.g. optimizer.lr=3e-4), got {text!r}")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise SettingsError(f"--set {key.strip()}: {raw!r} is not a YAML value") from None
    values: dict = {}
    dpath.new(values, key.strip(), value, separator=".")
    return values


def configfiles_dropped(argv: Sequence[str]) -> list[str]:
    """The files of every ``--configfile`` option of a Snakemake command line but the last: Snakemake
    reads only the last one's.

    >>> configfiles_dropped(["snakemake", "--configfile", "a.yaml", "b.yaml", "-n", "--configfile=c.yaml"])
    ['a.yaml', 'b.yaml']
    """
    groups: list[list[str]] = []
    collecting = False  # after `--configfile` (nargs="+"): its files run to the next option
    for word in argv[1:]:
        option, equals, value = word.partition("=")
        if option in ("--configfile", "--configfiles"):
            groups.append([value] if equals else [])
            collecting = not equals
        elif word.startswith("-"):
            collecting = False
        elif collecting:
            groups[-1].append(word)
    return [path for group in groups[:-1] for path in group]


def override_layers(settings_files: Sequence[str | Path] = (), assignments: Sequence[str] = ()) -> list[Layer]:
    """The layers of ``--settings FILE`` and ``--set KEY=VALUE`` options, in order."""
    return ([Layer(str(path), load_yaml(path), str(path)) for path in settings_files]
            + [Layer("--set", parse_assignment(text), "--set") for text in assignments])


def run_names(project: Project) -> list[str]:
    """Every run: those under `runs:`, then those of every experiment."""
    return [*project.runs, *experiment_runs(project)]


class ExperimentRun(NamedTuple):
    """A run of an experiment: which experiment, which point, and the point's values as the run's
    settings read them (variant, grid keys, seed), for reports."""

    experiment: str
    point: Point
    labels: dict[str, Any]


def experiment_runs(project: Project, experiment: str | None = None) -> dict[str, ExperimentRun]:
    """The runs of every experiment (or of one), by name."""
    if project._experiment_runs is None:
        runs: dict[str, ExperimentRun] = {}
        for name, settings in project.experiments.items():
            for point in experiment_points(settings):
                values = _validated(point_layers(project, name, point)).to_dict()
                typed = {key: dpath.get(values, key, separator=".") for key, _ in point.values}
                try:
                    run = point.name(name, typed)
                except ValueError as error:
                    raise SettingsError(f"{project.source_of('experiments', name)}: experiments.{name}.grid: "
                                        f"{error}") from None
                if run in runs:
                    raise SettingsError(f"{project.source_of('experiments', name)}: experiments.{name}.grid: two "
                                        f"points are both named {run!r} (values that read the same)")
                runs[run] = ExperimentRun(name, point, {**point.labels(), **typed})
        project._experiment_runs = runs
    return {run: entry for run, entry in project._experiment_runs.items() if experiment in (None, entry.experiment)}


def run_layers(project: Project, run: str, overrides: Sequence[Layer] = ()) -> list[Layer]:
    """The layers of ``run``'s settings, defaults excluded."""
    if run in project.runs:
        return [*_base_layers(project, run), *overrides]
    experiments = experiment_runs(project)
    if run in experiments:
        return [*point_layers(project, experiments[run].experiment, experiments[run].point), *overrides]
    raise SettingsError(f"unknown run {run!r}; runs configured under `runs:` in {project.source}: "
                        f"{', '.join(sorted(project.runs)) or 'none'}"
                        + (f"; experiments: {', '.join(project.experiments)}" if project.experiments else ""))


def _base_layers(project: Project, run: str) -> list[Layer]:
    return [Layer("training", project.training.model_dump(exclude_unset=True), project.source_of("training"),
                  "training"),
            Layer(f"runs.{run}", project.runs[run] or {}, project.source_of("runs", run), f"runs.{run}")]


def point_layers(project: Project, experiment: str, point: Point) -> list[Layer]:
    """The layers of one experiment point: its base run's, its variant, grid values and seed, and the
    settings that follow its batch size (``batch_scaling``)."""
    settings, origin = project.experiments[experiment], project.source_of("experiments", experiment)
    if settings.base not in project.runs:
        raise SettingsError(f"{origin}: experiments.{experiment}.base: run {settings.base!r} is not configured "
                            f"under `runs:` (configured: {', '.join(sorted(project.runs)) or 'none'})")
    base = _base_layers(project, settings.base)
    layers = base + [Layer(f"experiments.{experiment}.{where}", values, origin, f"experiments.{experiment}.{where}")
                     for where, values in point.overrides(settings)]
    scaled = batch_scaled(settings.batch_scaling, base, layers)
    where = f"experiments.{experiment}.batch_scaling"
    return layers + ([Layer(where, scaled, origin, where)] if scaled else [])


def batch_scaled(scaling: BatchScaling, base: Sequence[Layer], layers: Sequence[Layer]) -> dict:
    """Settings that follow a point's batch size: steps that keep the base run's tokens, and the
    learning rate scaled with the batch (unless the point sets them itself)."""
    try:
        before, after = (RunSettings.model_validate(merge_layers(group)) for group in (base, layers))
    except ValidationError:
        return {}  # resolve_run reports the error, with its place
    if after.batch_size == before.batch_size:
        return {}
    own = merge_layers(layers[len(base):])
    ratio, scaled = after.batch_size / before.batch_size, {}
    if scaling.keep_tokens and after.steps is not None and "steps" not in own:
        scaled["steps"] = math.ceil(before.total_steps * before.tokens_per_step / after.tokens_per_step)
    if scaling.lr != "constant" and "lr" not in own.get("optimizer", {}):
        scaled["optimizer"] = {"lr": after.optimizer.lr * (ratio if scaling.lr == "linear" else math.sqrt(ratio))}
    return scaled


def flatten(values: dict, prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted key paths (the form of --set and of experiment grids).

    >>> flatten({"optimizer": {"lr": 0.1, "betas": [0.9, 0.95]}, "seed": 0})
    {'optimizer.lr': 0.1, 'optimizer.betas': [0.9, 0.95], 'seed': 0}
    """
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def merge_layers(layers: Sequence[Layer]) -> dict:
    """The layers' values deep-merged in order (a later mapping updates an earlier one key by key)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        dpath.merge(merged, copy.deepcopy(layer.values), flags=dpath.MergeType.REPLACE)
    return merged


def resolve_run(project: Project, run: str, overrides: Sequence[Layer] = ()) -> RunSettings:
    """The full, checked settings of ``run`` (``overrides``: ``override_layers``)."""
    layers = run_layers(project, run, overrides)
    settings = _validated(layers)
    try:
        project.corpus(settings.corpus)
    except ValueError as error:
        raise SettingsError(f"{setter(layers, ('corpus',)).where(('corpus',))}: {error}") from None
    if settings.init_from and not RunFiles(settings.init_from).meta.is_file():
        raise SettingsError(f"{setter(layers, ('init_from',)).where(('init_from',))}: {settings.init_from}: no "
                            f"trained model there (no {RunFiles('.').meta.name}); train that run or "
                            "`scratchlm import-hf` a model into it first")
    return settings


def _validated(layers: Sequence[Layer]) -> RunSettings:
    """The run settings the layers make, or a SettingsError naming the layer of the bad value."""
    try:
        return RunSettings.model_validate(merge_layers(layers))
    except ValidationError as error:
        raise SettingsError(describe(error, RunSettings, lambda path: setter(layers, path).where(path))) from None


def last_setter(layers: Sequence[Layer], path: Sequence[str | int]) -> Layer | None:
    """The last layer that sets ``path``, or the deepest value holding it; None if none does."""
    for depth in range(len(path), 0, -1):
        for layer in reversed(layers):
            if layer.has(path[:depth]):
                return layer
    return None


def setter(layers: Sequence[Layer], path: Sequence[str | int]) -> Layer:
    """``last_setter``, or else the last layer (a check across settings failed once it was applied)."""
    return last_setter(layers, path) or layers[-1]
