"""Where training runs: device choice, precision, TF32, and torch.compile with an eager fallback."""

from __future__ import annotations

import contextlib
import logging
import platform
import re
from typing import Any, Callable

import torch

from scratchlm.settings.run import DEVICE_PATTERN

log = logging.getLogger(__name__)


def select_device(requested: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device that is unavailable is an error."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    device = parse_device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} requested but CUDA is not available (torch {torch.__version__})")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {requested!r} requested but MPS is not available")
    return device


def parse_device(text: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps`` as a torch.device; ValueError for anything else.

    >>> parse_device("cuda:1")
    device(type='cuda', index=1)
    """
    if text == "auto" or not re.fullmatch(DEVICE_PATTERN, text):
        raise ValueError(f"unknown device {text!r}: use auto, cpu, cuda, cuda:N or mps")
    return torch.device(text)


def device_name(device: torch.device) -> str:
    """The accelerator's product name (e.g. for peak-FLOP/s tables), or the CPU's."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return _cpu_model() or platform.processor() or platform.machine()
    return device.type


def _cpu_model() -> str | None:
    """The "model name" line of /proc/cpuinfo (Linux), else None."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def free_memory_bytes(device: torch.device) -> int | None:
    """Memory the device can still give: free GPU memory, or available RAM for the CPU; None if unknown (MPS)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        import psutil

        return psutil.virtual_memory().available
    return None


def check_model_fits(config: Any, device: torch.device, *, micro_batch: int) -> None:
    """Refuse, with the figures, a model whose float32 weights, gradients and AdamW moments alone
    exceed the device's free memory (else it fails later in the allocator); warn when the
    estimated activations of one micro-batch (an upper bound: attention is computed in chunks) would."""
    from scratchlm.nn.accounting import adamw_memory, parameter_counts

    free = free_memory_bytes(device)
    if free is None:
        return
    memory = adamw_memory(config)
    if memory.fixed_bytes > free:
        raise ValueError(f"the model needs {memory.fixed_bytes / 1e9:,.1f} GB for its "
                         f"{parameter_counts(config)['total']:,} parameters, their gradients and AdamW state "
                         f"(float32), but {device} has {free / 1e9:,.1f} GB free: make it smaller (d_model, "
                         f"num_layers, d_ff)")
    if memory.total_bytes(micro_batch) > free:
        log.warning("the model and the activations of a micro-batch of %d sequences may need up to %.1f GB, more "
                    "than the %.1f GB free on %s; if it runs out of memory, raise grad_accum_steps", micro_batch,
                    memory.total_bytes(micro_batch) / 1e9, free / 1e9, device)


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """bf16 autocast on CUDA (``auto``) or when asked (``bf16``); None means plain fp32."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def configure_backend(device: torch.device) -> None:
    """TF32 matmuls on CUDA: ~fp32 accuracy for the fp32 parts at tensor-core speed."""
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
        torch.backends.cudnn.allow_tf32 = True


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``, or nothing when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def wants_compile(setting: bool | str, device: torch.device) -> bool:
    """``compile: auto`` compiles on CUDA only (on CPU compilation costs more than it saves here)."""
    return device.type == "cuda" if setting == "auto" else bool(setting)


class CompiledOrEager:
    """``torch.compile(module)``, falling back to ``module`` itself, with one clear warning, if
    compilation fails (no C compiler, an unsupported GPU or torch build...).

    torch compiles lazily, on the first call, so the fallback happens there.
    """

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self.compiled: Callable[..., Any] | None = torch.compile(module)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as error:  # dynamo/inductor raise many types
                first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
                log.warning("torch.compile failed (%s: %s); training continues without compilation "
                            "(set compile: false to skip the attempt)", type(error).__name__, first_line[:300])
                self.compiled = None
        return self.module(*args, **kwargs)
