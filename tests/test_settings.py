"""The typed settings model: layers, values as users write them, one-line errors, `config show`,
and every default written once."""

from __future__ import annotations

import ast
import copy

import pytest
import yaml

from scratchlm.cli import main
from scratchlm.settings import (
    CorpusSettings,
    Layer,
    RunSettings,
    SettingsError,
    TrainingSettings,
    load_project,
    load_project_file,
    override_layers,
    resolve_run,
)
from scratchlm.settings.base import Section
from scratchlm.settings.loading import flatten, merge_layers
from scratchlm.settings.show import show_settings

CORPUS = {"generator": {}, "vocab_size": 512}
PROJECT = {"corpora": {"c": CORPUS, "d": CORPUS},
           "training": {"batch_size": 8, "optimizer": {"lr": 0.5}},
           "runs": {"a": {"corpus": "c", "optimizer": {"weight_decay": 0.0}}, "b": {"corpus": "d"}}}


def project(**changes) -> dict:
    """PROJECT with ``changes`` (section -> value) replacing whole sections."""
    return {**copy.deepcopy(PROJECT), **changes}


def test_runs_deep_merge_onto_training_and_overrides(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("model: {d_ff: 64}\noptimizer: {lr: 0.2}\n")
    settings = resolve_run(load_project(PROJECT), "a", override_layers([extra], ["optimizer.lr=3e-4"]))
    defaults = TrainingSettings().to_dict()
    assert settings.batch_size == 8
    assert settings.to_dict()["optimizer"] == {**defaults["optimizer"], "lr": 3e-4, "weight_decay": 0.0}
    assert settings.model.d_ff == 64 and settings.model.d_model == defaults["model"]["d_model"]


@pytest.mark.parametrize("run, message", [
    ({"optimizer": {"lr_max": 1.0}}, "config.yaml: runs.a.optimizer.lr_max: unknown setting; allowed here: lr, betas"),
    ({"batch": 3}, "runs.a.batch: unknown setting; allowed here: corpus, model, optimizer"),
    ({"batch_size": "big"}, "runs.a.batch_size: Input should be a valid integer"),
    ({"batch_size": 0}, "runs.a.batch_size: Input should be greater than 0, got 0"),
    ({"batch_size": True}, "runs.a.batch_size: expected an integer, got true"),
    ({"model": 3}, "runs.a.model: Input should be a valid dictionary or instance of ModelOptions, got 3"),
    ({"optimizer": {"lr": -1e-3}}, "runs.a.optimizer.lr: Input should be greater than 0, got -0.001"),
    ({"optimizer": {"lr": float("nan")}}, "runs.a.optimizer.lr: Input should be a finite number"),
    ({"optimizer": {"grad_clip": 0}}, "runs.a.optimizer.grad_clip: Input should be greater than 0"),
    ({"optimizer": {"betas": [0.9, 1.5]}}, "runs.a.optimizer: betas must be two numbers in [0, 1), got [0.9, 1.5]"),
    ({"model": {"context_length": 0}}, "runs.a.model.context_length: Input should be greater than 0"),
    ({"model": {"num_heads": 7}}, "runs.a.model: d_model=512 is not divisible by num_heads=7"),
    ({"model": {"norm": "layer"}}, "runs.a.model.norm: Input should be 'pre', 'post' or 'none', got 'layer'"),
    ({"device": "gpu"}, "runs.a.device: must be auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
    ({"compile": "maybe"}, "runs.a.compile: Input should be 'auto' or Input should be a valid boolean"),
    ({"devices": 3}, "config.yaml: runs.a: batch_size 8 is not divisible by nodes × devices × grad_accum_steps = 3"),
    ({"steps": None, "tokens": None}, "runs.a: set either `steps` or `tokens`"),
    ({"corpus": "nope"}, "runs.a.corpus: corpus 'nope' is not configured under `corpora:` (configured: c, d)"),
    ({"corpus": None}, "config.yaml: runs.a: the run names no corpus"),
])
def test_bad_run_settings_fail_in_one_line_naming_file_and_key(run, message):
    with pytest.raises(SettingsError) as error:
        load_project(project(runs={"a": {"corpus": "c", **run}}))
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("changes, message", [
    ({"trainng": {}}, "config.yaml: trainng: unknown setting; allowed here: targets, corpora, download, bpe"),
    ({"corpora": {}}, "config.yaml: corpora: Dictionary should have at least 1 item"),
    ({"corpora": {"c": {"vocab_size": 512}}}, "corpora.c: a corpus needs a `generator:` or `train:` and `valid:` "
                                              "sources (missing: train and valid)"),
    ({"corpora": {"c": {"train": {"url": "x"}, "vocab_size": 512}}}, "(missing: valid)"),
    ({"corpora": {"c": {**CORPUS, "vocab_size": 257, "special_tokens": ["<a>", "<b>"]}}},
     "corpora.c: vocab_size 257 is outside [258, 65536]"),
    ({"corpora": {"c": {**CORPUS, "vocab_size": 70000}}}, "vocab_size 70000 is outside [257, 65536]"),
    ({"corpora": {"c d": CORPUS}}, "config.yaml: corpora.c d: String should match pattern"),
    ({"training": {"optimizer": {"lr": "fast"}}}, "config.yaml: training.optimizer.lr: Input should be a valid number"),
    ({"targets": {"runs": ["zz"]}}, "config.yaml: targets.runs names 'zz', which is not configured under `runs:` "
                                    "(configured: a, b)"),
    ({"targets": {"corpora": ["zz"]}}, "targets.corpora names 'zz'"),
    ({"bpe": {"shard_mb": 0}}, "config.yaml: bpe.shard_mb: Input should be greater than 0"),
    ({"generation": {"settings": [{"temperature": 1, "top_p": 2}]}},
     "generation.settings.0.top_p: Input should be less than or equal to 1, got 2"),
])
def test_bad_project_settings_fail_in_one_line(changes, message):
    with pytest.raises(SettingsError) as error:
        load_project(project(**changes))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_overrides_are_named_in_errors(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("optimizer: {lr: 0}\n")
    loaded = load_project(PROJECT)
    with pytest.raises(SettingsError, match=f"^{extra}: optimizer.lr: Input should be greater than 0"):
        resolve_run(loaded, "a", override_layers([extra]))
    with pytest.raises(SettingsError, match="^--set: model.num_layers: Input should be greater than 0, got -1"):
        resolve_run(loaded, "a", override_layers(assignments=["model.num_layers=-1"]))
    with pytest.raises(SettingsError, match="--set expects KEY=VALUE"):
        override_layers(assignments=["optimizer.lr"])
    with pytest.raises(SettingsError, match="unknown run 'nope'; runs configured under `runs:` in config.yaml: a, b"):
        resolve_run(loaded, "nope")


def test_values_are_read_as_users_write_them():
    """YAML 1.1 reads 3e-3 as a string, and `snakemake --config` passes every nested value as one."""
    run = {"corpus": "c", "optimizer": {"lr": "3e-3", "grad_clip": "null", "betas": ["0.8", "0.9"]},
           "steps": "1e3", "tokens": 3.2768e8, "hf_export": "true", "model": {"d_ff": "None"}}
    settings = resolve_run(load_project(project(runs={"a": run})), "a")
    assert settings.optimizer.lr == 3e-3 and settings.optimizer.grad_clip is None
    assert settings.optimizer.betas == [0.8, 0.9] and settings.model.d_ff is None
    assert settings.steps == 1000 and settings.tokens == 327_680_000 and settings.hf_export is True
    assert isinstance(settings.steps, int) and isinstance(settings.tokens, int)


def test_project_config_runs(project_root):
    """config.yaml's runs resolve: ts-base is 327.68M tokens in 10K steps of the CS336 base model."""
    loaded = load_project_file(project_root / "config.yaml")
    steps = {run: resolve_run(loaded, run).total_steps for run in loaded.runs}
    assert steps["ts-base"] == 10_000 and steps["ts-small"] == 5_000
    ts_base = resolve_run(loaded, "ts-base")
    architecture = {**ts_base.model.model_dump(), "vocab_size": loaded.corpora["tinystories"].vocab_size}
    assert architecture.items() >= {"vocab_size": 10_000, "context_length": 256, "d_model": 512, "num_layers": 4,
                                    "num_heads": 16, "d_ff": 1344}.items()
    assert resolve_run(loaded, "demo").corpus == "demo"
    assert loaded.corpora["demo"].special_tokens == ["<|endoftext|>"]


def test_config_show_names_each_values_origin_and_loads_back(project_root, tmp_path):
    loaded = load_project_file(project_root / "config.yaml")
    text = show_settings(loaded, ["demo"], override_layers(assignments=["optimizer.lr=0.01"]))
    lines: dict[str, str] = {}
    for line in text.splitlines():  # the first line of each key (optimizer.lr comes before optimizer.muon.lr)
        lines.setdefault(line.split(":")[0].strip(), line)
    assert lines["lr"].endswith("# --set: peak learning rate of AdamW's parameters (the top of the schedule)")
    assert "# runs.demo: " in lines["batch_size"] and "# default: " in lines["weight_decay"]
    assert f"# {loaded.source}: " in lines["vocab_size"] and "# default: " in lines["special_tokens"]
    assert "ts-base" not in text and "\ndownload:" not in text  # only the named run and its corpus
    # An experiment: its runs and their corpus; not the run `demo`, which was shown because it shares
    # its name with the corpus.
    runs = yaml.safe_load(show_settings(loaded, ["demo-lr"]))["runs"]
    assert set(runs) == {f"demo-lr/lr={lr}/seed={seed}" for lr in ("3e-3", "1e-2", "3") for seed in (0, 1)}
    whole = show_settings(loaded)
    again = load_project(yaml.safe_load(whole))
    for run in loaded.runs:
        assert resolve_run(again, run) == resolve_run(loaded, run)
    assert again.corpora == loaded.corpora and again.generation == loaded.generation


def test_config_show_command(project_root, capsys):
    assert main(["config", "show", "ts-base", "--config", str(project_root / "config.yaml")]) == 0
    out = capsys.readouterr().out
    assert "tokens: 327680000  # runs.ts-base: " in out and "vocab_size: 10000  # " in out
    assert main(["config", "show", "nope", "--config", str(project_root / "config.yaml")]) == 1
    assert "error: " in capsys.readouterr().err


# ------------------------------------------------------------------------------------ one home per fact


def _defaults(section: type[Section], prefix: str = "") -> dict[str, object]:
    """Every field default of ``section`` and its sub-sections, by dotted path."""
    found = {}
    for name, info in section.model_fields.items():
        default = info.get_default(call_default_factory=True)
        if isinstance(default, Section):
            found |= _defaults(type(default), f"{prefix}{name}.")
        elif not info.is_required():
            found[f"{prefix}{name}"] = default
    return found


def test_cli_options_take_no_literal_defaults(project_root):
    """A CLI default is a settings field's (add_setting) or a named constant, never a second literal."""
    literal = []
    for path in sorted((project_root / "src/scratchlm/cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
                for keyword in node.keywords:
                    if keyword.arg == "default" and isinstance(keyword.value, ast.Constant) \
                            and keyword.value.value is not None:
                        literal.append(f"{path.name}:{node.lineno} {keyword.value.value!r}")
    assert not literal, f"literal CLI defaults (take them from scratchlm.settings): {literal}"


def _setting_defaults() -> dict[str, set[str]]:
    """Field name -> the reprs of its defaults, over every settings section."""
    from scratchlm.settings import architecture, project as sections, run

    found: dict[str, set[str]] = {}
    for module in (architecture, sections, run):
        for cls in vars(module).values():
            if isinstance(cls, type) and issubclass(cls, Section) and cls is not Section:
                for name, info in cls.model_fields.items():
                    if not info.is_required() and info.default is not None:
                        found.setdefault(name, set()).add(repr(info.get_default(call_default_factory=True)))
    return found


def test_functions_repeat_no_setting_default(project_root):
    """A parameter named like a setting takes its default from the model (default_of), not a literal copy."""
    defaults, repeated = _setting_defaults(), []
    for path in sorted((project_root / "src/scratchlm").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                positional = node.args.posonlyargs + node.args.args
                pairs = [*zip(positional[len(positional) - len(node.args.defaults):], node.args.defaults),
                         *zip(node.args.kwonlyargs, node.args.kw_defaults)]
                repeated += [f"{path.name}:{node.lineno} {node.name}({arg.arg}={default.value!r})"
                             for arg, default in pairs if isinstance(default, ast.Constant)
                             and repr(default.value) in defaults.get(arg.arg, ())]
    assert len(defaults) > 50 and not repeated, repeated


def test_no_hand_written_schema_repeats_defaults(project_root):
    repeated = [str(path) for path in (project_root / "workflow").rglob("*")
                if path.is_file() and "default:" in path.read_text(errors="replace")]
    assert not repeated


@pytest.mark.parametrize("config", ["config.yaml", ".test/config.yaml"])
def test_configs_state_no_default(project_root, config):
    """config.yaml holds what a user changes: no value equal to its default (the model has those)."""
    data = yaml.safe_load((project_root / config).read_text())
    training = _defaults(RunSettings)
    sections = {"training": training, **{f"runs.{run}": training for run in data.get("runs", {})},
                **{f"corpora.{name}": _defaults(CorpusSettings) for name in data["corpora"]}}
    from scratchlm.settings import ProjectSettings

    for name, info in ProjectSettings.model_fields.items():
        default = info.get_default(call_default_factory=True)
        if isinstance(default, Section) and name != "training":
            sections[name] = _defaults(type(default))
    restated = []
    for section, defaults in sections.items():
        values = data
        for key in section.split("."):
            values = (values or {}).get(key, {})
        for key, value in flatten(values or {}).items():
            if key in defaults and defaults[key] == value:
                restated.append(f"{section}.{key}: {value!r}")
    assert not restated, f"{config} restates defaults: {restated}"


def test_layers_name_where_values_came_from():
    layer = Layer("runs.a", {"optimizer": {"lr": 1}}, "config.yaml", "runs.a")
    assert layer.has(("optimizer", "lr")) and not layer.has(("optimizer", "eps"))
    assert layer.where(("optimizer", "lr")) == "config.yaml: runs.a.optimizer.lr"


def test_errors_name_the_config_file_that_set_the_value():
    """Snakemake merges config.yaml, --configfile files and --config: the error names the right one."""
    base, extra = project(), {"runs": {"b": {"corpus": "d", "optimizer": {"eps": -1}}}}
    merged = merge_layers([Layer("config.yaml", base, "config.yaml"), Layer("extra.yaml", extra, "extra.yaml")])
    sources = [Layer("config.yaml", base, "config.yaml"), Layer("extra.yaml", extra, "extra.yaml")]
    with pytest.raises(SettingsError, match=r"^extra.yaml: runs.b.optimizer.eps: Input should be greater than 0"):
        load_project(merged, source=sources)
    with pytest.raises(SettingsError, match=r"^--config: targets.runs names 'zz'"):
        load_project({**base, "targets": {"runs": ["zz"]}}, source=[*sources, Layer("--config", {"targets": {}},
                                                                                     "--config")])


def test_every_setting_has_a_one_line_description():
    """`config show` and the CLI's --help print them; a setting without one is undocumented."""
    from scratchlm.settings import architecture, experiments, project as sections, run

    missing = [f"{cls.__name__}.{name}" for module in (architecture, experiments, sections, run)
               for cls in vars(module).values() if isinstance(cls, type) and issubclass(cls, Section)
               for name, info in cls.model_fields.items() if not info.description or "\n" in info.description]
    assert not missing
