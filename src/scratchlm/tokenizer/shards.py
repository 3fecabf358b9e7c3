"""Map-reduce pre-tokenization for the pipeline: a shard plan, Parquet count shards, streaming merge.

* ``plan_shards``: cut the corpus into ``ceil(size / shard_mb)`` byte ranges at document
  boundaries and write them as JSON (the pipeline's checkpoint: the shard count is then known).
* ``write_shard``: count the pre-tokens of one range into a Parquet file with columns
  ``token`` (binary) and ``count`` (int64); what it cost goes into the file's metadata.
* ``read_shards``: sum shards with Arrow's hash aggregation, streaming, in linear time.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from scratchlm.fileio import atomic_path, read_json_object, require_file, write_json
from scratchlm.profiling import peak_rss_bytes
from scratchlm.tokenizer.pretokenize import (
    ChunkCounts,
    PretokenArrays,
    counts_arrays,
    find_chunk_boundaries,
    tally_file_range,
)

SCHEMA = pa.schema([("token", pa.binary()), ("count", pa.int64())])
META_KEY = b"scratchlm"


def plan_shards(input_path: str | os.PathLike, plan_path: str | os.PathLike, *,
                special_tokens: Sequence[str], shard_mb: float) -> dict:
    """Write ``{"input", "special_tokens", "boundaries"}``: about one shard per ``shard_mb``."""
    size = _checked_size(input_path)
    num_shards = max(1, math.ceil(size / (shard_mb * 2**20)))
    if special_tokens:
        boundaries = find_chunk_boundaries(input_path, num_shards, special_tokens[0].encode("utf-8"))
    else:  # no document separator: a document may not be cut, so the file is one shard
        boundaries = [0, size]
    plan = {"input": str(input_path), "size": size, "special_tokens": list(special_tokens),
            "boundaries": boundaries}
    write_json(plan_path, plan, indent=1)
    return plan


def num_planned_shards(plan_path: str | os.PathLike) -> int:
    """How many shards a plan file describes."""
    return len(read_plan(plan_path)["boundaries"]) - 1


def _checked_size(path: str | os.PathLike) -> int:
    require_file(path, "corpus file")
    size = os.path.getsize(path)
    if size == 0:
        raise ValueError(f"{path}: file is empty, nothing to train on")
    return size


def planned_range(plan_path: str | os.PathLike, shard: int) -> tuple[str, int, int, list[str]]:
    """(input file, start byte, end byte, special tokens) of shard number ``shard`` of a plan."""
    plan = read_plan(plan_path)
    bounds = plan["boundaries"]
    if not 0 <= shard < len(bounds) - 1:
        raise ValueError(f"{plan_path}: shard {shard} out of range (plan has {len(bounds) - 1})")
    return plan["input"], bounds[shard], bounds[shard + 1], plan["special_tokens"]


def write_planned_shard(plan_path: str | os.PathLike, shard: int, output: str | os.PathLike) -> ChunkCounts:
    """Count the pre-tokens of shard number ``shard`` of a plan into ``output`` (Parquet)."""
    path, start, end, special_tokens = planned_range(plan_path, shard)
    return write_shard(path, output, start=start, end=end, special_tokens=special_tokens)


def arrays_table(arrays: PretokenArrays) -> pa.Table:
    """Pre-token counts as an Arrow table (token, count), built on the arrays' buffers (no Python
    object per pre-token): cheap to write and to send between processes."""
    keys, offsets, counts = arrays
    tokens = pa.Array.from_buffers(pa.binary(), len(counts), [None, pa.py_buffer(offsets.astype(np.int32)),
                                                              pa.py_buffer(np.ascontiguousarray(keys))])
    return pa.table({"token": tokens, "count": pa.array(counts, pa.int64())}, schema=SCHEMA)


def counts_table(counts: dict[bytes, int]) -> pa.Table:
    """``{pre-token bytes: count}`` as an Arrow table (token, count)."""
    return arrays_table(counts_arrays(counts))


def sum_count_tables(tables: Sequence[pa.Table]) -> pa.Table:
    """One (token, count) table summing ``tables``, by Arrow's hash aggregation (C++)."""
    summed = pa.concat_tables(tables).group_by("token").aggregate([("count", "sum")])
    # The concatenation and the hash table are freed now; without this, Arrow's allocator keeps
    # their pages (440 MiB at 3M distinct pre-tokens) while the merge loop allocates its own.
    pa.default_memory_pool().release_unused()
    return summed.rename_columns(["token", "count"])


def table_arrays(table: pa.Table) -> PretokenArrays:
    """A (token, count) table as :data:`PretokenArrays`, straight from Arrow's buffers."""
    tokens = table.column("token").combine_chunks()
    if not len(tokens):
        return np.zeros(0, np.uint8), np.zeros(1, np.int64), np.zeros(0, np.int64)
    offsets = np.frombuffer(tokens.buffers()[1], dtype=np.int32)[tokens.offset:tokens.offset + len(tokens) + 1]
    data = np.frombuffer(tokens.buffers()[2], dtype=np.uint8)
    return (data[offsets[0]:offsets[-1]], (offsets - offsets[0]).astype(np.int64),
            table.column("count").to_numpy().astype(np.int64))


def table_counts(table: pa.Table) -> dict[bytes, int]:
    """The counts of a (token, count) table as a dict."""
    return dict(zip(table.column("token").to_pylist(), table.column("count").to_pylist()))


def write_shard(input_path: str | os.PathLike, output: str | os.PathLike, *, start: int, end: int,
                special_tokens: Sequence[str]) -> ChunkCounts:
    """Count pre-tokens of bytes ``[start, end)`` of ``input_path`` and write them as a shard."""
    tally, chunk = tally_file_range(input_path, start, end, special_tokens)
    table = arrays_table(tally.arrays())
    meta = {"input": str(input_path), "start": start, "end": end, "num_bytes": chunk.num_bytes,
            "invalid_utf8": chunk.invalid_utf8, "seconds": chunk.seconds,
            "peak_rss_bytes": peak_rss_bytes()}
    table = table.replace_schema_metadata({META_KEY: json.dumps(meta)})
    with atomic_path(output) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return chunk


def shard_metadata(path: str | os.PathLike) -> dict:
    """The bookkeeping ``write_shard`` stored in a shard (bytes, invalid UTF-8, seconds, RSS)."""
    with _shard_errors(path):
        meta = pq.read_schema(require_file(path, "pre-token shard")).metadata or {}
        meta = json.loads(meta[META_KEY]) if META_KEY in meta else {}
    if not isinstance(meta, dict) or not {"num_bytes", "invalid_utf8", "seconds"} <= set(meta):
        raise ValueError(f"{path}: not a scratchlm pre-token shard (no {META_KEY.decode()} metadata)")
    return meta


@contextlib.contextmanager
def _shard_errors(path: str | os.PathLike) -> Iterator[None]:
    """Arrow's and JSON's complaints about a shard as one ValueError naming the file."""
    try:
        yield
    except (pa.ArrowException, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a readable pre-token shard ({error})") from None


def read_plan(plan_path: str | os.PathLike) -> dict:
    """A shard plan written by :func:`plan_shards`; ValueError naming the file if it is not one."""
    return read_json_object(plan_path, keys=("input", "boundaries", "special_tokens"), what="shard plan")


def read_shards(paths: Sequence[str | os.PathLike], *, min_fold_rows: int = 1 << 20) -> tuple[pa.Table, ChunkCounts]:
    """Sum the counts of several shards into one (token, count) table, streaming: shards wait in a
    pending list until they hold as many rows as the running sum (and at least ``min_fold_rows``),
    then Arrow's hash aggregation (C++) folds them in. Each fold hashes at most twice the rows it
    adds, so the work is linear in the shards' rows (not shards x distinct pre-tokens), memory stays
    about twice the sum, and no Python object is made per pre-token. Returns the sum and the
    shards' bookkeeping."""
    total = ChunkCounts()
    summed, pending, pending_rows = counts_table({}), [], 0
    for path in paths:
        meta = shard_metadata(path)
        total.num_bytes += meta["num_bytes"]
        total.invalid_utf8 += meta["invalid_utf8"]
        total.seconds += meta["seconds"]
        with _shard_errors(path):
            pending.append(pq.read_table(path, columns=["token", "count"]).cast(SCHEMA))
        pending_rows += pending[-1].num_rows
        if pending_rows >= max(summed.num_rows, min_fold_rows):
            summed, pending, pending_rows = sum_count_tables([summed, *pending]), [], 0
    return (sum_count_tables([summed, *pending]) if pending else summed), total
