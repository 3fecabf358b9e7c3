"""Pre-token counting per core: the pipeline's map (``pretokenize_shard`` jobs) next to the
textbook counter, on the same shards, same processes, alternating rounds.

Ours is exactly what the pipeline runs: ``plan_shards`` cuts the corpus into ``--shard-mb``
shards at documents, and ``--workers`` processes each run ``write_planned_shard`` (count, then
write the Parquet shard) on one shard at a time. The peer counts the same shards the way a CS336
solution does: decode, split at the special token, ``regex.findall`` with the GPT-2 pattern into
a ``Counter`` of str, encode the keys at the end (and writes the same Parquet shard). Printed:
MB/s per core over the whole map (corpus bytes / (wall × workers)), the rate inside the workers
(bytes / the seconds they spent counting), the ratio, and the streaming reduce of our shards
(``read_shards``: summed by Arrow, streaming, in time linear in the shards' rows).

    .venv/bin/python benchmarks/bpe_count.py                     # docs corpus (30 MB)
    .venv/bin/python benchmarks/bpe_count.py --distinct 3000000  # bpe_scale.py's rare-word corpus
    .venv/bin/python benchmarks/bpe_count.py --corpus results/corpora/demo/train.txt  # accented names
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import pyarrow.parquet as pq
from _docs_corpus import docs_corpus
from bpe_scale import make_corpus

from scratchlm.tokenizer.pretokenize import ChunkCounts, PretokenTally, count_pretokens
from scratchlm.tokenizer.utf8 import decode_utf8
from scratchlm.tokenizer.shards import (
    counts_table,
    num_planned_shards,
    plan_shards,
    planned_range,
    read_shards,
    write_planned_shard,
)

EOT = "<|endoftext|>"


def textbook_shard(plan: str, shard: int, output: str) -> ChunkCounts:
    """The peer: one shard counted with str pre-tokens and a Counter (what most solutions do)."""
    path, start, end, specials = planned_range(plan, shard)
    began = time.perf_counter()
    with open(path, "rb") as handle:
        handle.seek(start)
        text, invalid = decode_utf8(handle.read(end - start))
    counts = {token.encode("utf-8"): count for token, count in count_pretokens(text, specials).items()}
    chunk = ChunkCounts(counts, end - start, invalid, time.perf_counter() - began)
    pq.write_table(counts_table(counts), output, compression="zstd")
    return chunk


def _job(job: tuple) -> float:
    counter, plan, shard, output = job
    chunk = (write_planned_shard if counter == "ours" else textbook_shard)(plan, shard, output)
    return chunk.seconds


def run_map(counter: str, plan: str, folder: Path, workers: int) -> tuple[float, float, list[str]]:
    """Wall seconds of the map over every shard, seconds spent counting in the workers, shard paths."""
    outputs = [str(folder / f"{counter}_{shard}.parquet") for shard in range(num_planned_shards(plan))]
    jobs = [(counter, plan, shard, output) for shard, output in enumerate(outputs)]
    PretokenTally.warm_up()  # as count_file does: the workers fork with the counter loaded
    # and with Parquet's zstd writer loaded (a pipeline job pays both at start-up, outside this figure)
    pq.write_table(counts_table({b"warm": 1}), str(folder / "warm.parquet"), compression="zstd")
    began = time.perf_counter()
    with get_context("fork").Pool(workers) as pool:
        counting = sum(pool.imap_unordered(_job, jobs))
    return time.perf_counter() - began, counting, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--distinct", type=int, default=None, help="use bpe_scale.py's corpus with this many "
                                                                    "distinct pre-tokens (default: the docs corpus)")
    parser.add_argument("--corpus", type=Path, default=None,
                        help="text, documents separated by <|endoftext|> (e.g. results/corpora/demo/train.txt)")
    parser.add_argument("--shard-mb", type=float, default=4.0, help="MiB per shard (the pipeline's bpe.shard_mb)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="processes")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    args = parser.parse_args()
    corpus = args.corpus or (make_corpus(args.distinct) if args.distinct else docs_corpus("train"))
    size_mb = corpus.stat().st_size / 1e6
    with open(corpus, "rb") as handle:  # into the page cache, so neither counter pays the first disk read
        while handle.read(1 << 24):
            pass
    per_core: dict[str, list[float]] = {"ours": [], "textbook": []}
    with tempfile.TemporaryDirectory() as folder:
        plan = str(Path(folder) / "plan.json")
        plan_shards(corpus, plan, special_tokens=[EOT], shard_mb=args.shard_mb)
        print(f"{corpus.name}: {size_mb:.1f} MB in {num_planned_shards(plan)} shards, {args.workers} workers")
        for round_no in range(args.rounds):
            for counter in ("ours", "textbook") if round_no % 2 == 0 else ("textbook", "ours"):
                wall, counting, outputs = run_map(counter, plan, Path(folder), args.workers)
                per_core[counter].append(size_mb / (wall * args.workers))
                print(f"round {round_no + 1} {counter:>8}: {wall:.1f} s wall, {per_core[counter][-1]:.1f} MB/s "
                      f"per core over the map, {size_mb / counting:.1f} MB/s inside the workers", flush=True)
                if counter == "ours":
                    began = time.perf_counter()
                    distinct = read_shards(outputs)[0].num_rows
                    reduce_s = time.perf_counter() - began
    ratios = [o / t for o, t in zip(per_core["ours"], per_core["textbook"])]
    print(f"ours {max(per_core['ours']):.1f} MB/s per core (rounds {', '.join(f'{r:.1f}' for r in per_core['ours'])}),"
          f" textbook {max(per_core['textbook']):.1f}: {sum(ratios) / len(ratios):.2f}x "
          f"(rounds {', '.join(f'{r:.2f}' for r in ratios)}); reduce of {distinct:,} distinct pre-tokens "
          f"{reduce_s:.1f} s; target >= 40 MB/s per core")


if __name__ == "__main__":
    main()
