"""The whole Snakemake pipeline end to end on a tiny configuration, plus its caching behaviour.

One module-scoped run of .test/config.yaml (demo corpus of ~250 KB, vocab 320, a two-layer model
trained for a few steps) backs all tests here; each then asserts on what that run left behind.
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import snakemake_command
from scratchlm.layout import Layout
from scratchlm.tokenizer import Tokenizer

pytestmark = [pytest.mark.slow, pytest.mark.pipeline]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TEST_CONFIG = PROJECT_ROOT / ".test" / "config.yaml"


def tiny_config() -> dict:
    """The checked-in test configuration, .test/config.yaml (the demo corpus scaled down, 12 steps)."""
    return yaml.safe_load(TEST_CONFIG.read_text())


def run_snakemake(workdir: Path, *args: str, timeout: int = 540) -> subprocess.CompletedProcess:
    """Run snakemake on the project's Snakefile in ``workdir`` with its config.yaml, on 2 cores."""
    return subprocess.run(snakemake_command(workdir, "--cores", "2", *args), capture_output=True, text=True,
                          timeout=timeout)


def snakemake(workdir: Path, *args: str) -> str:
    """``run_snakemake`` that must succeed; returns its combined output."""
    result = run_snakemake(workdir, *args)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    return output


def planned_rules(dry_run_output: str) -> set[str]:
    """Rule names in the 'Job stats' table of a dry run (empty when nothing is to be done)."""
    rules = set()
    in_table = False
    for line in dry_run_output.splitlines():
        if line.startswith("job") and "count" in line:
            in_table = True
        elif in_table and (match := re.match(r"^(\w+)\s+\d+\s*$", line)):
            if match.group(1) != "total":
                rules.add(match.group(1))
        elif in_table and not line.strip():
            in_table = False
    return rules


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pipeline")
    (path / "config.yaml").write_text(yaml.safe_dump(tiny_config()))
    snakemake(path)
    return path


def test_pipeline_builds_every_stage_output(workdir):
    results = workdir / "results"
    layout = Layout(str(results))
    vocab = pickle.loads((results / "demo_vocab.pkl").read_bytes())
    merges = pickle.loads((results / "demo_merges.pkl").read_bytes())
    assert len(vocab) == 320 and len(merges) == 320 - 256 - 1
    tokenizer = Tokenizer(vocab, merges, ["<|endoftext|>"])
    for split in ("train", "valid"):
        ids = np.load(layout.ids("demo", split), mmap_mode="r")
        assert ids.dtype == np.uint16 and ids.size > 1000 and int(ids.max()) < 320
        # The map over shards gives exactly the ids of encoding the whole text in one go.
        text = Path(layout.corpus_text("demo", split)).read_text(encoding="utf-8")
        assert ids.tolist() == tokenizer.encode(text)
    assert len(list((results / "benchmarks" / "encode_shard").iterdir())) >= 5
    run = results / "runs" / "tiny"
    for name in ("model.pt", "model.json", "metrics.jsonl", "summary.json", "config.json", "curves.png", "samples.md"):
        assert (run / name).stat().st_size > 0, name
    summary = json.loads((run / "summary.json").read_text())
    assert np.isfinite(summary["final_val_loss"])
    hf_config = json.loads((run / "hf" / "config.json").read_text())
    assert hf_config["architectures"] == ["LlamaForCausalLM"] and (run / "hf" / "model.safetensors").is_file()
    tokenizer_json = json.loads(Path(layout.hf_tokenizer("demo")).read_text())
    assert len(tokenizer_json["model"]["vocab"]) == 320
    for report in ("tokenizer.md", "accounting.md", "profile.md", "training.md"):
        assert (results / "reports" / report).stat().st_size > 0, report
    index = (results / "index.md").read_text()
    for link in ("reports/tokenizer.md", "reports/accounting.md", "reports/profile.md", "runs/tiny/samples.md"):
        assert link in index
    # The run's Hugging Face export (a folder with a config.json of its own) is a file of the run, not a run.
    assert "[tiny/hf]" not in index and "[Hugging Face export](runs/tiny/hf)" in index


def test_every_rule_records_benchmark_profile_and_log(workdir):
    results = workdir / "results"
    benchmarked = {path.parent.name for path in (results / "benchmarks").rglob("*.tsv")}
    logged = {path.parent.name for path in (results / "logs").rglob("*.log")}
    assert {"demo_corpus", "pretokenize_shard", "train_bpe", "encode", "train", "generate", "export_hf"} <= benchmarked
    assert benchmarked <= logged
    profile = json.loads(next((results / "profiles" / "train").rglob("*.json")).read_text())
    assert profile["peak_rss_bytes"] > 0 and profile["wall_s"] > 0


def test_shards_are_temporary(workdir):
    shards = workdir / "results" / "corpora"
    assert not any(shards.rglob("*.parquet")) and not any(shards.rglob("shards/*/*.npy"))


def test_second_run_has_nothing_to_do(workdir):
    assert planned_rules(snakemake(workdir, "--dry-run")) == set()


def test_a_pipeline_killed_mid_training_ends_as_an_uninterrupted_one(workdir, tmp_path):
    """SIGKILL of Snakemake and all its jobs once the run has its first checkpoint; the next run
    (after Snakemake's own --unlock, with --rerun-incomplete as its message asks) ends with the
    ids, tokenizer, weights and losses of the uninterrupted run, each step logged once, and no
    temporary file left."""
    import os
    import signal
    import time

    import torch

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(tiny_config()))
    process = subprocess.Popen(snakemake_command(tmp_path, "--cores", "2"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    run, reference = tmp_path / "results/runs/tiny", workdir / "results/runs/tiny"
    deadline = time.monotonic() + 300
    while not (run / "checkpoints/step_0000020.pt").exists() and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (run / "summary.json").exists()  # killed mid-run (its last 20 steps and files take ~1 s)
    snakemake(tmp_path, "--unlock")
    snakemake(tmp_path, "--rerun-incomplete")
    for name in ("demo_vocab.pkl", "demo_merges.pkl", "corpora/demo/train.npy", "corpora/demo/valid.npy"):
        assert (tmp_path / "results" / name).read_bytes() == (workdir / "results" / name).read_bytes(), name
    weights, expected = (torch.load(path / "model.pt", weights_only=True)["model"] for path in (run, reference))
    assert weights.keys() == expected.keys() and all(torch.equal(weights[k], expected[k]) for k in weights)
    losses = [(line["step"], line.get("train_loss"), line.get("val_loss"))
              for line in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]
    assert losses == [(line["step"], line.get("train_loss"), line.get("val_loss"))
                      for line in map(json.loads, (reference / "metrics.jsonl").read_text().splitlines())]
    assert not list(tmp_path.rglob("*.tmp"))


def test_changing_a_training_setting_reruns_only_training_and_downstream(workdir, tmp_path):
    config = tiny_config()
    config["runs"]["tiny"]["optimizer"] = {"lr": 5.0e-3}
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    output = snakemake(workdir, "--dry-run", "--configfile", str(changed))
    planned = planned_rules(output)
    assert "train" in planned and "generate" in planned
    assert not planned & {"demo_corpus", "pretokenize_shard", "train_bpe", "encode"}
    # The reason names the changed setting alone (it printed every setting twice, ~2,500 characters),
    # and no job lists the package's source files as inputs (~55 paths a job).
    reason = next(line for line in output.splitlines() if "Params have changed" in line)
    assert "before: 'optimizer.lr=0.001' now: 'optimizer.lr=0.005'" in reason and len(reason) < 250, reason
    assert "src/scratchlm" not in output


def test_changing_the_vocab_size_reruns_the_tokenizer_and_downstream(workdir, tmp_path):
    config = tiny_config()
    config["corpora"]["demo"]["vocab_size"] = 300
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    planned = planned_rules(snakemake(workdir, "--dry-run", "--configfile", str(changed)))
    assert {"train_bpe", "encode", "train"} <= planned
    assert "demo_corpus" not in planned


def test_a_config_typo_fails_in_one_line_with_the_key_named(tmp_path):
    config = tiny_config()
    config["corpora"]["demo"]["vocab_sise"] = 300
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = run_snakemake(tmp_path, "--dry-run", timeout=120)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "\nconfig.yaml: corpora.demo.vocab_sise: unknown setting; allowed here: train, valid" in output
    assert len(output.splitlines()) < 8, output  # not the whole schema


def test_load_time_errors_name_the_file_that_set_the_value(tmp_path):
    """A typo in a second --configfile was blamed on config.yaml (Snakemake lists the Snakefile's
    configfile after the command line's, which override it); a missing init_from was found only when
    the train job ran; a --configfile dropped by giving the option twice went unnoticed."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(tiny_config()))
    (tmp_path / "extra.yaml").write_text(yaml.safe_dump({"runs": {"tiny": {"optimzer": {"lr": 0.01}}}}))
    result = run_snakemake(tmp_path, "--dry-run", "--configfile", str(tmp_path / "extra.yaml"), timeout=120)
    assert result.returncode != 0
    assert "\nextra.yaml: runs.tiny.optimzer: unknown setting; allowed here: corpus," in result.stdout + result.stderr
    (tmp_path / "extra.yaml").write_text(yaml.safe_dump({"runs": {"tiny": {"init_from": "/nonexistent"}}}))
    result = run_snakemake(tmp_path, "--dry-run", "--configfile", str(tmp_path / "extra.yaml"), timeout=120)
    assert ("\nextra.yaml: runs.tiny.init_from: /nonexistent: no trained model there (no model.json); train that "
            "run or `scratchlm import-hf` a model into it first") in result.stdout + result.stderr
    (tmp_path / "other.yaml").write_text("{}")
    result = run_snakemake(tmp_path, "--dry-run", "--configfile", str(tmp_path / "other.yaml"),
                           "--configfile", str(tmp_path / "extra.yaml"), timeout=120)
    assert (f"--configfile given more than once: Snakemake reads only the last one's files, so "
            f"{tmp_path / 'other.yaml'} would be ignored") in result.stdout + result.stderr


def test_nested_numbers_from_the_command_line(tmp_path):
    """`snakemake --config` passes nested values as strings; the settings model reads them as numbers."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(tiny_config()))
    run = '{"tiny": {"corpus": "demo", "optimizer": {"lr": 0.01, "grad_clip": null}, "steps": 3, "device": "cpu"}}'
    result = run_snakemake(tmp_path, "--dry-run", "--config", f"runs={run}", timeout=120)
    assert result.returncode == 0, (result.stdout + result.stderr)[-2000:]


@pytest.mark.parametrize("change, message", [
    # Each was once found only when the train job started, after corpus, BPE and encode.
    (lambda c: c["runs"]["tiny"].update(optimizer={"lr": -0.001}),
     "config.yaml: runs.tiny.optimizer.lr: Input should be greater than 0, got -0.001"),
    (lambda c: c["runs"]["tiny"].update(model={"num_heads": 3}),
     "config.yaml: runs.tiny.model: d_model=512 is not divisible by num_heads=3"),
    (lambda c: c["runs"]["tiny"].update(optimizer={"grad_clip": 0}),
     "runs.tiny.optimizer.grad_clip: Input should be greater than 0"),
    (lambda c: c["runs"]["tiny"].update(device="gpu"), "runs.tiny.device: must be auto, cpu, cuda, cuda:N or mps"),
    (lambda c: c["runs"]["tiny"].update(corpus="nope"), "runs.tiny.corpus: corpus 'nope' is not configured"),
    (lambda c: c["targets"].update(runs=["ghost"]), "targets.runs names 'ghost', which is not configured"),
], ids=["lr", "heads", "grad_clip", "device", "corpus", "target"])
def test_bad_run_settings_fail_when_the_snakefile_loads(tmp_path, change, message):
    config = tiny_config()
    change(config)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = run_snakemake(tmp_path, "--dry-run", timeout=120)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr, (result.stdout + result.stderr)[-2000:]
    assert "Missing" not in result.stdout + result.stderr


def test_slurm_profile_is_read_by_the_pinned_plugin(tmp_path):
    """A dry run through the SLURM profile: the installed plugin knows every key of the profile. (What
    each job asks of SLURM: tests/test_cluster_site.py; the profile on a real cluster: tests/cluster.)"""
    config = tiny_config()
    config["runs"]["tiny"].update(device="cuda", devices=2)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = run_snakemake(tmp_path, "--dry-run", "--profile", str(PROJECT_ROOT / "workflow/profiles/slurm"),
                           timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    train_job = output[output.index("rule train:"):]
    assert "gpu=2" in train_job[train_job.index("resources:"):].splitlines()[0]


def test_lint_finds_nothing_beyond_conda_and_containers():
    result = run_snakemake(PROJECT_ROOT, "--lint", timeout=120)
    output = result.stdout + result.stderr
    lint_titles = re.findall(r"^\s+\* (.+)$", output, flags=re.MULTILINE)
    assert lint_titles, output[-3000:]  # the linter ran (it always asks for conda/containers)
    assert [title for title in lint_titles if "conda environment or container" not in title] == []


def test_downloaded_gzip_corpus_trains_a_tokenizer(http_server, tmp_path):
    """`snakemake results/owt_vocab.pkl` with the corpus behind a URL, as on a networked machine."""
    import gzip

    from scratchlm.data.demo import write_demo_corpus

    for split in ("train", "valid"):
        text_path = tmp_path / f"{split}.txt"
        write_demo_corpus(text_path, split=split, seed=7, size_mb=0.1)
        http_server.files[f"/owt_{split}.txt.gz"] = gzip.compress(text_path.read_bytes())
    config = tiny_config()
    config["corpora"] = {"owt": {
        "train": {"url": http_server.url("/owt_train.txt.gz")}, "valid": {"url": http_server.url("/owt_valid.txt.gz")},
        "special_tokens": ["<|endoftext|>"], "vocab_size": 300}}
    config["targets"], config["runs"], config["experiments"] = {"corpora": ["owt"], "runs": []}, {}, {}
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(workdir, "results/owt_vocab.pkl")
    text = workdir / Layout().corpus_text("owt", "train")
    assert text.read_bytes() == (tmp_path / "train.txt").read_bytes()
    assert len(pickle.loads((workdir / "results/owt_vocab.pkl").read_bytes())) == 300


def test_test_config_is_valid():
    """.test/config.yaml loads through the settings model (every run resolved)."""
    from scratchlm.settings import load_project_file

    assert load_project_file(TEST_CONFIG).targets.runs == ["tiny"]


# ------------------------------------------------------------------------------------ experiments

EXPERIMENT = "tiny-lr"  # .test/config.yaml: 3 learning rates (30 diverges) x 2 variants x 2 seeds


def planned_jobs(dry_run_output: str) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run."""
    counts, in_table = {}, False
    for line in dry_run_output.splitlines():
        if line.startswith("job") and "count" in line:
            in_table = True
        elif in_table and (match := re.match(r"^(\w+)\s+(\d+)\s*$", line)):
            counts[match.group(1)] = int(match.group(2))
        elif in_table and not line.strip():
            in_table = False
    counts.pop("total", None)
    return counts


@pytest.fixture(scope="module")
def experiment(workdir) -> Path:
    """The .test experiment, built through snakemake in the pipeline's workdir (corpus and tokenizer reused)."""
    snakemake(workdir, f"results/experiments/{EXPERIMENT}/report.md")
    return workdir


def test_experiment_report_marks_diverged_runs_and_equals_their_summaries(experiment):
    from scratchlm.reports.comparison import SUMMARY_KEYS

    layout = Layout(str(experiment / "results"))
    report = json.loads(Path(layout.experiment_files(EXPERIMENT)["json"]).read_text())
    runs = {run["run"]: run for run in report["runs"]}
    assert len(runs) == 12 and report["columns"] == ["variant", "optimizer.lr", "seed"]
    diverged = {name for name, run in runs.items() if run["status"] == "diverged"}
    assert diverged == {name for name in runs if "/lr=30/" in name}  # and their jobs succeeded
    for name, run in runs.items():
        summary = json.loads(Path(layout.run_file(name, "summary.json")).read_text())
        assert {key: run[key] for key in SUMMARY_KEYS} == {key: summary.get(key) for key in SUMMARY_KEYS}
        assert run["values"]["optimizer.lr"] in (1e-2, 3e-2, 30.0)
    best = min((run for run in runs.values() if run["status"] == "finished"), key=lambda run: run["final_val_loss"])
    markdown = Path(layout.experiment_files(EXPERIMENT)["markdown"]).read_text()
    assert report["best"] == best["run"] and f"**{best['run']}** ★" in markdown and "## Over seeds" in markdown
    log = Path(layout.log("train", sorted(diverged)[0])).read_text().splitlines()
    assert "diverged at step" in log[-2] and "stage train done" in log[-1]  # why it stopped, at the end
    assert sum(": step " in line for line in log) >= 2  # and its progress before


def test_adding_a_grid_value_trains_only_the_new_runs(experiment, tmp_path):
    config = tiny_config()
    config["experiments"][EXPERIMENT]["grid"]["optimizer.lr"].append(2.0e-2)
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    output = snakemake(experiment, f"results/experiments/{EXPERIMENT}/report.md", "--dry-run",
                       "--configfile", str(changed))  # (--configfile takes every word after it)
    assert planned_jobs(output) == {"train": 4, "experiment_report": 1}  # 2 variants x 2 seeds
    assert len(re.findall(r"wildcards: run=tiny-lr/\w+/lr=2e-2/seed=\d", output)) == 4


def test_a_failed_run_does_not_keep_the_reports_from_being_built(experiment, tmp_path):
    """With --keep-going, a run that fails (not by diverging) is listed as failed in its experiment's
    report, which is built with the training report and the index from the runs that finished."""
    config = tiny_config()
    (experiment / "damaged-run").mkdir(exist_ok=True)
    (experiment / "damaged-run" / "model.json").write_text("{}")  # found at load, refused when the job reads it
    config["experiments"]["broken"] = {"base": "tiny", "variants": {"ok": {}, "bad": {"init_from": "damaged-run"}}}
    changed = tmp_path / "broken.yaml"
    changed.write_text(yaml.safe_dump(config))
    result = run_snakemake(experiment, "results/experiments/broken/report.md", "--keep-going",
                           "--configfile", str(changed))
    assert result.returncode != 0
    layout = Layout(str(experiment / "results"))
    statuses = {run["run"]: run["status"] for run in
                json.loads(Path(layout.experiment_files("broken")["json"]).read_text())["runs"]}
    assert statuses["broken/bad"] == "failed" and statuses["broken/ok"] in ("finished", "no-better-than-unigram")
    assert "## Failed" in Path(layout.experiment_files("broken")["markdown"]).read_text()
    assert "[broken](experiments/broken/report.md)" in Path(layout.index()).read_text()
