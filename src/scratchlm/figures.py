"""PNG figures for runs and reports: headless matplotlib, written atomically."""

from __future__ import annotations

import math
import os
from typing import Any, Iterable

from scratchlm.fileio import atomic_path


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend (never needs a display); imported on use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def finite(value: Any) -> bool:
    """A number that can be plotted."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def log_scale_if_wide(ax: Any, values: Iterable[float], *, axis: str = "y", factor: float = 3.0) -> None:
    """A log scale on ``axis`` where the (positive, finite) values span more than ``factor``: a loss
    falling from ln(vocab) to 1 leaves its last, slowest part visible."""
    from matplotlib.ticker import FuncFormatter

    values = [v for v in values if finite(v)]
    if values and min(values) > 0 and max(values) / min(values) > factor:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
        plain = FuncFormatter(lambda value, _: f"{value:g}")  # 2, 3, 4 rather than 2×10⁰, 3×10⁰, 4×10⁰
        scale_axis = ax.yaxis if axis == "y" else ax.xaxis
        scale_axis.set_major_formatter(plain)
        scale_axis.set_minor_formatter(plain)


def save_figure(fig: Any, path: str | os.PathLike, *, dpi: int = 120) -> None:
    """Lay out ``fig`` (matplotlib's constrained layout, which makes room for legends placed outside
    the axes, unless the figure chose another), write it as a PNG through a temporary file, close it."""
    if fig.get_layout_engine() is None:
        fig.set_layout_engine("constrained")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    pyplot().close(fig)
