"""The training stage: config resolution, an end-to-end tiny run, resume, faults, device handling."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from scratchlm.cli import main as cli_main
from scratchlm.fileio import LockedError
from scratchlm.layout import Layout, run_folders
from scratchlm.settings import Layer, RunSettings
from scratchlm.settings.loading import merge_layers
from scratchlm.training import trainer
from scratchlm.training.checkpoint import read_checkpoint
from scratchlm.training.device import autocast_dtype, configure_backend, select_device
from scratchlm.training.loop import TrainingInterrupted, train
from scratchlm.training.run_folder import load_trained_model
from scratchlm.training.plots import plot_comparison

VOCAB = 32
TINY_RUN = {
    "corpus": "tiny",
    "model": {"context_length": 16, "d_model": 16, "num_layers": 1, "num_heads": 2},
    "optimizer": {"lr": 1.0e-2},
    "schedule": {"warmup_fraction": 0.25},
    "batch_size": 4,
    "steps": 12,
    "eval_interval": 6,
    "eval_batches": 2,
    "log_interval": 1,
    "checkpoint_interval": 4,
    "keep_last": 2,
    "device": "cpu",
}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a busy machine spinning threads cost seconds."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_settings(**overrides) -> RunSettings:
    """TINY_RUN with ``overrides`` deep-merged onto it."""
    return RunSettings.model_validate(merge_layers([Layer("tiny", TINY_RUN, "test"), Layer("set", overrides, "test")]))


@pytest.fixture()
def data(tmp_path) -> dict:
    """A learnable stream: runs of consecutive ids (next = previous + 1), random run starts."""
    rng = np.random.default_rng(0)
    starts = rng.integers(0, VOCAB, size=400)
    tokens = ((starts[:, None] + np.arange(8)) % VOCAB).reshape(-1).astype(np.uint16)
    paths = {}
    for split, part in (("train", tokens[:2800]), ("valid", tokens[2800:])):
        paths[split] = tmp_path / f"tiny_{split}.npy"
        np.save(paths[split], part)
    return {"corpus": "tiny", "train": str(paths["train"]), "valid": str(paths["valid"]), "vocab_size": VOCAB}


def losses(run_dir) -> list[tuple[int, float]]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(line["step"], line["train_loss"]) for line in lines]


def sigterm_at(stop_step: int):
    def hook(step: int, _line: dict) -> None:
        if step == stop_step:
            os.kill(os.getpid(), signal.SIGTERM)
    return hook


# ---------------------------------------------------------------- settings (more in test_settings.py)


def test_grad_clip_null_disables_clipping(tmp_path, data):
    summary = train(tiny_settings(steps=3, optimizer={"grad_clip": None}), data, tmp_path / "run")
    assert summary["steps"] == 3


# ----------------------------------------------------------------------------- end to end


def test_tiny_run_end_to_end(tmp_path, data):
    run_dir = tmp_path / "run"
    summary = train(tiny_settings(), data, run_dir)
    for name in ("config.json", "metrics.jsonl", "model.pt", "model.json", "summary.json", "curves.png"):
        assert (run_dir / name).stat().st_size > 0, name
    assert [step for step, _ in losses(run_dir)] == list(range(1, 13))
    lrs = [json.loads(line)["lr"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert lrs[0] > 0 and max(lrs) == pytest.approx(1e-2) and lrs[-1] == pytest.approx(1e-3)  # cosine ends at min_lr
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["vocab_size"] == VOCAB and config["data"]["corpus"] == "tiny"
    assert {"git_revision", "versions", "seed", "optimizer", "training"} <= set(config)
    assert summary == json.loads((run_dir / "summary.json").read_text())
    # The model learned the successor rule: clearly below the unigram entropy (ln 32).
    assert summary["unigram_entropy"] == pytest.approx(math.log(VOCAB), abs=0.02)
    assert summary["final_val_loss"] < summary["unigram_entropy"] - 0.3
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["final", "step_0000008.pt",
                                                                            "step_0000012.pt"]
    assert (run_dir / "checkpoints/final/model.pt").stat().st_ino == (run_dir / "model.pt").stat().st_ino

    model, meta = load_trained_model(run_dir)
    assert meta["step"] == 12 and not model.training
    saved = read_checkpoint(run_dir / "model.pt")["model"]
    assert all(torch.equal(saved[name], value) for name, value in model.state_dict().items())


@pytest.mark.parametrize("log_interval, optimizer", [(1, "adamw"), (3, "adamw"), (1, "muon")])
def test_resume_after_sigterm_matches_uninterrupted_run(tmp_path, data, log_interval, optimizer):
    """With log_interval 3, the first line after a resume once averaged only the steps since it;
    Muon's momentum buffers resume too."""
    settings = tiny_settings(log_interval=log_interval, optimizer={"name": optimizer})
    train(settings, data, tmp_path / "straight")
    with pytest.raises(TrainingInterrupted, match="stopped by signal"):
        train(settings, data, tmp_path / "resumed", on_step=sigterm_at(7))
    assert (tmp_path / "resumed/checkpoints/step_0000007.pt").exists()
    assert not (tmp_path / "resumed/model.pt").exists()
    train(settings, data, tmp_path / "resumed")
    straight, resumed = losses(tmp_path / "straight"), losses(tmp_path / "resumed")
    assert [s for s, _ in resumed] == [s for s, _ in straight] and resumed[-1][0] == 12
    np.testing.assert_allclose([loss for _, loss in resumed], [loss for _, loss in straight], rtol=1e-6)


def test_finished_run_is_left_alone_and_fresh_moves_it_aside(tmp_path, data):
    """Re-running a finished run once deleted its checkpoints and metrics and trained it again."""
    run_dir, settings = tmp_path / "run", tiny_settings(steps=4, checkpoint_interval=2)
    first = train(settings, data, run_dir)
    before = {path: path.stat().st_mtime_ns for path in run_dir.rglob("*") if path.name != ".lock"}
    steps = []
    again = train(settings, data, run_dir, on_step=lambda step, _: steps.append(step))
    assert again == first and steps == []
    assert {path: path.stat().st_mtime_ns for path in run_dir.rglob("*") if path.name != ".lock"} == before

    third = train(tiny_settings(steps=4, checkpoint_interval=2, seed=1), data, run_dir, fresh=True)
    (replaced,) = (run_dir / "replaced").iterdir()
    assert json.loads((replaced / "summary.json").read_text()) == first
    assert (replaced / "checkpoints/step_0000004.pt").is_file() and (replaced / "model.pt").is_file()
    assert third["final_val_loss"] != first["final_val_loss"] and len(losses(run_dir)) == 4


def test_finished_run_with_other_settings_needs_fresh(tmp_path, data):
    run_dir = tmp_path / "run"
    train(tiny_settings(steps=4), data, run_dir)
    with pytest.raises(ValueError, match=r"different settings \(optimizer\).*--fresh"):
        train(tiny_settings(steps=4, optimizer={"lr": 0.001}), data, run_dir)
    assert (run_dir / "model.pt").is_file() and not (run_dir / "replaced").exists()
    # The pipeline (a changed config reran the job) moves the old run aside and trains again.
    train(tiny_settings(steps=4, optimizer={"lr": 0.001}), data, run_dir, replace_finished=True)
    assert len(list((run_dir / "replaced").iterdir())) == 1
    assert json.loads((run_dir / "config.json").read_text())["optimizer"]["lr"] == 0.001


@pytest.mark.parametrize("kept", [True, False], ids=["linked-copies", "older-run-without-them"])
def test_finished_run_missing_final_files_writes_them_without_training(tmp_path, data, kept):
    """From the copies kept in checkpoints/final/ (bit for bit), or else written again from the last checkpoint."""
    import shutil

    run_dir = tmp_path / "run"
    first = train(tiny_settings(steps=4), data, run_dir)
    before = {name: (run_dir / name).read_bytes() for name in ("model.pt", "summary.json", "curves.png")}
    for name in before:
        (run_dir / name).unlink()
    if not kept:
        shutil.rmtree(run_dir / "checkpoints/final")
    steps = []
    assert train(tiny_settings(steps=4), data, run_dir, on_step=lambda step, _: steps.append(step)) == first
    assert steps == [] and (run_dir / "model.pt").is_file() and (run_dir / "curves.png").is_file()
    if kept:
        assert {name: (run_dir / name).read_bytes() for name in before} == before


def test_a_retrained_run_keeps_every_file_of_the_old_one(tmp_path, data):
    """Snakemake deletes a job's declared outputs before it reruns it: replaced/ once lacked model.pt,
    model.json, metrics.jsonl, summary.json and config.json of the run it kept."""
    from scratchlm.layout import RunFiles

    run_dir = tmp_path / "run"
    train(tiny_settings(steps=4), data, run_dir)
    before = {name: (run_dir / name).read_bytes() for name in RunFiles.FINAL}
    for name in RunFiles.FINAL:  # what Snakemake does before the job starts
        (run_dir / name).unlink()
    summary = train(tiny_settings(steps=4, optimizer={"lr": 0.002}), data, run_dir, replace_finished=True)
    assert summary["steps"] == 4
    kept = next((run_dir / "replaced").iterdir())
    assert {name: (kept / name).read_bytes() for name in RunFiles.FINAL} == before
    assert json.loads((run_dir / "config.json").read_text())["optimizer"]["lr"] == 0.002
    assert [path.name for path in run_folders(tmp_path, "summary.json")] == ["run"]  # kept copies are no run


def test_second_trainer_on_a_run_folder_is_refused(tmp_path, data):
    """Two trainers at once (or a requeued job beside the old one) used to interleave metrics.jsonl."""
    import subprocess
    import sys

    run_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from scratchlm.fileio import exclusive_lock\n"
         f"with exclusive_lock({str(run_dir / '.lock')!r}, what='x'):\n"
         "    print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError, match=rf"run folder .*run is in use by pid {holder.pid} on host"):
            train(tiny_settings(steps=2), data, run_dir)
        assert not (run_dir / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    train(tiny_settings(steps=2), data, run_dir)  # the kernel released the dead holder's lock
    assert [step for step, _ in losses(run_dir)] == [1, 2]


def test_sighup_checkpoints_like_sigterm(tmp_path, data):
    def hangup_at_3(step, _line):
        if step == 3:
            os.kill(os.getpid(), signal.SIGHUP)

    with pytest.raises(TrainingInterrupted, match=f"stopped by signal {int(signal.SIGHUP)} at step 3"):
        train(tiny_settings(), data, tmp_path / "run", on_step=hangup_at_3)
    assert (tmp_path / "run/checkpoints/step_0000003.pt").is_file()


def test_model_json_tokenizer_paths_work_from_any_directory(tmp_path, data, fixtures_dir, monkeypatch):
    from scratchlm.generation import load_run

    project = tmp_path / "project"
    (project / "results").mkdir(parents=True)
    for name in ("gpt2_vocab.json", "gpt2_merges.txt"):
        (project / "results" / name).write_bytes((fixtures_dir / name).read_bytes())
    monkeypatch.chdir(project)
    data = {**data, "vocab": "results/gpt2_vocab.json", "merges": "results/gpt2_merges.txt", "vocab_size": 50257}
    train(tiny_settings(steps=1, model={"d_model": 8, "num_heads": 2}), data, "results/runs/tiny")
    assert json.loads((project / "results/runs/tiny/model.json").read_text())["vocab"] == "../../gpt2_vocab.json"
    monkeypatch.chdir(tmp_path)
    model, tokenizer, _ = load_run("project/results/runs/tiny", device="cpu")
    assert tokenizer.encode("hello world") == [31373, 995]


# ------------------------------------------------------------------------------------- faults


def test_corrupt_checkpoint_fails_with_its_name(tmp_path, data):
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train(tiny_settings(), data, run_dir, on_step=sigterm_at(5))
    latest = run_dir / "checkpoints/step_0000005.pt"
    latest.write_bytes(latest.read_bytes()[:100])
    with pytest.raises(ValueError, match="step_0000005.pt"):
        train(tiny_settings(), data, run_dir)


def test_checkpoint_of_other_settings_is_refused(tmp_path, data):
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train(tiny_settings(), data, run_dir, on_step=sigterm_at(5))
    with pytest.raises(ValueError, match=r"different settings \(model\)"):
        train(tiny_settings(model={"d_model": 32}), data, run_dir)
    train(tiny_settings(model={"d_model": 32}), data, run_dir, fresh=True)


def _finite_weights(path) -> dict:
    model = read_checkpoint(path)["model"] if "checkpoints" in str(path) else torch.load(path, weights_only=True)
    model = model.get("model", model)
    assert all(torch.isfinite(t).all() for t in model.values())
    return model


def test_nan_loss_stops_the_run_as_diverged(tmp_path, data, monkeypatch, caplog):
    """A diverged run is a result: it stops early, its files are written with status diverged, and
    running it again does nothing (its job succeeds, so experiment reports still build)."""
    calls = []

    def nan_after_six(logits, targets):  # training steps only: evaluation stays finite
        calls.extend([1] if torch.is_grad_enabled() else [])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, -2), targets.flatten())
        return loss * float("nan") if len(calls) > 6 and torch.is_grad_enabled() else loss

    monkeypatch.setattr(trainer, "cross_entropy", nan_after_six)
    run_dir = tmp_path / "run"
    with caplog.at_level("INFO"):
        summary = train(tiny_settings(eval_interval=100), data, run_dir)
    assert summary["status"] == "diverged" and summary["stopped"]["step"] == 7 and summary["steps"] == 6
    assert summary["stopped"]["loss"] == "nan" and "before its update" in summary["stopped"]["reason"]
    assert summary["final_val_loss"] is not None and math.isfinite(summary["final_val_loss"])
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["stopped"] == "diverged" and last["val_loss"] == summary["final_val_loss"]
    _finite_weights(run_dir / "model.pt")
    assert caplog.records[-1].getMessage().startswith("run run diverged at step 7 (loss nan")
    monkeypatch.setattr(trainer, "cross_entropy", lambda *_: pytest.fail("an ended run trained again"))
    assert train(tiny_settings(eval_interval=100), data, run_dir) == summary


def test_a_loss_that_stays_high_counts_as_diverged(tmp_path, data):
    """lr 30 sends the loss far above its start without a NaN: stopped after `patience` logged steps."""
    summary = train(tiny_settings(optimizer={"lr": 30.0}, divergence={"loss_factor": 1.5, "patience": 2}), data,
                    tmp_path / "run")
    assert summary["status"] == "diverged" and summary["steps"] < 12
    assert "has stayed above 1.5 × the initial loss" in summary["stopped"]["reason"]
    lines = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert all(line["train_loss"] > 1.5 * lines[0]["train_loss"] for line in lines[-3:-1])


def test_non_finite_weights_end_the_run_with_the_last_finite_ones(tmp_path, data, monkeypatch):
    real_step = trainer.Trainer.train_step

    def poisoned_at_8(self):
        result = real_step(self)
        if self.state.step == 8:  # e.g. an overflow that the loss did not show yet
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("nan"))
        return result

    monkeypatch.setattr(trainer.Trainer, "train_step", poisoned_at_8)
    run_dir = tmp_path / "run"
    summary = train(tiny_settings(), data, run_dir)
    assert summary["status"] == "diverged" and "non-finite weights" in summary["stopped"]["reason"]
    good = read_checkpoint(run_dir / "checkpoints/step_0000004.pt")["model"]
    final = _finite_weights(run_dir / "model.pt")
    assert all(torch.equal(good[name], final[name]) for name in good)


def checkpoint_edited(run_dir, data, step: int, edit) -> Path:
    """The checkpoint of a tiny run stopped (SIGTERM) at ``step``, changed in place by ``edit(payload)``."""
    with pytest.raises(TrainingInterrupted):
        train(tiny_settings(), data, run_dir, on_step=sigterm_at(step))
    path = run_dir / f"checkpoints/step_{step:07d}.pt"
    payload = torch.load(path, weights_only=True)
    edit(payload)
    torch.save(payload, path)
    return path


def test_a_checkpoint_holding_nan_is_named_not_blamed_on_the_learning_rate(tmp_path, data):
    """A checkpoint with NaN optimizer state once resumed into a "divergence" that blamed the learning rate."""
    run_dir = tmp_path / "run"

    def poison(payload: dict) -> None:
        for state in payload["optimizer"]["state"].values():
            state["exp_avg_sq"].fill_(float("nan"))

    latest = checkpoint_edited(run_dir, data, 9, poison)
    with pytest.raises(ValueError, match=r"step_0000009.pt \(remove it .*\): holds non-finite \(NaN or infinite\) "
                                         r"weights or optimizer state; .* damaged or foreign"):
        train(tiny_settings(), data, run_dir)
    latest.unlink()  # as the message says: the run resumes from the checkpoint before
    assert train(tiny_settings(), data, run_dir)["status"] == "finished"


def test_job_log_has_a_line_per_logged_step_and_how_the_run_ended(tmp_path, data, caplog):
    with caplog.at_level("INFO", logger="scratchlm"):
        train(tiny_settings(log_interval=3), data, tmp_path / "run")
    messages = [record.getMessage() for record in caplog.records]
    progress = [m for m in messages if ": step " in m]
    assert [m.split(": step ")[1].split()[0] for m in progress] == ["3/12", "6/12", "9/12", "12/12"]
    assert "train loss" in progress[0] and "tokens/s" in progress[0] and "left" in progress[0]
    assert messages[-1].startswith("run run finished: 12 steps, 768 tokens in ")


def test_token_ids_beyond_vocab_are_rejected(tmp_path, data):
    np.save(data["train"], np.array([1, 2, 3, 40] * 50, dtype=np.uint16))
    with pytest.raises(ValueError, match=r"tiny_train.npy: token id 40 >= vocab size 32"):
        train(tiny_settings(), data, tmp_path / "run")


@pytest.mark.parametrize("dtype, bad, message", [
    (np.int64, 2**40, r"token id 1099511627776 >= vocab size 32 \(at position 3"),  # once: "allocate 8.00 TiB"
    (np.int16, -1, r"token id -1 is negative \(at position 3"),
])
def test_out_of_range_ids_are_named_without_allocating(tmp_path, data, dtype, bad, message):
    tokens = np.array([1, 2, 3] * 100, dtype=dtype)
    tokens[3] = bad
    np.save(data["train"], tokens)
    with pytest.raises(ValueError, match=message):
        train(tiny_settings(), data, tmp_path / "run")


@pytest.mark.parametrize("devices", [1, 2])
def test_missing_split_names_the_file(tmp_path, data, devices):
    """With 2 processes this was found in each rank, after torchrun's ~60 lines, and left a run folder
    holding only its .lock; now it is named before anything starts or is written."""
    data["valid"] = str(tmp_path / "absent.npy")
    with pytest.raises(FileNotFoundError, match="absent.npy"):
        train(tiny_settings(devices=devices), data, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------- devices


def test_device_auto_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert select_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert select_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        select_device("cuda:1")


def test_cuda_precision_and_tf32():
    cuda = torch.device("cuda")
    assert autocast_dtype(cuda, "auto") is torch.bfloat16
    assert autocast_dtype(cuda, "fp32") is None
    assert autocast_dtype(torch.device("cpu"), "auto") is None
    assert autocast_dtype(torch.device("cpu"), "bf16") is torch.bfloat16
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        configure_backend(torch.device("cpu"))
        assert torch.get_float32_matmul_precision() == "highest"
        configure_backend(cuda)
        assert torch.get_float32_matmul_precision() == "high"  # TF32 matmuls
    finally:
        torch.set_float32_matmul_precision(before)


# ------------------------------------------------------------------------------ CLI and plots


def configured_project(tmp_path, data: dict, run: dict) -> tuple[Path, Path]:
    """(config.yaml, results folder) of a project whose run `tiny` is ``run``, on corpus `tiny`:
    ``data``'s splits, moved where the results layout puts them."""
    results = tmp_path / "results"
    layout = Layout(str(results))
    os.makedirs(layout.corpus_dir("tiny"))
    for split in ("train", "valid"):
        os.replace(data[split], layout.ids("tiny", split))
    config = tmp_path / "config.yaml"
    corpus = {"generator": {}, "vocab_size": 260}  # the ids use the first 32 of them
    config.write_text(yaml.safe_dump({"corpora": {"tiny": corpus}, "runs": {"tiny": run}}))
    return config, results


def test_cli_trains_a_configured_run(tmp_path, data, capsys):
    config, results = configured_project(tmp_path, data, TINY_RUN)
    args = ["train", "tiny", "--config", str(config), "--results", str(results), "--set", "steps=3"]
    assert cli_main(args) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 3
    assert cli_main([*args, "--set", "optimizer.betas=0.9"]) == 1
    assert "error: --set: optimizer.betas: Input should be a valid list, got 0.9" in capsys.readouterr().err
    overrides = tmp_path / "two-steps.yaml"
    overrides.write_text("steps: 2\nmodel: {num_layers: 2}\n")
    assert cli_main([*args[:6], "--settings", str(overrides), "--run-dir", str(tmp_path / "other")]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 2
    assert json.loads((tmp_path / "other/config.json").read_text())["model"]["num_layers"] == 2

    plot_comparison([results / "runs/tiny"], tmp_path / "compare.png")
    assert (tmp_path / "compare.png").read_bytes()[:4] == b"\x89PNG"


def test_init_from_starts_a_run_with_another_runs_weights(tmp_path, data):
    """How a run continues training from an imported Hugging Face model (scratchlm import-hf)."""
    first = tmp_path / "first"
    train(tiny_settings(steps=6), data, first)
    train(tiny_settings(steps=1, init_from=str(first), optimizer={"lr": 1e-12, "weight_decay": 0.0}), data,
          tmp_path / "second")
    before, after = (read_checkpoint(path / "model.pt")["model"] for path in (first, tmp_path / "second"))
    assert all(torch.allclose(before[name], after[name], atol=1e-6) for name in before)
    with pytest.raises(ValueError,
                       match=r"init_from .*first: its model differs from this run's in d_model \(16 vs 32\)"):
        train(tiny_settings(steps=1, init_from=str(first), model={"d_model": 32}), data, tmp_path / "third")


def test_a_model_holding_nan_is_refused_when_loaded(tmp_path, data):
    run_dir = tmp_path / "run"
    train(tiny_settings(steps=2), data, run_dir)
    payload = torch.load(run_dir / "model.pt", weights_only=True)
    next(iter(payload["model"].values())).fill_(float("nan"))
    torch.save(payload, run_dir / "model.pt")
    with pytest.raises(ValueError, match=r"model.pt: holds non-finite \(NaN or infinite\) weights"):
        load_trained_model(run_dir)


def test_a_model_too_large_for_memory_is_refused_with_the_figures(tmp_path, data):
    """d_model 65536 once died in the allocator, mid-start, with a traceback."""
    started = time.perf_counter()
    with pytest.raises(ValueError, match=r"the model needs [\d,.]+ GB for its [\d,]+ parameters, their gradients "
                                         r"and AdamW state \(float32\), but cpu has [\d,.]+ GB free"):
        train(tiny_settings(model={"d_model": 65536, "num_heads": 2}), data, tmp_path / "run")
    assert time.perf_counter() - started < 30  # refused before allocating anything


@pytest.mark.parametrize("kind", ["linear", "wsd"])
def test_runs_follow_their_schedule_to_the_final_rate(tmp_path, data, kind):
    summary = train(tiny_settings(schedule={"kind": kind, "min_lr_ratio": 0.0, "decay_fraction": 0.5}), data,
                    tmp_path / "run")
    from scratchlm.optim import schedule_lr

    rates = [json.loads(line)["lr"] for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    # 12 steps: 3 of warm-up (TINY_RUN's 0.25), wsd's decay over the last 6, down to 0 at step 12.
    assert rates == pytest.approx([schedule_lr(kind, step, 1e-2, 0.0, 3, 12, 6) for step in range(1, 13)])
    assert summary["status"] == "finished" and rates[-1] == 0.0 and rates[2] == pytest.approx(1e-2)
    assert (rates[5] == pytest.approx(1e-2)) == (kind == "wsd")  # wsd holds the peak until its decay


def test_a_checkpoint_from_before_a_new_setting_still_resumes(tmp_path, data):
    """Settings added since a checkpoint was written (schedule.kind) count as their defaults there."""
    run_dir = tmp_path / "run"

    def written_before_the_new_settings(payload: dict) -> None:
        for key in ("kind", "decay_fraction"):
            del payload["extra"]["settings"]["schedule"][key]

    checkpoint_edited(run_dir, data, 5, written_before_the_new_settings)
    assert train(tiny_settings(), data, run_dir)["steps"] == 12
