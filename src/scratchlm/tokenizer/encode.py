"""Encode a text corpus into one uint16 ``.npy`` array, in parallel and in constant memory.

The file is cut into chunks just before a document separator (the first special token), so
every chunk encodes exactly as it would inside the whole text. Worker processes encode
chunks; the parent writes their ids in order straight into the output while at most
``2 * workers`` chunks are in flight, so memory does not grow with the corpus. The ``.npy``
header is written first with a placeholder length and rewritten at the end (numpy leaves
room in the header for that), so ``np.load(path, mmap_mode="r")`` works on the result.
"""

from __future__ import annotations

import io
import logging
import math
import os
import time
from collections import deque
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from scratchlm.fileio import atomic_path, require_file
from scratchlm.progress import format_bytes, progress_bar
from scratchlm.settings import END_OF_TEXT, EncodeSettings, default_of
from scratchlm.tokenizer.pretokenize import (
    find_chunk_boundaries,
    iter_document_blocks,
)
from scratchlm.tokenizer.pool import worker_pool
from scratchlm.tokenizer.tokenizer import Tokenizer
from scratchlm.tokenizer.utf8 import valid_utf8

log = logging.getLogger(__name__)

DTYPE = np.dtype("<u2")
MAX_IDS = 1 << 16  # uint16 holds ids 0..65535

Task = tuple[str, int, int]  # (path, start byte, end byte)


def npy_header(count: int) -> bytes:
    """The ``.npy`` header of a 1-D little-endian uint16 array of ``count`` ids.

    >>> len(npy_header(0)) == len(npy_header(10**15))  # room to rewrite the length in place
    True
    """
    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(DTYPE), "fortran_order": False, "shape": (count,)}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def check_fits_uint16(tokenizer: Tokenizer, source: str | os.PathLike) -> None:
    """Refuse a tokenizer whose ids do not fit uint16 (the arrays training reads)."""
    largest = max(tokenizer.vocab)
    if largest >= MAX_IDS:
        raise ValueError(f"{source}: token ids go up to {largest}, but encoded corpora are uint16 "
                         f"(ids below {MAX_IDS}); use a vocab of at most {MAX_IDS} tokens")


def encode_range(tokenizer: Tokenizer, path: str | os.PathLike, start: int, end: int,
                 *, block_size: int = 4 << 20) -> np.ndarray:
    """Ids of bytes ``[start, end)`` of ``path`` as a uint16 array (invalid UTF-8 becomes U+FFFD).

    The range is read in blocks cut at documents, or inside a long document where the
    pre-tokenizer always splits, so memory stays flat however long a document is.
    """
    specials = [token.encode("utf-8") for token in tokenizer.special_tokens]
    parts, invalid = [], 0
    for block in iter_document_blocks(path, start, end, specials[0] if specials else None,
                                      block_size=block_size, special_tokens=specials):
        block, bad = valid_utf8(block)  # checked once here: the count is logged below
        invalid += bad
        parts.append(tokenizer.encode_valid_utf8(block).astype(DTYPE))
    if invalid:
        log.warning("%s: %d invalid UTF-8 sequences in bytes %d-%d replaced by U+FFFD", path, invalid, start, end)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=DTYPE)


_worker_tokenizer: Tokenizer | None = None


def _init_worker(tokenizer: Tokenizer) -> None:
    global _worker_tokenizer
    _worker_tokenizer = tokenizer


def _encode_task(task: Task) -> np.ndarray:
    return encode_range(_worker_tokenizer, *task)


def encoded_in_order(tokenizer: Tokenizer, tasks: Iterable[Task], workers: int) -> Iterator[np.ndarray]:
    """Ids of each task, in task order, with at most ``2 * workers`` chunks in memory."""
    if workers == 1:
        for task in tasks:
            yield encode_range(tokenizer, *task)
        return
    # fork: workers inherit the tokenizer and its tables instead of rebuilding them.
    with worker_pool(workers, initializer=_init_worker, initargs=(tokenizer,)) as pool:
        in_flight: deque = deque()
        for task in tasks:
            in_flight.append(pool.apply_async(_encode_task, (task,)))
            if len(in_flight) >= 2 * workers:
                yield in_flight.popleft().get()
        while in_flight:
            yield in_flight.popleft().get()


def encode_file(tokenizer: Tokenizer, text_path: str | os.PathLike, output_path: str | os.PathLike,
                *, workers: int = 1, chunk_bytes: int = 4 << 20, show_progress: bool = True) -> int:
    """Encode ``text_path`` into ``output_path`` (uint16 ``.npy``); returns the number of ids."""
    check_fits_uint16(tokenizer, text_path)
    if workers < 1 or chunk_bytes < 1:
        raise ValueError(f"workers and chunk_bytes must be >= 1, got {workers} and {chunk_bytes}")
    size = os.path.getsize(text_path)
    if tokenizer.special_tokens:
        # At least one chunk per worker, so small corpora use every core too.
        num_chunks = max(workers, math.ceil(size / chunk_bytes))
        bounds = find_chunk_boundaries(text_path, num_chunks, tokenizer.special_tokens[0].encode("utf-8"))
    else:
        log.warning("%s: no special tokens, so no document boundary to split the work at: one worker", text_path)
        bounds = [0, size]
    tasks = [(str(text_path), start, end) for start, end in zip(bounds, bounds[1:])]
    started = time.perf_counter()
    progress = progress_bar(f"encode {Path(text_path).name}", total=size, quiet=not show_progress)
    with progress:
        def ids_in_order() -> Iterator[np.ndarray]:
            for (_, start, end), ids in zip(tasks, encoded_in_order(tokenizer, tasks, min(workers, len(tasks)))):
                progress.update(end - start)
                yield ids

        count = write_ids(output_path, ids_in_order())
    seconds = time.perf_counter() - started
    log.info("%s: %s -> %s ids (%.2f bytes/id) in %.1fs, %s/s with %d workers", text_path, format_bytes(size),
             f"{count:,}", size / max(count, 1), seconds, format_bytes(size / max(seconds, 1e-9)), workers)
    return count


def write_ids(output_path: str | os.PathLike, parts: Iterable[np.ndarray]) -> int:
    """Write the ids of ``parts``, in order, as one uint16 ``.npy`` (atomically, streaming: the
    header's length is filled in at the end); returns the number of ids."""
    count = 0
    with atomic_path(output_path) as tmp, open(tmp, "wb") as out:
        out.write(npy_header(0))
        for ids in parts:
            np.asarray(ids, dtype=DTYPE).tofile(out)
            count += len(ids)
        out.seek(0)
        out.write(npy_header(count))
        out.flush()
        os.fsync(out.fileno())
    return count


def encode_planned_shard(plan_path: str | os.PathLike, shard: int, vocab_path: str | os.PathLike,
                         merges_path: str | os.PathLike, output_path: str | os.PathLike, *,
                         special_tokens: Sequence[str],
                         chunk_mb: float = default_of(EncodeSettings, "chunk_mb")) -> int:
    """The map half of pipeline encoding: ids of shard ``shard`` of a shard plan, as a uint16 ``.npy``."""
    from scratchlm.tokenizer.shards import planned_range

    path, start, end, _ = planned_range(plan_path, shard)  # the tokenizer's special tokens split it
    tokenizer = Tokenizer.from_files(vocab_path, merges_path, list(special_tokens))
    check_fits_uint16(tokenizer, vocab_path)
    ids = encode_range(tokenizer, path, start, end, block_size=int(chunk_mb * 2**20))
    return write_ids(output_path, [ids])


def open_ids(path: str | os.PathLike, *, what: str = "encoded split") -> np.ndarray:
    """The ids of an encoded ``.npy`` file, memory-mapped; a ValueError naming the file if it is
    missing, corrupt, or not a 1-D integer array (never numpy's advice to unpickle it)."""
    require_file(path, what)
    try:
        ids = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError, OSError) as error:
        reason = "it holds pickled objects" if "pickle" in str(error) else str(error) or type(error).__name__
        raise ValueError(f"{path}: corrupt, or not a .npy array of token ids ({reason})") from None
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{path}: expected a 1-D integer token array, got {ids.dtype} of shape {ids.shape}")
    return ids


def concatenate_ids(parts: Sequence[str | os.PathLike], output_path: str | os.PathLike,
                    *, chunk: int = 1 << 24) -> int:
    """The reduce half: the shards' ids, in order, into one ``.npy``, streaming (flat memory)."""
    def pieces() -> Iterator[np.ndarray]:
        for part in parts:
            ids = open_ids(part, what="encoded shard")
            if ids.dtype != DTYPE:
                raise ValueError(f"{part}: expected a 1-D uint16 id array, got {ids.dtype} {ids.shape}")
            for start in range(0, len(ids), chunk):
                yield ids[start:start + chunk]

    count = write_ids(output_path, pieces())
    log.info("%d shards -> %s: %s ids", len(parts), output_path, f"{count:,}")
    return count


def encode_corpus(text_path: str | os.PathLike, vocab_path: str | os.PathLike, merges_path: str | os.PathLike,
                  output_path: str | os.PathLike, *, special_tokens: Sequence[str] = (END_OF_TEXT,),
                  workers: int = 1, chunk_mb: float = default_of(EncodeSettings, "chunk_mb")) -> int:
    """Load a tokenizer (``.pkl`` or GPT-2 files) and encode one corpus file with it."""
    require_file(text_path, "corpus file")
    tokenizer = Tokenizer.from_files(vocab_path, merges_path, list(special_tokens))
    check_fits_uint16(tokenizer, vocab_path)
    return encode_file(tokenizer, text_path, output_path, workers=workers, chunk_bytes=int(chunk_mb * 2**20))
