"""PNG figures for runs and reports: headless matplotlib, written atomically."""

from __future__ import annotations

import os
from typing import Any

from scratchlm.fileio import atomic_path


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend (never needs a display); imported on use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike, *, dpi: int = 120) -> None:
    """Lay out ``fig``, write it as a PNG through a temporary file, and close it."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    pyplot().close(fig)
