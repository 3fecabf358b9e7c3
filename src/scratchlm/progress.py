"""Progress bars for long stages (tqdm, configured in one place) and tqdm's human-readable sizes and durations."""

from __future__ import annotations

import contextlib
from typing import Any, TextIO

from tqdm.auto import tqdm  # a notebook widget in Jupyter, a text bar in a terminal
from tqdm.contrib.logging import logging_redirect_tqdm


class _Bar(tqdm):
    """A bar that, while it draws, sends the records of the console's logging handlers through
    ``tqdm.write``: an evaluation line is printed above the bar, not into the middle of it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._logging = contextlib.ExitStack()
        if not self.disable:
            self._logging.enter_context(logging_redirect_tqdm(tqdm_class=tqdm))

    def close(self) -> None:
        super().close()
        if hasattr(self, "_logging"):
            self._logging.close()


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
    Log records go through the bar while it draws (see ``_Bar``).

    >>> import io
    >>> progress_bar("docs", total=3, unit="docs", file=io.StringIO()).disable  # off a terminal: silent
    True
    """
    is_bytes = unit == "bytes"
    return _Bar(desc=desc, total=total, unit="B" if is_bytes else f" {unit}", unit_scale=is_bytes,
                unit_divisor=1024 if is_bytes else 1000, disable=True if quiet else None, file=file,
                dynamic_ncols=True, mininterval=0.2)
