"""The typed settings of the whole pipeline: one model (pydantic) holds every setting's name, type,
bounds, default and description, once. config.yaml, ``snakemake --config``, ``--settings`` files,
``--set`` and the CLI's option defaults are all read through it.

>>> project = load_project({"corpora": {"demo": {"generator": {}, "vocab_size": 512}},
...                         "runs": {"tiny": {"corpus": "demo", "optimizer": {"lr": "3e-3"}}}})
>>> resolve_run(project, "tiny").optimizer.lr
0.003
"""

from scratchlm.settings.architecture import ModelConfig, ModelOptions, default_d_ff
from scratchlm.settings.base import default_of
from scratchlm.settings.errors import SettingsError
from scratchlm.settings.loading import (
    PROJECT_FILE,
    Layer,
    Project,
    experiment_runs,
    load_project,
    load_project_file,
    load_yaml,
    override_layers,
    parse_assignment,
    resolve_run,
    run_names,
)
from scratchlm.settings.project import (
    END_OF_TEXT,
    AccountingSettings,
    BpeSettings,
    CorpusSettings,
    DownloadSettings,
    EncodeSettings,
    GenerationSettings,
    GeneratorSettings,
    ProjectSettings,
    SamplingSettings,
    SourceSettings,
)
from scratchlm.settings.run import (
    MuonSettings,
    OptimizerSettings,
    RunSettings,
    ScheduleSettings,
    TrainingSettings,
    WandbSettings,
)

__all__ = [
    "END_OF_TEXT", "PROJECT_FILE", "AccountingSettings", "BpeSettings", "CorpusSettings", "DownloadSettings",
    "EncodeSettings", "GenerationSettings", "GeneratorSettings", "Layer", "ModelConfig", "ModelOptions",
    "MuonSettings", "OptimizerSettings", "Project", "ProjectSettings", "RunSettings", "SamplingSettings",
    "ScheduleSettings", "SettingsError", "SourceSettings", "TrainingSettings", "WandbSettings", "default_d_ff",
    "default_of", "experiment_runs", "load_project", "load_project_file", "load_yaml", "override_layers",
    "parse_assignment", "resolve_run", "run_names",
]
