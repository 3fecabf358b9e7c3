"""A dependency-free progress bar for long stages (bytes or items, rate, ETA) on stderr."""

from __future__ import annotations

import sys
import time
from typing import TextIO


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


class Progress:
    """Progress reporter: redraws one line on a terminal, prints a line every few seconds otherwise.

    ``unit="bytes"`` formats counts as sizes and the rate as MB/s; ``quiet`` draws nothing.
    """

    def __init__(
        self,
        desc: str,
        total: float | None = None,
        *,
        unit: str = "bytes",
        stream: TextIO | None = None,
        min_interval: float | None = None,
        quiet: bool = False,
    ) -> None:
        self.desc, self.total, self.unit, self.quiet = desc, total, unit, quiet
        self.stream = stream if stream is not None else sys.stderr
        self.is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.min_interval = min_interval if min_interval is not None else (0.2 if self.is_tty else 10.0)
        self.done = 0.0
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self.extra = ""

    def _fmt(self, amount: float) -> str:
        return format_bytes(amount) if self.unit == "bytes" else f"{amount:,.0f} {self.unit}"

    def line(self) -> str:
        """The current status line."""
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        rate_txt = f"{format_bytes(rate)}/s" if self.unit == "bytes" else f"{rate:,.1f} {self.unit}/s"
        parts = [self.desc]
        if self.total:
            pct = 100.0 * self.done / self.total
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            eta_txt = format_duration(eta) if eta != float("inf") else "?"
            parts.append(f"{pct:5.1f}% {self._fmt(self.done)}/{self._fmt(self.total)}")
            parts.append(f"{rate_txt} elapsed {format_duration(elapsed)} eta {eta_txt}")
        else:
            parts.append(f"{self._fmt(self.done)} {rate_txt} elapsed {format_duration(elapsed)}")
        if self.extra:
            parts.append(self.extra)
        return " | ".join(parts)

    def update(self, amount: float = 1, *, extra: str | None = None) -> None:
        """Advance by ``amount``; redraw when enough time has passed."""
        self.done += amount
        if extra is not None:
            self.extra = extra
        now = time.perf_counter()
        if now - self._last_draw >= self.min_interval:
            self._draw()
            self._last_draw = now

    def _draw(self, final: bool = False) -> None:
        if self.quiet:  # e.g. training ranks other than 0
            return
        if self.is_tty:
            self.stream.write("\r\033[K" + self.line() + ("\n" if final else ""))
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Draw the final line."""
        self._draw(final=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
