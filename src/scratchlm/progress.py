"""Progress bars for long stages (tqdm, configured in one place) and tqdm's human-readable sizes and durations."""

from __future__ import annotations

from typing import TextIO

from tqdm.auto import tqdm  # a notebook widget in Jupyter, a text bar in a terminal


def format_bytes(num_bytes: float) -> str:
    """Human-readable byte count, as tqdm writes it: ``format_bytes(1536) == '1.50kB'``."""
    return tqdm.format_sizeof(num_bytes, "B", 1024)


# ``format_duration(3725) == '1:02:05'``: tqdm's own.
format_duration = tqdm.format_interval


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
