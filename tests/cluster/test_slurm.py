"""The pipeline on a real one-node SLURM cluster (tests/cluster/slurm.sh), through the shipped profile.

`make test-cluster` runs it (root, Debian: the script installs slurm-wlm and munge and starts the
daemons; `SCRATCHLM_SLURM_MODE=accounting` adds MariaDB and slurmdbd). The profile gets nothing but
a site file written for this cluster. Checked: every job completes; the outputs equal a local run's
(ids, tokenizer files, weights and losses; timing fields aside); a train job cancelled mid-run
(`scancel`) is resubmitted and resumes to the same final weights; an experiment's runs are separate
jobs. Every wait is bounded, and a job that SLURM will never start fails the test at once with the
reason SLURM gives.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import snakemake_command

pytestmark = pytest.mark.cluster

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SLURM_SH = PROJECT_ROOT / "tests" / "cluster" / "slurm.sh"
PROFILE = PROJECT_ROOT / "workflow" / "profiles" / "slurm"
PIPELINE_TIMEOUT_S = 900
# Pending reasons of a job that will never start as submitted (squeue's %r).
NEVER_STARTS = ("PartitionConfig", "PartitionNodeLimit", "PartitionTimeLimit", "ReqNodeNotAvail", "BadConstraints",
                "InvalidAccount", "InvalidQOS", "AssocMaxCpuPerJobLimit", "AssocMaxMemPerJobLimit",
                "QOSMaxCpuPerJobLimit", "QOSMaxMemoryPerJob", "Nodes_required_for_job_are_DOWN")
TIMING_FIELDS = {"elapsed_s", "tokens_per_s"}
# The run the test cancels: long enough to be caught mid-run, checkpointing often. `device: auto`
# sends its jobs to the GPU partition with a (fake) GPU; with no CUDA there, it trains on the CPU.
LONG_RUN = {"steps": 2500, "checkpoint_interval": 100, "eval_interval": 1250, "log_interval": 100,
            "device": "auto"}


def cluster_config() -> dict:
    """.test/config.yaml plus a two-run experiment and the long run, all targets; shards twice as
    large (each SLURM job costs two Snakemake starts, ~15 s here: fewer waves of shard jobs)."""
    config = yaml.safe_load((PROJECT_ROOT / ".test" / "config.yaml").read_text())
    config["bpe"]["shard_mb"] = 0.1
    config["runs"]["long"] = {**config["runs"]["tiny"], **LONG_RUN}
    config["experiments"]["pair"] = {"base": "tiny", "grid": {"optimizer.lr": [1.0e-2, 3.0e-2]}}
    config["targets"] = {**config["targets"], "runs": ["tiny", "long"], "experiments": ["pair"]}
    return config


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Path:
    """A running one-node cluster and a site file for it; stopped at the end if started here. The site
    gives a job at most half the node (one CPU of two here), so that two jobs run at once, and the
    train jobs' 8 threads are cut down to it."""
    was_running = subprocess.run([SLURM_SH, "status"], capture_output=True).returncode == 0
    mode = os.environ.get("SCRATCHLM_SLURM_MODE", "plain")
    subprocess.run([SLURM_SH, "start", mode], check=True, timeout=600)
    cpus, mem_mb, gres = subprocess.run(["sinfo", "-h", "-N", "-o", "%c %m %G"], capture_output=True, text=True,
                                        check=True).stdout.split()[:3]
    site = tmp_path_factory.mktemp("site") / "site.yaml"
    half = {"cpus": max(1, int(cpus) // 2), "mem_mb": int(mem_mb) * 2 // 5}
    site.write_text(yaml.safe_dump({"account": None, "partitions": {
        "cpu": {"name": "cpu", **half}, "gpu": {"name": "gpu", **half, "gpus": int(gres.split(":")[-1])}}}))
    yield site
    if not was_running:
        subprocess.run([SLURM_SH, "stop"], check=True, timeout=120)


def our_jobs(workdir: Path) -> list[dict]:
    """This workflow's SLURM jobs still known to squeue: id, state, pending reason and rule comment."""
    out = subprocess.run(["squeue", "-h", "--states=all", "-o", "%i|%T|%r|%k|%Z|%P"], capture_output=True,
                         text=True, check=True).stdout
    fields = ("id", "state", "reason", "comment", "workdir", "partition")
    rows = [dict(zip(fields, line.split("|"))) for line in out.splitlines()]
    return [row for row in rows if row["workdir"] == str(workdir)]


def checkpoints(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "checkpoints").glob("*.pt"))


def run_through_slurm(workdir: Path, site: Path) -> tuple[str, list[dict]]:
    """The pipeline through the shipped profile; cancels the long run's train job once it has a checkpoint.
    Returns snakemake's output and the cancelled jobs (squeue's rows)."""
    env = {**os.environ, "SCRATCHLM_SLURM_SITE": str(site)}
    log = workdir / "snakemake.log"
    with log.open("w") as output:
        process = subprocess.Popen(snakemake_command(workdir, "--profile", str(PROFILE),
                                                     "--slurm-init-seconds-before-status-checks", "5"),
                                   stdout=output, stderr=subprocess.STDOUT, env=env)
    cancelled, deadline = [], time.monotonic() + PIPELINE_TIMEOUT_S
    try:
        while process.poll() is None:
            assert time.monotonic() < deadline, f"over {PIPELINE_TIMEOUT_S} s:\n{log.read_text()[-3000:]}"
            for job in our_jobs(workdir):
                assert not (job["state"] == "PENDING" and job["reason"] in NEVER_STARTS), \
                    f"SLURM will never start job {job['id']} ({job['comment']}): {job['reason']}"
                if (not cancelled and job["state"] == "RUNNING" and job["comment"] == "rule_train_wildcards_long"
                        and checkpoints(workdir / "results/runs/long")):
                    job["tres"] = subprocess.run(["squeue", "-h", "-j", job["id"], "-O", "tres-per-job"],
                                                 capture_output=True, text=True, check=True).stdout.strip()
                    subprocess.run(["scancel", job["id"]], check=True)
                    cancelled.append(job)
            time.sleep(1)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(60)
    assert process.returncode == 0, log.read_text()[-5000:]
    return log.read_text(), cancelled


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory) -> dict:
    """The same configuration through SLURM and locally."""
    workdirs = {}
    for name in ("slurm", "local"):
        workdirs[name] = tmp_path_factory.mktemp(name)
        (workdirs[name] / "config.yaml").write_text(yaml.safe_dump(cluster_config()))
    # The local run goes meanwhile (the SLURM run mostly waits for squeue), each job with as many
    # threads as the site gives a SLURM job: CPU matmuls sum in another order with other thread counts.
    threads = yaml.safe_load(cluster.read_text())["partitions"]["cpu"]["cpus"]
    local = subprocess.Popen(snakemake_command(workdirs["local"], "--cores", "2", "--max-threads", str(threads)),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started = time.monotonic()
    try:
        output, cancelled = run_through_slurm(workdirs["slurm"], cluster)
    finally:
        local_output = local.communicate(timeout=PIPELINE_TIMEOUT_S)[0]
    print(f"pipeline through SLURM: {time.monotonic() - started:.0f} s")
    assert local.returncode == 0, local_output[-3000:]
    return {**workdirs, "output": output, "cancelled": cancelled}


def test_every_job_completes_through_slurm(runs):
    output = runs["output"]
    assert "steps (100%) done" in output
    assert "Submitted array job" in output  # the shard maps went as job arrays
    for run in RUNS:  # each run, the experiment's two included, was a SLURM job of its own
        assert f"slurm_logs/rule_train/{run.replace('/', '_')}/" in output, run


TOKENIZER_AND_IDS = ["results/demo_vocab.pkl", "results/demo_merges.pkl", "results/corpora/demo/train.npy",
                     "results/corpora/demo/valid.npy", "results/corpora/demo/tokenizer/vocab.json",
                     "results/corpora/demo/tokenizer/merges.txt", "results/corpora/demo/tokenizer/tokenizer.json"]
RUNS = ["tiny", "long", "pair/lr=1e-2", "pair/lr=3e-2"]


@pytest.mark.parametrize("path", TOKENIZER_AND_IDS)
def test_tokenizer_and_ids_equal_a_local_run(runs, path):
    assert (runs["slurm"] / path).read_bytes() == (runs["local"] / path).read_bytes()


def metrics(run_dir: Path) -> list[dict]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{key: value for key, value in line.items() if key not in TIMING_FIELDS} for line in lines]


@pytest.mark.parametrize("run", RUNS)
def test_weights_and_losses_equal_a_local_run(runs, run):
    slurm, local = (runs[where] / "results/runs" / run for where in ("slurm", "local"))
    assert metrics(slurm) == metrics(local)
    ours, theirs = (torch.load(folder / "model.pt", weights_only=True)["model"] for folder in (slurm, local))
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[name], theirs[name]) for name in ours)
    for name in ("samples.md", "hf"):  # made for the target runs (an experiment's runs are trained only)
        assert (slurm / name).exists() == (local / name).exists() == (run in ("tiny", "long")), name


def test_a_cancelled_train_job_is_resubmitted_and_resumes(runs):
    """The long run's job was cancelled mid-run; `retries: 1` resubmitted it, and it resumed from its
    checkpoint (its weights equal the local uninterrupted run's: the test above)."""
    assert len(runs["cancelled"]) == 1, "the long run finished before it could be cancelled"
    job = runs["cancelled"][0]
    assert job["partition"] == "gpu" and job["tres"] == "gres:gpu:1", job  # device: auto: a GPU job
    log = (runs["slurm"] / "results/logs/train/long.log").read_text()
    assert "resum" in log.lower(), log[-2000:]
    steps = [line["step"] for line in metrics(runs["slurm"] / "results/runs/long")]
    assert steps == sorted(set(steps)) and steps[-1] == LONG_RUN["steps"]  # no step twice, none missing at the end
