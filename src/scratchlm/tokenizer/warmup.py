"""The tokenizer's compiled code built before its first use, with progress (``scratchlm compile``,
which ``make install`` runs): the ahead-of-time encoder module, then numba's cached machine code
for counting, merging, encoding and decoding, compiled by running each once on a small sample.
Otherwise the first pipeline stages spend a minute or more compiling in silence.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

from scratchlm.settings.project import END_OF_TEXT as EOT

SAMPLE = ("Once upon a time there was a little robot named Pip. Pip liked to count the stars, "
          "café and naïve and 😀 too. ") * 40


def compile_kernels(report: Callable[[str], None] = print) -> None:
    """Build every compiled kernel now (each step ``report``ed with its time); a no-op where built."""
    from scratchlm.tokenizer.compiled import ahead_of_time_module

    started = time.perf_counter()
    report("compiling the tokenizer's kernels (once per machine and source version; about a minute) ...")
    module = ahead_of_time_module()
    report(f"  encoder and decoder, ahead of time: {'ready' if module else 'not built, numba JIT instead'} "
           f"({time.perf_counter() - started:.0f} s)")
    step = time.perf_counter()
    _run_every_kernel()
    report(f"  counting, merging, encoding with numba: cached ({time.perf_counter() - step:.0f} s)")


def _run_every_kernel() -> None:
    """Train, encode and decode a tiny tokenizer: each compiled path runs once (and is cached)."""
    from scratchlm.tokenizer import Tokenizer, train_bpe

    with tempfile.TemporaryDirectory(prefix="scratchlm-compile-") as folder:
        text = Path(folder) / "sample.txt"
        text.write_text(EOT.join([SAMPLE] * 3), encoding="utf-8")
        vocab, merges = train_bpe(text, 300, [EOT], num_workers=1)
    tokenizer = Tokenizer(vocab, merges, [EOT])
    ids = tokenizer.encode(SAMPLE + EOT + SAMPLE)
    if tokenizer.decode(ids) != SAMPLE + EOT + SAMPLE:
        raise RuntimeError("the compiled tokenizer does not round-trip its own sample")
