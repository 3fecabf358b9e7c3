"""The run folder: its checkpoints, provenance, the trainer's lock, and moving an old run aside
(the names of its files: ``scratchlm.layout.RunFiles``).

``results/runs/{run}/`` holds config.json, metrics.jsonl, checkpoints/ (the last ``keep_last``),
and at the end model.pt + model.json, summary.json and curves.png; ``.lock`` is held by the one
trainer writing it, and ``replaced/{UTC time}/`` keeps earlier runs moved aside by ``--fresh``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from scratchlm.fileio import atomic_path, exclusive_lock, read_json_object
from scratchlm.layout import RunFiles, require_run_folder
from scratchlm.nn import ModelConfig, TransformerLM
from scratchlm.pipeline import describe_error
from scratchlm.training.checkpoint import read_checkpoint, require_finite
from scratchlm.training.distributed import LAUNCH_PREFIX

log = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"step_(\d+)\.pt")


def checkpoint_files(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of the checkpoints in ``folder``, oldest first."""
    found = [(int(m.group(1)), p) for p in folder.glob("step_*.pt") if (m := CHECKPOINT_PATTERN.fullmatch(p.name))]
    return sorted(found)


def prune_checkpoints(folder: Path, keep_last: int) -> None:
    for _, path in checkpoint_files(folder)[:-keep_last]:
        path.unlink()


def latest_checkpoint(folder: Path) -> tuple[Path, dict] | None:
    """(path, checkpoint) of the newest checkpoint in ``folder``, read once (to the CPU), or None."""
    saved = checkpoint_files(folder)
    if not saved:
        return None
    return saved[-1][1], read_checkpoint(saved[-1][1])


# ---------------------------------------------------------------------------------- provenance


def git_revision() -> str | None:
    """The commit of the source tree (with ``-dirty`` if it has uncommitted changes), or None."""
    source = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if rev.returncode:
        return None
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def package_versions() -> dict[str, str | None]:
    from scratchlm import __version__

    return {"scratchlm": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "cuda": torch.version.cuda}


def relative_to_run(path: str | Path | None, run_dir: Path) -> str | None:
    """``path`` relative to the run folder (model.json must not depend on the working directory)."""
    return None if path is None else os.path.relpath(Path(path).resolve(), run_dir.resolve())


def plain_paths(data: dict) -> dict:
    """``data`` with its paths as strings (for JSON)."""
    return {key: str(value) if isinstance(value, Path) else value for key, value in data.items()}


def copy_atomically(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` through a temporary file, so ``dst`` is never half-written."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def keep_final_files(run_dir: Path) -> None:
    """Link (copy, where links are not possible) the run's final files into ``RunFiles.kept``."""
    files = RunFiles(run_dir)
    files.kept.mkdir(parents=True, exist_ok=True)
    for name in RunFiles.FINAL:
        _link_or_copy(run_dir / name, files.kept / name)


def restore_final_files(run_dir: Path) -> list[str]:
    """Put back the final files that are missing from the run folder (deleted by Snakemake before it
    reruns the job) from ``RunFiles.kept``; returns their names."""
    files, restored = RunFiles(run_dir), []
    for name in RunFiles.FINAL:
        if not (run_dir / name).exists() and (files.kept / name).is_file():
            _link_or_copy(files.kept / name, run_dir / name)
            restored.append(name)
    return restored


def _link_or_copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:  # a file system without hard links
            shutil.copyfile(src, tmp)


def run_folder_lock(run_dir: Path) -> contextlib.AbstractContextManager:
    """Held by the one trainer writing ``run_dir``; a second one fails at once, naming the holder."""
    return exclusive_lock(RunFiles(run_dir).lock, what=f"run folder {run_dir}")


def move_aside(run_dir: Path) -> Path | None:
    """Move everything in ``run_dir`` (but its lock, earlier replaced runs and a launcher's working
    folder) to ``replaced/{UTC time}/``."""
    files = RunFiles(run_dir)
    entries = [entry for entry in run_dir.iterdir() if entry not in (files.lock, files.replaced)
               and not entry.name.startswith(LAUNCH_PREFIX)]  # a launcher's working folder stays where it runs
    if not entries:
        return None
    target = files.replaced / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    suffix = 0
    while target.exists():
        suffix += 1
        target = target.with_name(f"{target.name.split('.')[0]}.{suffix}")
    target.mkdir(parents=True)
    for entry in entries:
        os.replace(entry, target / entry.name)
    log.warning("%s: the previous run was moved to %s (delete it when no longer needed)", run_dir, target)
    return target


def load_trained_model(run_dir: str | Path, *, device: str | torch.device = "cpu") -> tuple[TransformerLM, dict]:
    """The final model of a finished run (in eval mode) and its model.json metadata."""
    files = RunFiles(require_run_folder(run_dir))
    if not files.meta.is_file():
        raise FileNotFoundError(f"no trained model in {run_dir} (missing {files.meta.name}; has the run finished?)")
    meta = read_json_object(files.meta, keys=("model",), what="model.json")
    try:
        config = ModelConfig.from_dict(meta["model"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"{files.meta}: no valid model configuration ({describe_error(error)})") from None
    model = TransformerLM.from_config(config, device=device)
    checkpoint = require_finite(read_checkpoint(files.model, map_location=device), str(files.model))
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as error:
        raise ValueError(f"{files.model}: weights do not match {files.meta.name}: {error}") from error
    return model.eval(), meta
