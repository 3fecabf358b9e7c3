"""Progress bars for long stages (tqdm, configured in one place) and human-readable sizes and durations."""

from __future__ import annotations

from typing import TextIO

from tqdm.auto import tqdm  # a notebook widget in Jupyter, a text bar in a terminal


def format_bytes(num_bytes: float) -> str:
    """Human-readable byte count: ``format_bytes(1536) == '1.5 KB'``."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(num_bytes) < 1024 or unit == "TB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """``format_duration(3725) == '1:02:05'``."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def progress_bar(desc: str, total: float | None = None, *, unit: str = "bytes", quiet: bool = False,
                 file: TextIO | None = None) -> tqdm:
    """A tqdm bar on stderr: ``unit="bytes"`` shows sizes and MB/s, other units counts per second.

    It draws only on a terminal (or in a notebook), so job logs stay readable; ``quiet`` turns it
    off everywhere (e.g. on training ranks other than 0). Use ``set_postfix_str`` for a status.

    >>> import io
    >>> progress_bar("docs", total=3, unit="docs", file=io.StringIO()).disable  # off a terminal: silent
    True
    """
    is_bytes = unit == "bytes"
    return tqdm(desc=desc, total=total, unit="B" if is_bytes else f" {unit}", unit_scale=is_bytes,
                unit_divisor=1024 if is_bytes else 1000, disable=True if quiet else None, file=file,
                dynamic_ncols=True, mininterval=0.2)
