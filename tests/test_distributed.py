"""Data-parallel training (torchrun + DDP, gloo on CPU) and gradient accumulation.

The batches do not depend on how a step is split (every rank draws the same global batch and
trains on its rows), so 2 ranks, or 4 micro-batches, follow the 1-process loss curve up to float
rounding; checkpoints move between process counts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from scratchlm.training.checkpoint import read_checkpoint
from scratchlm.training.loop import train

from test_training_loop import TINY_RUN, VOCAB, configured_project, losses, tiny_settings  # noqa: F401 (fixture `data` below)
from test_training_loop import data  # noqa: F401  (the pytest fixture)
from test_training_loop import one_thread  # noqa: F401  (autouse fixture)


# Relative tolerance of loss curves, and (rtol, atol) of weights. Muon orthogonalises in
# bfloat16, where the last-bit differences of a gradient summed in another order (over ranks,
# or micro-batches) become ~1e-4 of the loss and ~5e-4 of a weight.
CURVE_RTOL = {"adamw": 1e-5, "muon": 1e-3}
WEIGHTS_TOLERANCE = {"adamw": (1e-4, 1e-6), "muon": (1e-2, 1e-3)}


def curve(run_dir) -> np.ndarray:
    return np.array([loss for _, loss in losses(run_dir)])


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_two_ranks_follow_the_one_rank_curve(tmp_path, data, optimizer):  # noqa: F811
    one = train(tiny_settings(optimizer={"name": optimizer}), data, tmp_path / "one", threads=1)
    two = train(tiny_settings(devices=2, optimizer={"name": optimizer}), data, tmp_path / "two", threads=2)
    np.testing.assert_allclose(curve(tmp_path / "two"), curve(tmp_path / "one"), rtol=CURVE_RTOL[optimizer])
    assert two["final_val_loss"] == pytest.approx(one["final_val_loss"], rel=CURVE_RTOL[optimizer])
    assert two["processes"] == 2 and one["processes"] == 1
    # Rank 0 alone wrote the run folder: one metrics line per step, no duplicates.
    assert [step for step, _ in losses(tmp_path / "two")] == list(range(1, 13))
    assert json.loads((tmp_path / "two/config.json").read_text())["training"]["processes"] == 2


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_accumulating_4_micro_batches_equals_one_batch(tmp_path, data, optimizer):  # noqa: F811
    train(tiny_settings(batch_size=8, optimizer={"name": optimizer}), data, tmp_path / "big", threads=1)
    train(tiny_settings(batch_size=8, grad_accum_steps=4, optimizer={"name": optimizer}), data, tmp_path / "accum",
          threads=1)
    np.testing.assert_allclose(curve(tmp_path / "accum"), curve(tmp_path / "big"), rtol=CURVE_RTOL[optimizer])
    big, accum = (read_checkpoint(tmp_path / name / "model.pt")["model"] for name in ("big", "accum"))
    rtol, atol = WEIGHTS_TOLERANCE[optimizer]
    for name in big:
        np.testing.assert_allclose(accum[name].numpy(), big[name].numpy(), rtol=rtol, atol=atol)


def test_batch_must_split_over_devices_and_micro_batches():
    with pytest.raises(ValueError, match=r"batch_size 4 is not divisible by nodes × devices × grad_accum_steps = 3"):
        tiny_settings(devices=3)


def _rank_processes(launcher: subprocess.Popen) -> list[psutil.Process]:
    """The training processes torchrun started under ``launcher`` (its grandchildren)."""
    try:
        found = psutil.Process(launcher.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p for p in found if rank_of(p) is not None]


def rank_of(process: psutil.Process) -> str | None:
    """The RANK a training process was started with; None for other processes (torchrun's agent, or
    one already gone)."""
    try:
        if "torch.distributed.run" in process.cmdline():
            return None
        return process.environ().get("RANK")
    except psutil.Error:  # ended between the listing and this look (a short-lived helper)
        return None


def test_sigterm_on_one_rank_checkpoints_and_resumes_in_one_process(tmp_path, data):  # noqa: F811
    """Kill + resume under DDP continues the curve; a checkpoint of 2 ranks loads in 1."""
    long_run = {**TINY_RUN, "steps": 400, "eval_interval": 400, "checkpoint_interval": 1000, "keep_last": 1}
    config, results = configured_project(tmp_path, data, long_run)
    command = [sys.executable, "-m", "scratchlm.cli", "train", "tiny", "--config", str(config),
               "--results", str(results)]
    launcher = subprocess.Popen([*command, "--set", "devices=2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    metrics = results / "runs/tiny/metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and launcher.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 5:
            rank1 = [p for p in _rank_processes(launcher) if rank_of(p) == "1"]
            if rank1:
                rank1[0].send_signal(signal.SIGTERM)
                break
        time.sleep(0.01)
    _, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 128 + signal.SIGTERM, err.decode()[-3000:]
    assert f"stopped by signal {int(signal.SIGTERM)}" in err.decode()
    (checkpoint,) = (results / "runs/tiny/checkpoints").iterdir()
    stopped_at = read_checkpoint(checkpoint)["iteration"]
    assert 5 <= stopped_at < 400 and not (results / "runs/tiny/model.pt").exists()

    resumed = subprocess.run([*command, "--set", "devices=1"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight = subprocess.run([*command, "--set", "devices=1", "--run-dir", str(tmp_path / "straight")],
                              capture_output=True, text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert [step for step, _ in losses(results / "runs/tiny")] == list(range(1, 401))
    np.testing.assert_allclose(curve(results / "runs/tiny"), curve(tmp_path / "straight"), rtol=1e-4)


def test_fresh_with_two_processes_moves_the_old_run_aside(tmp_path, data):  # noqa: F811
    """--fresh (and the pipeline's retrain) once moved the launcher's own working folder into replaced/,
    then failed after training with three tracebacks."""
    run_dir = tmp_path / "run"
    first = train(tiny_settings(devices=2, steps=4), data, run_dir, threads=2)
    again = train(tiny_settings(devices=2, steps=4), data, run_dir, threads=2, fresh=True)
    assert again["steps"] == first["steps"] == 4
    (kept,) = (run_dir / "replaced").iterdir()
    assert (kept / "model.pt").is_file() and not [p for p in kept.iterdir() if p.name.startswith(".launch.")]
    retrained = train(tiny_settings(devices=2, steps=4, seed=3), data, run_dir, threads=2, replace_finished=True)
    assert retrained["steps"] == 4 and len(list((run_dir / "replaced").iterdir())) == 2


def _long_run(tmp_path, data) -> tuple[list[str], Path]:  # noqa: F811
    long_run = {**TINY_RUN, "steps": 2000, "eval_interval": 2000, "checkpoint_interval": 50, "keep_last": 1}
    config, results = configured_project(tmp_path, data, long_run)
    return ([sys.executable, "-m", "scratchlm.cli", "train", "tiny", "--config", str(config), "--results",
             str(results), "--set", "devices=2"], results / "runs/tiny/metrics.jsonl")


def _wait_for_ranks(launcher: subprocess.Popen, metrics: Path) -> list[psutil.Process]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and launcher.poll() is None:
        ranks = [p for p in _rank_processes(launcher) if rank_of(p) in ("0", "1")]
        if len(ranks) == 2 and metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            return ranks
        time.sleep(0.05)
    pytest.fail("the training processes did not start")


def test_ranks_do_not_outlive_a_killed_launcher(tmp_path, data):  # noqa: F811
    """SIGKILL of `scratchlm train` once left its ranks training, the run lock released, beside the next trainer."""
    command, metrics = _long_run(tmp_path, data)
    launcher = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ranks = _wait_for_ranks(launcher, metrics)
    launcher.kill()
    launcher.wait()
    _, alive = psutil.wait_procs(ranks, timeout=60)
    assert not alive


def test_a_killed_rank_is_named_in_one_line(tmp_path, data):  # noqa: F811
    command, metrics = _long_run(tmp_path, data)
    launcher = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rank1 = [p for p in _wait_for_ranks(launcher, metrics) if rank_of(p) == "1"][0]
    rank1.kill()
    _, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 1
    assert err.strip().splitlines()[-1] == ("scratchlm train: error: training process of rank 1 died (killed by "
                                            "signal 9); torchrun stopped the others; run the same command again to "
                                            "resume from the last checkpoint")


# Stand-ins for SLURM's commands, for the multi-node launch on this one machine: `srun --ntasks=N ...
# COMMAND` starts COMMAND N times here (as srun starts one task per node) and fails if one does;
# `scontrol show hostnames` names 127.0.0.1 as the allocation's first host; squeue gives the job's size.
FAKE_SRUN = """#!/bin/bash
tasks=1
while [[ $1 == --* ]]; do [[ $1 == --ntasks=* ]] && tasks=${1#--ntasks=}; shift; done
for ((i = 0; i < tasks; i++)); do "$@" & done
status=0
for ((i = 0; i < tasks; i++)); do wait -n || status=$?; done
exit $status
"""
FAKE_SCONTROL = "#!/bin/bash\necho 127.0.0.1\n"
FAKE_SQUEUE = "#!/bin/bash\necho '{nodes}|node[1-{nodes}]'\n"


def fake_slurm_allocation(tmp_path: Path, monkeypatch, nodes: int) -> None:
    """PATH and environment of a SLURM job of ``nodes`` nodes, whose srun starts the tasks here. As in
    the SLURM plugin's job step, the environment holds the job's id only (its size comes from squeue)."""
    bin_dir = tmp_path / "fake-slurm"
    bin_dir.mkdir(exist_ok=True)
    for name, script in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL),
                         ("squeue", FAKE_SQUEUE.format(nodes=nodes))):
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    for name in ("SLURM_JOB_NUM_NODES", "SLURM_JOB_NODELIST"):
        monkeypatch.delenv(name, raising=False)


def test_two_nodes_follow_the_one_process_curve(tmp_path, data, monkeypatch):  # noqa: F811
    """`nodes: 2` starts one torchrun agent per node with srun (two agents on 127.0.0.1 here); they
    meet at a c10d rendezvous and train as one 2-process run, on the 1-process curve."""
    fake_slurm_allocation(tmp_path, monkeypatch, nodes=2)
    one = train(tiny_settings(), data, tmp_path / "one", threads=1)
    two = train(tiny_settings(nodes=2), data, tmp_path / "two", threads=1)
    np.testing.assert_allclose(curve(tmp_path / "two"), curve(tmp_path / "one"), rtol=CURVE_RTOL["adamw"])
    assert two["final_val_loss"] == pytest.approx(one["final_val_loss"], rel=CURVE_RTOL["adamw"])
    assert two["processes"] == 2
    assert [step for step, _ in losses(tmp_path / "two")] == list(range(1, 13))  # rank 0 alone wrote


def test_several_nodes_need_an_allocation_of_that_many(tmp_path, data, monkeypatch):  # noqa: F811
    for name in ("SLURM_JOB_ID", "SLURM_JOB_NUM_NODES", "SLURM_JOB_NODELIST"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match=r"nodes: 2, which needs a SLURM allocation of 2 nodes .*no allocation"):
        train(tiny_settings(nodes=2), data, tmp_path / "run")
    fake_slurm_allocation(tmp_path, monkeypatch, nodes=1)
    with pytest.raises(ValueError, match=r"here: 1 node\(s\)"):
        train(tiny_settings(nodes=2), data, tmp_path / "run")
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "1")  # a job's own shell has its size in the environment
    monkeypatch.setenv("SLURM_JOB_NODELIST", "node1")
    with pytest.raises(ValueError, match=r"here: 1 node\(s\)"):
        train(tiny_settings(nodes=2), data, tmp_path / "run")
