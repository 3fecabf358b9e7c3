"""Byte-level BPE training with the exact semantics of the CS336 assignment: count pre-tokens
(in parallel, see :mod:`scratchlm.tokenizer.pretokenize`), then merge (the compiled loop of
:mod:`scratchlm.tokenizer.fast_merge`, or the reference :mod:`scratchlm.tokenizer.python_merge`),
then write the tokenizer files. ``train_from_shards`` is the pipeline's reduce stage.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Sequence

import pyarrow as pa

from scratchlm.fileio import require_file, write_json
from scratchlm.layout import Layout
from scratchlm.progress import format_bytes, progress_bar
from scratchlm.tokenizer.pretokenize import (
    ChunkCounts,
    PretokenTally,
    PretokenCounts,
    counts_arrays,
    tally_file_range,
    default_workers,
    find_chunk_boundaries,
)
from scratchlm.tokenizer.pool import worker_pool
from scratchlm.tokenizer.serialization import (
    Merges,
    Vocab,
    load_gpt2_format,
    save_gpt2_format,
    save_hf_tokenizer,
    save_pickle,
)
from scratchlm.profiling import peak_rss_bytes
from scratchlm.tokenizer.python_merge import merge_in_python
from scratchlm.tokenizer.shards import (
    arrays_table,
    read_shards,
    shard_metadata,
    sum_count_tables,
    table_counts,
    table_arrays,
)

log = logging.getLogger(__name__)

# Below this size a worker pool costs more than it saves.
MIN_PARALLEL_BYTES = 4 << 20


def train_bpe(input_path: str | os.PathLike, vocab_size: int, special_tokens: Sequence[str],
              num_workers: int | None = None) -> tuple[Vocab, Merges]:
    """Train a byte-level BPE tokenizer on a text file.

    Returns ``vocab`` (id -> bytes: special tokens, then the 256 bytes, then one token per
    merge) and ``merges`` (in creation order). Invalid UTF-8 is replaced by U+FFFD and logged.
    """
    check_vocab_size(vocab_size, special_tokens)
    chunk = count_file(input_path, special_tokens, num_workers=num_workers)
    if chunk.num_bytes == 0:
        raise ValueError(f"{input_path}: file is empty, nothing to train on")
    if chunk.invalid_utf8:
        log.warning("%s: %d invalid UTF-8 sequences replaced by U+FFFD", input_path, chunk.invalid_utf8)
    return train_from_counts(chunk.counts, vocab_size, special_tokens)


def check_vocab_size(vocab_size: int, special_tokens: Sequence[str]) -> None:
    """Raise ValueError unless ``vocab_size`` leaves room for the 256 bytes and the specials."""
    minimum = 256 + len(special_tokens)
    if vocab_size < minimum:
        raise ValueError(f"vocab_size {vocab_size} is too small: the 256 bytes and "
                         f"{len(special_tokens)} special tokens alone need {minimum}")


def count_file(input_path: str | os.PathLike, special_tokens: Sequence[str], *, num_workers: int | None = None,
               min_parallel_bytes: int = MIN_PARALLEL_BYTES) -> ChunkCounts:
    """Count the pre-tokens of a whole file, split at documents over ``num_workers`` processes,
    as ``{pre-token bytes: count}`` (:func:`count_file_table` gives them as an Arrow table)."""
    table, chunk = count_file_table(input_path, special_tokens, num_workers=num_workers,
                                    min_parallel_bytes=min_parallel_bytes)
    chunk.counts = table_counts(table)
    return chunk


def count_file_table(input_path: str | os.PathLike, special_tokens: Sequence[str], *,
                     num_workers: int | None = None,
                     min_parallel_bytes: int = MIN_PARALLEL_BYTES) -> tuple[pa.Table, ChunkCounts]:
    """The pre-token counts of a whole file as a (token, count) Arrow table, and the bookkeeping.

    Without special tokens there is no safe place to cut, so the file is counted in one process.
    """
    require_file(input_path, "corpus file")
    workers = num_workers or default_workers()
    size = os.path.getsize(input_path)
    if not special_tokens or workers == 1 or size < min_parallel_bytes:
        return _count_job((input_path, 0, size, list(special_tokens)))
    # Several chunks per worker balance the load when documents are uneven.
    bounds = find_chunk_boundaries(input_path, workers * 4, special_tokens[0].encode("utf-8"))
    jobs = [(input_path, start, end, list(special_tokens)) for start, end in zip(bounds, bounds[1:])]
    total, tables = ChunkCounts(), []
    PretokenTally.warm_up()  # load the compiled counter once, before the workers fork
    with worker_pool(workers, start_method="fork" if hasattr(os, "fork") else "spawn") as pool:
        for table, part in pool.imap_unordered(_count_job, jobs):
            tables.append(table)
            total.num_bytes += part.num_bytes
            total.invalid_utf8 += part.invalid_utf8
            total.seconds += part.seconds
    # Summed by Arrow (C++), not key by key in this process: with many rare words, the
    # workers' tables hold millions of keys each.
    return sum_count_tables(tables), total


def _count_job(job: tuple) -> tuple:
    """A worker's counts as an Arrow table (pickled as buffers), and the rest of its ChunkCounts."""
    tally, chunk = tally_file_range(*job)
    return arrays_table(tally.arrays()), chunk


def initial_vocab(special_tokens: Sequence[str]) -> Vocab:
    """Special tokens first (in order), then the 256 single bytes."""
    vocab: Vocab = {i: token.encode("utf-8") for i, token in enumerate(special_tokens)}
    vocab.update({len(special_tokens) + b: bytes([b]) for b in range(256)})
    return vocab


def train_from_counts(counts: PretokenCounts | pa.Table, vocab_size: int, special_tokens: Sequence[str], *,
                      engine: str = "auto", show_progress: bool = False) -> tuple[Vocab, Merges]:
    """The merge loop: BPE merges learned from ``{pre-token bytes: count}`` (or a (token, count)
    Arrow table of distinct pre-tokens, as shards and workers give them).

    ``engine`` is ``"numba"`` (the compiled loop of ``fast_merge``), ``"python"`` (``python_merge``,
    the reference the tests compare it with) or ``"auto"`` (numba where it is installed). Both
    give the same merges: most frequent pair first, ties to the lexicographically greater pair.

    >>> vocab, merges = train_from_counts({b"aaa": 1, b"ab": 3}, 259, [], engine="python")
    >>> merges
    [(b'a', b'b'), (b'a', b'a'), (b'aa', b'a')]
    """
    check_vocab_size(vocab_size, special_tokens)
    num_merges = vocab_size - 256 - len(special_tokens)
    progress = progress_bar("BPE merges", total=num_merges, unit="merges", quiet=not show_progress)
    with progress:
        if _use_numba(engine):
            from scratchlm.tokenizer.fast_merge import train_merges

            words = table_arrays(counts) if isinstance(counts, pa.Table) else counts_arrays(counts)
            pairs = train_merges(words, num_merges, on_progress=progress.update)
        else:
            pairs = merge_in_python(table_counts(counts) if isinstance(counts, pa.Table) else counts, num_merges,
                                    progress)
    # Internal ids: byte b is b, merge k is 256 + k; shifted past the specials at the end.
    tokens: list[bytes] = [bytes([b]) for b in range(256)]
    merges: Merges = []
    for left, right in pairs:
        merges.append((tokens[left], tokens[right]))
        tokens.append(tokens[left] + tokens[right])
    vocab = initial_vocab(special_tokens)
    offset = len(special_tokens)
    vocab.update({offset + i: token for i, token in enumerate(tokens[256:], start=256)})
    return vocab, merges


def _use_numba(engine: str) -> bool:
    if engine not in ("auto", "numba", "python"):
        raise ValueError(f"engine must be auto, numba or python, got {engine!r}")
    if engine == "python":
        return False
    try:
        import numba  # noqa: F401
    except ImportError:
        if engine == "numba":
            raise
        log.warning("numba is not installed: using the pure-Python merge loop (5-10x slower)")
        return False
    return True


# --- Pipeline stage: shards in, tokenizer files + summary out --------------------------------

def train_into_layout(shards: Sequence[str | os.PathLike], layout: Layout, name: str, *, vocab_size: int,
                      special_tokens: Sequence[str]) -> dict:
    """``train_from_shards`` into the results layout's files for tokenizer ``name`` (the rule's and the
    command's entry)."""
    return train_from_shards(shards, vocab_size=vocab_size, special_tokens=special_tokens,
                             **layout.tokenizer_files(name))


def train_from_shards(shards: Sequence[str | os.PathLike], *, vocab_size: int, special_tokens: Sequence[str],
                      vocab_pkl: str | os.PathLike, merges_pkl: str | os.PathLike, vocab_json: str | os.PathLike,
                      merges_txt: str | os.PathLike, summary_json: str | os.PathLike,
                      tokenizer_json: str | os.PathLike | None = None) -> dict:
    """The reduce stage: sum pre-token shards, learn merges, write the tokenizer and a summary."""
    check_vocab_size(vocab_size, special_tokens)
    began = time.perf_counter()
    table, chunk = read_shards(shards)
    reduced = time.perf_counter()
    if chunk.num_bytes == 0:
        raise ValueError(f"shards {', '.join(map(str, shards))}: no text at all, nothing to train on")
    if chunk.invalid_utf8:
        log.warning("%d invalid UTF-8 sequences were replaced by U+FFFD", chunk.invalid_utf8)
    log.info("%d shards: %d distinct pre-tokens from %s", len(shards), table.num_rows, format_bytes(chunk.num_bytes))
    vocab, merges = train_from_counts(table, vocab_size, special_tokens, show_progress=True)
    merged = time.perf_counter()
    write_tokenizer(vocab, merges, special_tokens=special_tokens, vocab_pkl=vocab_pkl, merges_pkl=merges_pkl,
                    vocab_json=vocab_json, merges_txt=merges_txt, tokenizer_json=tokenizer_json)
    summary = {
        "vocab_size": len(vocab), "requested_vocab_size": vocab_size, "num_merges": len(merges),
        "special_tokens": list(special_tokens), "input_bytes": chunk.num_bytes,
        "invalid_utf8": chunk.invalid_utf8, "distinct_pretokens": table.num_rows, "shards": len(shards),
        "longest_tokens": [token.decode("utf-8", errors="backslashreplace")
                           for token in sorted((a + b for a, b in merges), key=len, reverse=True)[:10]],
        "timing_s": {"pretokenize_total": round(chunk.seconds, 3), "reduce_shards": round(reduced - began, 3),
                     "merge": round(merged - reduced, 3)},
        "peak_rss_mb": {"pretokenize_shard_max": round(_max_shard_rss(shards) / 2**20, 1),
                        "train": round(peak_rss_bytes() / 2**20, 1)},
    }
    write_json(summary_json, summary, ensure_ascii=False)
    log.info("trained %d merges in %.1fs (reduce %.1fs)", len(merges), merged - reduced, reduced - began)
    return summary


def _max_shard_rss(shards: Sequence[str | os.PathLike]) -> int:
    return max((shard_metadata(path)["peak_rss_bytes"] for path in shards), default=0)


def write_tokenizer(vocab: Vocab, merges: Merges, *, special_tokens: Sequence[str], vocab_pkl: str | os.PathLike,
                    merges_pkl: str | os.PathLike, vocab_json: str | os.PathLike,
                    merges_txt: str | os.PathLike, tokenizer_json: str | os.PathLike | None = None) -> None:
    """Write pickles, GPT-2 text files and (if asked) a Hugging Face tokenizer.json, then check
    that the text files read back identically."""
    save_pickle(vocab, vocab_pkl)
    save_pickle(merges, merges_pkl)
    if tokenizer_json is not None:
        save_hf_tokenizer(vocab, merges, tokenizer_json, special_tokens=list(special_tokens))
    save_gpt2_format(vocab, merges, vocab_json, merges_txt, special_tokens=list(special_tokens))
    again_vocab, again_merges = load_gpt2_format(vocab_json, merges_txt, special_tokens=list(special_tokens))
    if again_vocab != vocab or again_merges != merges:
        raise RuntimeError(f"{vocab_json}, {merges_txt}: GPT-2 form does not round-trip the trained tokenizer")
