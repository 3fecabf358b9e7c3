"""The real-text benchmark corpus shared by the tokenizer benchmarks (not a benchmark itself).

``benchmarks/data/docs-corpus.sh`` builds docs_train.txt (30 MB) and docs_valid.txt (5 MB)
from Debian documentation packages into the git-ignored ``.bench/``, once: a lock keeps two
benchmarks started together from building it twice.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / ".bench"
MAKE_DOCS = ROOT / "benchmarks" / "data" / "docs-corpus.sh"


def docs_corpus(split: str) -> Path:
    """Path of docs_{split}.txt (split: train or valid), building the corpus first if missing."""
    docs = BENCH_DIR / f"docs_{split}.txt"
    if not docs.exists():
        command = f"test -s {docs} || {MAKE_DOCS} {BENCH_DIR}"
        subprocess.run(["flock", "/tmp/docs-corpus.lock", "bash", "-c", command], check=True)
    return docs
