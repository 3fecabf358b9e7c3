"""The training stage: train a TransformerLM run on memmapped token arrays, resumably.

A run folder ``results/runs/{run}/`` (its files: ``scratchlm.layout.RunFiles``) holds config.json
(every setting, git revision, package versions), metrics.jsonl (one JSON line per log step),
checkpoints/ (the last ``keep_last``, written atomically), and at the end model.pt + model.json,
summary.json and curves.png. Restarting a run that did not finish resumes from its latest
checkpoint (model, optimizer, step, RNG states), so its curve continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Callable

import torch

from scratchlm.fileio import read_json_object
from scratchlm.layout import Layout, RunFiles
from scratchlm.training import distributed
from scratchlm.settings import CorpusSettings, RunSettings
from scratchlm.tokenizer.encode import open_ids
from scratchlm.training.run_folder import (
    latest_checkpoint,
    move_aside,
    plain_paths,
    restore_final_files,
    run_folder_lock,
)
from scratchlm.training.session import TrainingDiverged, TrainingInterrupted
from scratchlm.training.trainer import Trainer

__all__ = ["TrainingDiverged", "TrainingInterrupted", "Trainer", "corpus_data", "train"]

log = logging.getLogger(__name__)


def train(settings: RunSettings, data: dict, run_dir: str | Path, *, run_name: str | None = None, fresh: bool = False,
          replace_finished: bool = False, threads: int | None = None,
          on_step: Callable[[int, dict], None] | None = None) -> dict:
    """Train one run into ``run_dir``; returns the summary (also written to summary.json).

    ``settings`` is a resolved run (``config.resolve_run``); ``data`` has ``train`` and ``valid``
    (.npy paths), ``vocab_size`` and optionally ``vocab``/``merges`` (tokenizer paths, recorded in
    model.json). An unfinished run resumes from its latest checkpoint. A finished run is left as
    it is (its summary is returned) unless ``fresh``; ``fresh`` moves the old run's files aside
    (``replaced/{time}/`` in the run folder) and starts over. ``replace_finished`` (what the
    pipeline asks, since Snakemake reruns a job only when its inputs changed) also starts over,
    moving the old files aside, when the run finished or was written with other settings.
    The run folder is locked for the whole call: a second trainer on it fails at once.
    ``threads`` sets torch's CPU threads; ``on_step(step, metrics_line)`` is called after
    every step (tests use it).
    """
    if threads:
        torch.set_num_threads(threads)
    run_dir = Path(run_dir)
    ranks = distributed.ranks_from_env()
    if not ranks.distributed:  # missing data is named now, before a run folder, a lock or torchrun's pages
        for split in ("train", "valid"):
            open_ids(data[split])
    if settings.world_size > 1 and not ranks.distributed:  # start the processes ourselves
        job = {"settings": settings.to_dict(), "data": plain_paths(data),
               "run_dir": str(run_dir), "run_name": run_name or run_dir.name, "fresh": fresh,
               "replace_finished": replace_finished,
               "threads": max(1, threads // settings.devices) if threads else None}  # shared by a node's processes
        with run_folder_lock(run_dir):
            return distributed.launch(job, settings.devices, run_dir, settings.nodes)
    if ranks.distributed and ranks.world != settings.world_size:
        log.warning("run %s sets nodes × devices = %d but runs in %d processes (torchrun decides)",
                    run_name or run_dir.name, settings.world_size, ranks.world)
    lock_here = ranks.is_main and not os.environ.get(distributed.LOCK_HELD_ENV)
    with run_folder_lock(run_dir) if lock_here else contextlib.nullcontext():
        trainer = Trainer(settings, data, run_dir, run_name=run_name or run_dir.name)
        try:
            return _prepare_and_run(trainer, fresh=fresh, replace_finished=replace_finished, on_step=on_step)
        finally:
            distributed.shutdown()


def _prepare_and_run(trainer: Trainer, *, fresh: bool, replace_finished: bool,
                     on_step: Callable[[int, dict], None] | None) -> dict:
    """Rank 0 decides what the run folder holds (move aside, already finished); every rank follows."""
    finished, latest = None, None
    if trainer.ranks.is_main:
        latest = latest_checkpoint(trainer.checkpoint_dir)
        if fresh or (replace_finished and _is_stale(trainer, latest)):
            restore_final_files(trainer.run_dir)  # the old run is moved aside whole
            move_aside(trainer.run_dir)
            latest = None
        else:
            finished = _finished_summary(trainer, latest)
    finished = distributed.from_main(finished, trainer.ranks)
    if finished is not None:
        return finished
    # from_main was a collective: rank 0 has moved the old run aside, if it had to, by now.
    trainer.resume(latest if trainer.ranks.is_main else latest_checkpoint(trainer.checkpoint_dir))
    if trainer.ranks.is_main:
        trainer.write_run_files()
    distributed.barrier(trainer.ranks)
    log.info("run %s: %d steps of %d tokens on %s × %d, %.2fM parameters, unigram entropy %.4f nats",
             trainer.run_name, trainer.steps, trainer.settings.tokens_per_step,
             trainer.device, trainer.ranks.world, sum(p.numel() for p in trainer.model.parameters()) / 1e6,
             trainer.unigram_entropy)
    return trainer.run(on_step=on_step)


def _ended(latest: tuple[Path, dict]) -> bool:
    """Whether ``latest`` is the last checkpoint of a run: at its last step, or stopped early (diverged)."""
    extra = latest[1]["extra"]
    return extra.get("steps") == latest[1]["iteration"] or bool(extra.get("stopped"))


def _is_stale(trainer: Trainer, latest: tuple[Path, dict] | None) -> bool:
    """Whether ``latest`` is the checkpoint of a run that ended or of one with other settings."""
    if latest is None:
        return False
    extra = latest[1]["extra"]
    return _ended(latest) or bool(trainer.settings.differing_from(extra.get("settings", {}), extra.get("steps")))


def _finished_summary(trainer: Trainer, latest: tuple[Path, dict] | None) -> dict | None:
    """For a run that already ended: its summary (final files rewritten if any is missing); else None."""
    if latest is None or not _ended(latest):
        return None
    trainer.resume(latest)  # checks the settings match (else: a clear error suggesting --fresh)
    restore_final_files(trainer.run_dir)  # the files as they were written, where links were kept
    if all((trainer.run_dir / name).is_file() for name in RunFiles.FINAL):
        log.info("run %s already ended (%s); nothing to do (--fresh trains it again, moving this one aside)",
                 trainer.run_name, latest[0])
        return read_json_object(trainer.files.summary, what="run summary")
    log.info("run %s finished at %s but some final files are missing; writing them again", trainer.run_name,
             latest[0])
    trainer.write_run_files()
    return trainer.finish()


def corpus_data(name: str, corpus: CorpusSettings, layout: Layout) -> dict:
    """What ``train`` needs of a corpus: its encoded splits and tokenizer files in ``layout``, and
    its vocabulary size and special tokens (the pipeline's train rule and ``scratchlm train`` both call this)."""
    return {"corpus": name, "train": layout.ids(name, "train"), "valid": layout.ids(name, "valid"),
            "vocab": layout.vocab_pkl(name), "merges": layout.merges_pkl(name),
            "vocab_size": corpus.vocab_size, "special_tokens": list(corpus.special_tokens)}


def main(argv: list[str] | None = None) -> int:
    """Entry point of each process ``distributed.launch`` starts under torchrun: ``train(**job)`` from
    the job file named in ``argv``; rank 0 writes the result (summary or error) for the launcher."""
    from scratchlm.pipeline import configure_logging

    configure_logging()
    distributed.die_with_parent()  # torchrun gone (its launcher killed): checkpoint and stop
    job = json.loads(Path((argv or sys.argv[1:])[0]).read_text())
    result_file = Path(job.pop("result_file"))
    ranks = distributed.ranks_from_env()
    try:
        result: dict = {"summary": train(**{**job, "settings": RunSettings.from_dict(job["settings"])})}
        status = 0
    except TrainingInterrupted as stop:
        result, status = {"error": "TrainingInterrupted", "message": str(stop), "signum": stop.signum}, 0
    except Exception as error:  # handed to the launcher, which raises it again
        result, status = {"error": type(error).__name__, "message": str(error)}, 1
    if ranks.is_main:
        result_file.write_text(json.dumps(result))
    return status


if __name__ == "__main__":
    sys.exit(main())
