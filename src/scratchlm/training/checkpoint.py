"""Saving and restoring training state (model, optimizer, iteration) as torch checkpoints."""

from __future__ import annotations

import os
import re
from typing import IO, Any, BinaryIO

import torch

from scratchlm.fileio import atomic_open

CHECKPOINT_KEYS = ("model", "optimizer", "iteration", "extra")


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    # torch.compile wraps the module and prefixes its state-dict keys with "_orig_mod.";
    # checkpoints always hold the plain module's keys.
    return getattr(model, "_orig_mod", model)


def _describe(src: str | os.PathLike | IO[bytes]) -> str:
    return str(src) if isinstance(src, (str, os.PathLike)) else str(getattr(src, "name", "<checkpoint stream>"))


def save_checkpoint(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, iteration: int,
                    out: str | os.PathLike | BinaryIO, *, extra: dict | None = None) -> None:
    """Write model and optimizer state, the iteration and ``extra`` (plain data) to ``out``.

    A path is written atomically (a crash never leaves a half-written checkpoint under its name),
    through a Python file object so that a full disk is an OSError naming the file rather than
    torch's "unexpected pos" message; a file object is written as is.
    """
    payload = {
        "model": _unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "iteration": int(iteration),
        "extra": dict(extra or {}),
    }
    if isinstance(out, (str, os.PathLike)):
        with atomic_open(out, "wb") as handle:
            try:
                torch.save(payload, handle)
            except RuntimeError as error:  # a short write (full disk) is torch's "unexpected pos"
                raise OSError(f"torch.save: {error}") from None  # atomic_open says whether the disk is full
    else:
        torch.save(payload, out)


def read_checkpoint(src: str | os.PathLike | BinaryIO, *, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint dict (keys model, optimizer, iteration, extra) without running pickled code.

    Raises ValueError naming the file when it is not a checkpoint written by ``save_checkpoint``.
    """
    name = _describe(src)
    try:
        payload = torch.load(src, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # torch raises several types for truncated/garbled files
        raise ValueError(f"{name}: corrupt, or not a scratchlm checkpoint ({_unreadable(error)})") from error
    if not isinstance(payload, dict) or not set(CHECKPOINT_KEYS) <= set(payload):
        found = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{name}: not a scratchlm checkpoint (expected keys {', '.join(CHECKPOINT_KEYS)}; "
                         f"found {found})")
    return payload


def _unreadable(error: Exception) -> str:
    """What made torch.load fail, without its advice to load unsafely (never right for a checkpoint of ours).

    >>> _unreadable(RuntimeError("PytorchStreamReader failed reading zip archive: failed finding central directory"))
    'RuntimeError: PytorchStreamReader failed reading zip archive: failed finding central directory'
    """
    text = str(error)
    foreign = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if foreign:
        return f"it holds a {foreign.group(1)} object, which a checkpoint never does"
    if "Weights only load failed" in text:
        return "its contents are not the tensors and plain data of a checkpoint"
    return f"{type(error).__name__}: {text.splitlines()[0] if text else 'no detail'}"


def load_checkpoint(src: str | os.PathLike | BinaryIO, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None) -> int:
    """Restore ``model`` (and ``optimizer`` if given) from ``src``; return the saved iteration."""
    checkpoint = read_checkpoint(src)
    name = _describe(src)
    try:
        _unwrap(model).load_state_dict(checkpoint["model"])
    except RuntimeError as error:  # missing/unexpected keys or shape mismatches
        raise ValueError(f"{name}: checkpoint does not match the model: {error}") from error
    if optimizer is not None:
        if checkpoint["optimizer"] is None:
            raise ValueError(f"{name}: checkpoint has no optimizer state")
        try:
            optimizer.load_state_dict(checkpoint["optimizer"])
        except (ValueError, KeyError) as error:
            raise ValueError(f"{name}: checkpoint does not match the optimizer: {error}") from error
    return checkpoint["iteration"]


def require_finite(checkpoint: dict, name: str) -> dict:
    """``checkpoint``, or a ValueError saying that its weights or optimizer state hold NaN/inf: training
    never writes such a checkpoint, so the file was damaged or made elsewhere (not a learning-rate problem)."""
    if not state_is_finite(checkpoint.get("model"), checkpoint.get("optimizer")):
        raise ValueError(f"{name}: holds non-finite (NaN or infinite) weights or optimizer state; scratchlm never "
                         f"writes such a checkpoint, so the file is damaged or foreign")
    return checkpoint


def state_is_finite(*states: Any) -> bool:
    """Whether every floating-point tensor in the (nested) state dicts is finite."""
    for state in states:
        if isinstance(state, torch.Tensor):
            if state.is_floating_point() and not bool(torch.isfinite(state).all()):
                return False
        elif isinstance(state, dict):
            if not state_is_finite(*state.values()):
                return False
        elif isinstance(state, (list, tuple)):
            if not state_is_finite(*state):
                return False
    return True
