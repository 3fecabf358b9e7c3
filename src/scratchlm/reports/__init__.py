"""Human-readable reports of the pipeline, one module each (``scratchlm report KIND`` writes one);
the helpers for the markdown they write live here."""

from __future__ import annotations

import os
from pathlib import Path


def relative_link(target: str | os.PathLike, document: str | os.PathLike) -> str:
    """Path of ``target`` relative to the folder of ``document``, with / separators, for markdown links.

    >>> relative_link("results/runs/demo/curves.png", "results/reports/training.md")
    '../runs/demo/curves.png'
    """
    return Path(os.path.relpath(Path(target).resolve(), Path(document).resolve().parent)).as_posix()


def markdown_table(header: list[str], rows: list[list[object]]) -> list[str]:
    """Lines of a markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
