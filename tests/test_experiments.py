"""Experiments: expansion into named runs, checks at load, batch scaling, divergence in the report,
and `scratchlm compare`."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from scratchlm.cli import main
from scratchlm.settings import SettingsError, experiment_runs, load_project, resolve_run, run_names

PROJECT = {"corpora": {"c": {"generator": {}, "vocab_size": 512}},
           "runs": {"base": {"corpus": "c", "steps": 100, "batch_size": 32}}}


def project(**experiments) -> dict:
    return {**copy.deepcopy(PROJECT), "experiments": experiments}


def test_runs_are_named_by_their_values_in_a_stable_order():
    grid = {"optimizer.lr": ["3e-4", 1.0e-2], "model.norm": ["pre", "none"]}
    loaded = load_project(project(e={"base": "base", "grid": grid, "variants": {"a": {}, "b": {"seed": 5}},
                                     "seeds": [0, 1]}))
    names = list(experiment_runs(loaded))
    assert len(names) == 2 * 4 * 2 and len(set(names)) == len(names)
    assert names[:3] == ["e/a/norm=pre/lr=3e-4/seed=0", "e/a/norm=pre/lr=3e-4/seed=1", "e/a/norm=pre/lr=1e-2/seed=0"]
    reordered = load_project(project(e={"base": "base", "grid": dict(reversed(grid.items())),
                                        "variants": {"a": {}, "b": {"seed": 5}}, "seeds": [0, 1]}))
    assert sorted(experiment_runs(reordered)) == sorted(names)
    settings = resolve_run(loaded, "e/b/norm=none/lr=1e-2/seed=1")
    assert (settings.model.norm, settings.optimizer.lr, settings.seed, settings.steps) == ("none", 1e-2, 1, 100)
    assert run_names(loaded)[0] == "base" and experiment_runs(loaded)[names[0]].labels == {
        "variant": "a", "model.norm": "pre", "optimizer.lr": 3e-4, "seed": 0}


@pytest.mark.parametrize("experiment, message", [
    ({"base": "base", "grid": {"optimizer.lr_max": [1]}},
     "config.yaml: experiments.e.grid.optimizer.lr_max: unknown setting; allowed here: lr, betas"),
    ({"base": "base", "grid": {"optimizer.lr": ["fast"]}},
     "config.yaml: experiments.e.grid.optimizer.lr: Input should be a valid number, unable to parse string"),
    ({"base": "base", "grid": {"optimizer.lr": []}}, "config.yaml: experiments.e.grid.optimizer.lr: List should have "
                                                    "at least 1 item"),
    ({"base": "base", "variants": {"x": {"model": {"norm": "layer"}}}},
     "config.yaml: experiments.e.variants.x.model.norm: Input should be 'pre', 'post' or 'none'"),
    ({"base": "nope", "seeds": [0]}, "config.yaml: experiments.e.base: run 'nope' is not configured under `runs:`"),
    ({"base": "base", "gird": {}}, "config.yaml: experiments.e.gird: unknown setting; allowed here: base, grid"),
    ({"base": "base"}, "config.yaml: experiments.e: an experiment needs a `grid:`, `variants:` or `seeds:`"),
    ({"base": "base", "grid": {"optimizer.lr": [1e-3, 0.001]}}, "experiments.e.grid: two points are both named "
                                                                "'e/lr=1e-3'"),
    ({"base": "base", "grid": {"device": ["cpu", "gpu"]}}, "experiments.e.grid.device: must be auto, cpu"),
    ({"base": "base", "grid": {"init_from": ["runs/x"]}}, "config.yaml: experiments.e.grid: value 'runs/x' cannot be "
                                                          "part of a run name"),
])
def test_bad_experiments_fail_at_load_in_one_line(experiment, message):
    with pytest.raises(SettingsError) as error:
        load_project(project(e=experiment))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_unknown_target_experiment_is_named():
    with pytest.raises(SettingsError, match="targets.experiments names 'zz', which is not configured"):
        load_project({**project(e={"base": "base", "seeds": [0]}), "targets": {"experiments": ["zz"]}})


def test_batch_size_points_keep_the_token_budget_and_scale_the_learning_rate():
    loaded = load_project(project(e={"base": "base", "grid": {"batch_size": [8, 32, 128]},
                                     "batch_scaling": {"lr": "sqrt"}},
                                  f={"base": "base", "grid": {"batch_size": [8]}, "variants": {"own": {"steps": 7}},
                                     "batch_scaling": {"keep_tokens": False}}))
    small, same, big = (resolve_run(loaded, f"e/batch_size={size}") for size in (8, 32, 128))
    assert (small.steps, same.steps, big.steps) == (400, 100, 25)  # 100 steps x 32 sequences each time
    assert small.optimizer.lr == pytest.approx(1e-3 * 0.5) and big.optimizer.lr == pytest.approx(1e-3 * 2)
    assert resolve_run(loaded, "f/own/batch_size=8").steps == 7  # set by the point itself: kept


def test_compare_labels_each_run_and_shows_the_settings_that_differ(tmp_path, capsys):
    """Runs of one name trained into several folders were once all labelled `demo`."""
    from test_training_loop import TINY_RUN, configured_project

    data = {}
    for split in ("train", "valid"):
        import numpy as np

        data[split] = str(tmp_path / f"{split}.npy")
        np.save(data[split], (np.arange(3000) % 32).astype(np.uint16))
    config, results = configured_project(tmp_path, data, {**TINY_RUN, "steps": 4})
    folders = [tmp_path / "a", tmp_path / "b"]
    for folder, lr in zip(folders, ("1e-2", "3e-3")):
        assert main(["train", "tiny", "--config", str(config), "--results", str(results), "--run-dir", str(folder),
                     "--set", f"optimizer.lr={lr}"]) == 0
    capsys.readouterr()
    assert main(["compare", *map(str, folders), "--out", str(tmp_path / "cmp")]) == 0
    summary = json.loads((tmp_path / "cmp/summary.json").read_text())
    assert summary["columns"] == ["optimizer.lr"] and {r["run"] for r in summary["runs"]} == set(map(str, folders))
    report = (tmp_path / "cmp/report.md").read_text()
    assert "| run | optimizer.lr | final val loss |" in report and f"| {folders[0]} | 0.01 |" in report.replace(
        f"**{folders[0]}** ★", str(folders[0]))
    for plot in ("curves.png", "sweep.png"):
        assert (tmp_path / "cmp" / plot).read_bytes()[:4] == b"\x89PNG"


def test_a_comparison_of_runs_that_differ_in_many_settings_stays_readable(tmp_path, monkeypatch, capsys):
    """Three runs differing in six settings once gave a 3300 x 540 px sweep.png of five panels, two of
    them bookkeeping (checkpoint_interval, eval_batches), and curves whose legend listed every setting
    over the axes instead of the runs' names. Now: panels for the settings that change what a run
    learns, the others in a table of their own, runs labelled by name, a legend saying what the line
    styles are (seeds), figures of a normal size and no matplotlib warning."""
    import struct
    import warnings

    import numpy as np

    from scratchlm.reports import comparison_plots
    from test_training_loop import TINY_RUN, configured_project

    data = {}
    for split in ("train", "valid"):
        data[split] = str(tmp_path / f"{split}.npy")
        np.save(data[split], (np.arange(3000) % 32).astype(np.uint16))
    config, results = configured_project(tmp_path, data, {**TINY_RUN, "steps": 6, "eval_interval": 2})
    differing = {"run-a": ["optimizer.lr=3e-3", "model.d_model=16", "checkpoint_interval=2", "eval_batches=1",
                           "seed=0", "batch_size=4"],
                 "run-b": ["optimizer.lr=1e-2", "model.d_model=24", "checkpoint_interval=3", "eval_batches=2",
                           "seed=1", "batch_size=8"],
                 "run-c": ["optimizer.lr=3e-2", "model.d_model=32", "checkpoint_interval=6", "eval_batches=3",
                           "seed=0", "batch_size=4"]}
    for name, sets in differing.items():
        assert main(["train", "tiny", "--config", str(config), "--results", str(results),
                     "--run-dir", str(results / "runs" / name), *(f"--set={s}" for s in sets)]) == 0
    figures = {}
    save = comparison_plots.save_figure
    monkeypatch.setattr(comparison_plots, "save_figure",
                        lambda fig, out, **kw: figures.setdefault(Path(out).name, fig) and save(fig, out, **kw))
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["compare", *(str(results / "runs" / n) for n in differing), "--out", str(tmp_path / "c")]) == 0
    summary = json.loads((tmp_path / "c/summary.json").read_text())
    assert summary["columns"] == ["batch_size", "model.d_model", "optimizer.lr", "seed"]
    report = (tmp_path / "c/report.md").read_text()
    assert "## Other differences" in report and "| run | checkpoint_interval | eval_batches |" in report
    assert "## Over seeds" not in report  # every point is one run: the runs table says it all
    sweep = figures["sweep.png"]
    assert sorted(ax.get_xlabel() for ax in sweep.axes if ax.get_visible()) == ["batch_size", "model.d_model",
                                                                                 "optimizer.lr"]
    curves = figures["curves.png"]
    legend = curves.legends[0]
    assert sorted(text.get_text() for text in legend.get_texts()) == sorted(differing)
    assert "dashed = seed 1" in legend.get_title().get_text() and "solid = seed 0" in legend.get_title().get_text()
    for name in ("curves.png", "sweep.png"):
        width, height = struct.unpack(">II", (tmp_path / "c" / name).read_bytes()[16:24])
        assert width <= 1800 and height <= 1000, (name, width, height)


def test_config_yaml_experiments_expand(project_root):
    from scratchlm.settings import load_project_file

    loaded = load_project_file(project_root / "config.yaml")
    assert len(experiment_runs(loaded, "demo-lr")) == 6 and len(experiment_runs(loaded, "ts-ablate")) == 5
    silu, base = resolve_run(loaded, "ts-ablate/silu"), resolve_run(loaded, "ts-ablate/baseline")
    from scratchlm.nn.accounting import parameter_counts
    from scratchlm.settings import ModelConfig

    sizes = [parameter_counts(ModelConfig(**s.model.model_dump(), vocab_size=10_000))["total"] for s in (silu, base)]
    assert sizes[0] == sizes[1]  # SiLU at SwiGLU's parameter count
    batch_one = resolve_run(loaded, "ts-batch/batch_size=1")
    assert batch_one.total_steps * batch_one.tokens_per_step == resolve_run(loaded, "ts-base").tokens
    yaml.safe_dump(loaded.model_dump())  # plain data all the way down


def test_compare_names_what_it_cannot_find(tmp_path, capsys):
    """A missing folder or run name is named as given (a path was once joined to results/runs/)."""
    assert main(["compare", "nope", str(tmp_path / "gone"), "--results", str(tmp_path), "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip().endswith(
        f"nope, {tmp_path / 'gone'}: neither a run folder nor a run in {tmp_path / 'runs' / '*'}")
