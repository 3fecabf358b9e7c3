"""Byte-level BPE training with the exact semantics of the CS336 assignment.

Pre-tokens are counted once (in parallel, see :mod:`scratchlm.tokenizer.pretokenize`), then
each distinct pre-token becomes a *word*: a list of token ids weighted by its count. The merge
loop keeps

* ``pair_counts``: adjacent pair -> summed count over all words,
* ``pair_words``: adjacent pair -> ids of the words that contain it (may hold stale ids
  and repeats, skipped when visited),
* a heap of ``(-count, reversed bytes key, pair)`` with lazy invalidation (an entry whose
  count went down is re-pushed when it reaches the top; the heap is rebuilt from the live
  counts once it has grown 4x, so stale entries cannot pile up),

so each merge only touches the words that contain the merged pair.
"""

from __future__ import annotations

import argparse
import heapq
import logging
import os
import time
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Sequence

from scratchlm.fileio import require_file, write_json
from scratchlm.progress import format_bytes, progress_bar
from scratchlm.tokenizer.pretokenize import (
    ChunkCounts,
    PretokenCounts,
    count_file_range,
    default_workers,
    find_chunk_boundaries,
)
from scratchlm.tokenizer.serialization import (
    Merges,
    Vocab,
    load_gpt2_format,
    save_gpt2_format,
    save_hf_tokenizer,
    save_pickle,
)
from scratchlm.profiling import peak_rss_bytes
from scratchlm.tokenizer.shards import counts_table, read_shards, shard_metadata, sum_count_tables, table_counts

log = logging.getLogger(__name__)

Pair = tuple[int, int]
# Below this size a worker pool costs more than it saves.
MIN_PARALLEL_BYTES = 4 << 20
# The heap is never rebuilt below this size (rebuilding a small heap buys nothing).
MIN_COMPACT = 1 << 16


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
    """Count the pre-tokens of a whole file, split at documents over ``num_workers`` processes.

    Without special tokens there is no safe place to cut, so the file is counted in one process.
    """
    require_file(input_path, "corpus file")
    workers = num_workers or default_workers()
    size = os.path.getsize(input_path)
    if not special_tokens or workers == 1 or size < min_parallel_bytes:
        return count_file_range(input_path, 0, size, special_tokens)
    # Several chunks per worker balance the load when documents are uneven.
    bounds = find_chunk_boundaries(input_path, workers * 4, special_tokens[0].encode("utf-8"))
    jobs = [(input_path, start, end, list(special_tokens)) for start, end in zip(bounds, bounds[1:])]
    total, tables = ChunkCounts(), []
    with get_context("fork" if hasattr(os, "fork") else "spawn").Pool(workers) as pool:
        for table, part in pool.imap_unordered(_count_job, jobs):
            tables.append(table)
            total.num_bytes += part.num_bytes
            total.invalid_utf8 += part.invalid_utf8
            total.seconds += part.seconds
    # Summed by Arrow (C++), not key by key in this process: with many rare words, the
    # workers' tables hold millions of keys each.
    total.counts = table_counts(sum_count_tables(tables))
    return total


def _count_job(job: tuple) -> tuple:
    """A worker's counts as an Arrow table (pickled as buffers), and the rest of its ChunkCounts."""
    chunk = count_file_range(*job)
    table, chunk.counts = counts_table(chunk.counts), {}
    return table, chunk


def initial_vocab(special_tokens: Sequence[str]) -> Vocab:
    """Special tokens first (in order), then the 256 single bytes."""
    vocab: Vocab = {i: token.encode("utf-8") for i, token in enumerate(special_tokens)}
    vocab.update({len(special_tokens) + b: bytes([b]) for b in range(256)})
    return vocab


def train_from_counts(counts: PretokenCounts, vocab_size: int, special_tokens: Sequence[str], *,
                      engine: str = "auto", show_progress: bool = False) -> tuple[Vocab, Merges]:
    """The merge loop: BPE merges learned from ``{pre-token bytes: count}``.

    ``engine`` is ``"numba"`` (the compiled loop of ``fast_merge``), ``"python"`` (``_Merger``,
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

            pairs = train_merges(counts, num_merges, on_progress=progress.update)
        else:
            pairs = _merge_in_python(counts, num_merges, progress)
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


def _merge_in_python(counts: PretokenCounts, num_merges: int, progress: Any) -> list[tuple[int, int]]:
    """The reference merge loop: (left, right) ids of each merge, as ``fast_merge.train_merges``."""
    tokens: list[bytes] = [bytes([b]) for b in range(256)]
    merger = _Merger(counts)
    pairs: list[tuple[int, int]] = []
    for _ in range(num_merges):
        pair = merger.best_pair()
        if pair is None:
            break  # every pre-token is a single token: nothing left to merge
        pairs.append(pair)
        tokens.append(tokens[pair[0]] + tokens[pair[1]])
        merger.merge(pair, len(tokens) - 1, tokens)
        progress.update(1)
    return pairs


def reversed_key(token: bytes) -> str:
    """A string that sorts in the *opposite* order of ``token``'s bytes.

    Each byte b becomes chr(255 - b) and a terminator chr(256) follows, so a proper prefix
    (smaller as bytes) sorts after its extensions.

    >>> reversed_key(b"b") < reversed_key(b"a") and reversed_key(b"ab") < reversed_key(b"a")
    True
    """
    return "".join(chr(255 - b) for b in token) + chr(256)


class _Merger:
    """Words, the pair index and the lazy max-heap of pairs for the merge loop."""

    def __init__(self, counts: PretokenCounts) -> None:
        # Single-byte pre-tokens have no pairs and never change: leave them out.
        self.words: list[list[int]] = [list(token) for token in counts if len(token) > 1]
        self.counts: list[int] = [count for token, count in counts.items() if len(token) > 1]
        self.pair_counts: dict[Pair, int] = {}
        self.pair_words: dict[Pair, list[int]] = {}
        for index, (word, count) in enumerate(zip(self.words, self.counts)):
            for pair in zip(word, word[1:]):
                self.pair_counts[pair] = self.pair_counts.get(pair, 0) + count
                indices = self.pair_words.setdefault(pair, [])
                if not indices or indices[-1] != index:
                    indices.append(index)
        self.keys: list[str] = [reversed_key(bytes([b])) for b in range(256)]
        self.heap: list[tuple] = []
        self.compact_at = 0
        self._compact()

    def _compact(self) -> None:
        """Drop dead pairs (count 0) from the index and rebuild the heap from live counts.

        Stale heap entries and the index of dead pairs only cost memory, so this runs when
        three in four heap entries are stale: amortised O(1) per push.
        """
        self.pair_counts = {pair: count for pair, count in self.pair_counts.items() if count > 0}
        self.pair_words = {pair: words for pair, words in self.pair_words.items() if pair in self.pair_counts}
        self.heap = [self._entry(pair, count) for pair, count in self.pair_counts.items()]
        heapq.heapify(self.heap)
        self.compact_at = max(4 * len(self.heap), MIN_COMPACT)

    def _entry(self, pair: Pair, count: int) -> tuple:
        # Max count first; among equal counts the greater (bytes_a, bytes_b) first.
        return (-count, self.keys[pair[0]], self.keys[pair[1]], pair)

    def best_pair(self) -> Pair | None:
        """Pop the most frequent pair; stale heap entries are fixed up or dropped on the way."""
        heap, pair_counts = self.heap, self.pair_counts
        while heap:
            neg_count, _, _, pair = heap[0]
            actual = pair_counts.get(pair, 0)
            if actual == -neg_count:
                heapq.heappop(heap)
                return pair
            # Counts only ever *decrease* for existing pairs, so an outdated entry sits too
            # high: replace it by the current count (or drop it) and look again.
            if actual > 0:
                heapq.heapreplace(heap, self._entry(pair, actual))
            else:
                heapq.heappop(heap)
        return None

    def merge(self, pair: Pair, new_id: int, tokens: list[bytes]) -> None:
        """Replace ``pair`` by ``new_id`` in every word containing it, updating only the pairs
        next to each occurrence: ``x A B y`` loses (x,A), (B,y) and gains (x,N), (N,y).

        This is the hot loop of training, hence one function with everything in locals.
        """
        self.keys.append(reversed_key(tokens[new_id]))
        first, second = pair
        words, counts, pair_counts, pair_words = self.words, self.counts, self.pair_counts, self.pair_words
        gained: dict[Pair, int] = {}  # new pairs (all contain new_id) -> count
        for index in pair_words.pop(pair):
            word, count = words[index], counts[index]
            added: list[Pair] = []
            if word.count(first) == 1:  # the common case: one occurrence, merged in place
                i = word.index(first)
                if i + 1 == len(word) or word[i + 1] != second:
                    continue  # stale index entry: an earlier merge consumed the pair here
                if i:
                    pair_counts[(word[i - 1], first)] -= count
                    added.append((word[i - 1], new_id))
                if i + 2 < len(word):
                    pair_counts[(second, word[i + 2])] -= count
                    added.append((new_id, word[i + 2]))
                word[i:i + 2] = (new_id,)
            elif not _merge_all(word, pair, new_id, count, pair_counts, added):
                continue
            for new in added:
                gained[new] = gained.get(new, 0) + count
                # A word may be listed twice for one pair (A B x A B); the second visit finds
                # nothing to merge and is skipped above, which is cheaper than a set.
                pair_words.setdefault(new, []).append(index)
        # Deleted only now: with first == second (a a a) the loop decrements `pair` itself.
        del pair_counts[pair]
        keys, heap = self.keys, self.heap
        for new, count in gained.items():
            pair_counts[new] = count  # pairs with new_id did not exist before this merge
            heapq.heappush(heap, (-count, keys[new[0]], keys[new[1]], new))
        if len(heap) > self.compact_at:
            self._compact()


def _merge_all(word: list[int], pair: Pair, new_id: int, count: int, pair_counts: dict[Pair, int],
               added: list[Pair]) -> bool:
    """Merge every non-overlapping ``pair`` in ``word`` in place, left to right; False if none.

    Lost neighbour pairs are decremented in ``pair_counts``; gained ones go to ``added``.
    """
    first, second = pair
    merged: list[int] = []
    n, done, i = len(word), 0, -1  # word[done:] is not copied to `merged` yet
    for _ in range(word.count(first)):  # visit every `first` once
        i = word.index(first, i + 1)
        if i < done or i + 1 == n or word[i + 1] != second:
            continue  # (i < done: the right half of an (A, A) just merged)
        if done and i > done:  # the previous occurrence's right neighbour is a plain token
            added.append((new_id, word[done]))
        merged.extend(word[done:i])
        if i:
            if i != done:  # back to back (A B A B): (B, A) went as the previous right pair
                pair_counts[(word[i - 1], first)] -= count
            added.append((merged[-1], new_id))
        if i + 2 < n:
            pair_counts[(second, word[i + 2])] -= count
        merged.append(new_id)
        done = i + 2
    if not done:
        return False
    if done < n:
        added.append((new_id, word[done]))
        merged.extend(word[done:])
    word[:] = merged
    return True


# --- Pipeline stage: shards in, tokenizer files + summary out --------------------------------

def train_from_shards(shards: Sequence[str | os.PathLike], *, vocab_size: int, special_tokens: Sequence[str],
                      vocab_pkl: str | os.PathLike, merges_pkl: str | os.PathLike, vocab_json: str | os.PathLike,
                      merges_txt: str | os.PathLike, summary_json: str | os.PathLike,
                      tokenizer_json: str | os.PathLike | None = None) -> dict:
    """The reduce stage: sum pre-token shards, learn merges, write the tokenizer and a summary."""
    check_vocab_size(vocab_size, special_tokens)
    began = time.perf_counter()
    chunk = read_shards(shards)
    reduced = time.perf_counter()
    if chunk.num_bytes == 0:
        raise ValueError(f"shards {', '.join(map(str, shards))}: no text at all, nothing to train on")
    if chunk.invalid_utf8:
        log.warning("%d invalid UTF-8 sequences were replaced by U+FFFD", chunk.invalid_utf8)
    log.info("%d shards: %d distinct pre-tokens from %s", len(shards), len(chunk.counts),
             format_bytes(chunk.num_bytes))
    vocab, merges = train_from_counts(chunk.counts, vocab_size, special_tokens, show_progress=True)
    merged = time.perf_counter()
    write_tokenizer(vocab, merges, special_tokens=special_tokens, vocab_pkl=vocab_pkl, merges_pkl=merges_pkl,
                    vocab_json=vocab_json, merges_txt=merges_txt, tokenizer_json=tokenizer_json)
    summary = {
        "vocab_size": len(vocab), "requested_vocab_size": vocab_size, "num_merges": len(merges),
        "special_tokens": list(special_tokens), "input_bytes": chunk.num_bytes,
        "invalid_utf8": chunk.invalid_utf8, "distinct_pretokens": len(chunk.counts), "shards": len(shards),
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


# --- CLI: scratchlm train-bpe ----------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``scratchlm train-bpe``."""
    parser.add_argument("input", type=Path, help="UTF-8 text file, documents separated by the first special token")
    parser.add_argument("--vocab-size", type=int, required=True, help="total size: specials + 256 bytes + merges")
    parser.add_argument("--special-tokens", nargs="*", default=["<|endoftext|>"], help="special tokens, in id order")
    parser.add_argument("--workers", type=int, default=None, help="pre-tokenization processes (none: all cores)")
    parser.add_argument("--output-dir", type=Path, default=Path("results"), help="where to write the tokenizer")
    parser.add_argument("--name", default=None, help="file name prefix (none: the input's stem)")


def run_cli(args: argparse.Namespace) -> int:
    """Train on one file; write {name}_vocab.pkl/_merges.pkl, tokenizers/{name}-vocab.json/-merges.txt
    and tokenizers/{name}/tokenizer.json."""
    name = args.name or args.input.stem
    began = time.perf_counter()
    vocab, merges = train_bpe(args.input, args.vocab_size, args.special_tokens, num_workers=args.workers)
    out = args.output_dir
    write_tokenizer(vocab, merges, special_tokens=args.special_tokens, vocab_pkl=out / f"{name}_vocab.pkl",
                    merges_pkl=out / f"{name}_merges.pkl", vocab_json=out / "tokenizers" / f"{name}-vocab.json",
                    merges_txt=out / "tokenizers" / f"{name}-merges.txt",
                    tokenizer_json=out / "tokenizers" / name / "tokenizer.json")
    longest = max((a + b for a, b in merges), key=len, default=b"")
    print(f"{len(vocab)} tokens ({len(merges)} merges) in {time.perf_counter() - began:.1f}s -> {out}; "
          f"longest token {longest.decode('utf-8', errors='backslashreplace')!r}")
    return 0
