"""The tokenizer stages: ``plan-shards``, ``pretokenize`` (map), ``train-bpe`` (reduce), ``encode``.

By hand, the pipeline's tokenizer stages are::

    scratchlm plan-shards corpus.txt plan.json
    scratchlm pretokenize plan.json 0 shard0.parquet     # one per shard, on any machines
    scratchlm train-bpe shard*.parquet --name corpus --vocab-size 10000
"""

from __future__ import annotations

import argparse

from scratchlm.cli.common import (
    Subparsers,
    add_command,
    add_results_argument,
    add_setting,
    add_special_tokens_argument,
    section_from,
)
from scratchlm.layout import Layout
from scratchlm.settings import BpeSettings, CorpusSettings, EncodeSettings


def register(commands: Subparsers) -> None:
    """``plan-shards``, ``pretokenize``, ``train-bpe`` and ``encode``."""
    parser = add_command(commands, "plan-shards", run_plan_shards,
                         "cut a corpus file into shards at document boundaries (a plan.json)")
    parser.add_argument("input", help="UTF-8 text file, documents separated by the first special token")
    parser.add_argument("output", help=f"plan to write, e.g. {Layout().shard_plan('owt', 'train')}")
    add_special_tokens_argument(parser)
    add_setting(parser, BpeSettings, "shard_mb")

    parser = add_command(commands, "pretokenize", run_pretokenize,
                         "count the pre-tokens of one planned shard into a Parquet file")
    parser.add_argument("plan", help="shard plan (scratchlm plan-shards)")
    parser.add_argument("shard", type=int, help="which shard of the plan (0-based)")
    parser.add_argument("output", help=f"Parquet shard to write (token, count), e.g. {Layout().shard_counts('owt', 0)}")

    parser = add_command(commands, "train-bpe", run_train_bpe,
                         "train a byte-level BPE tokenizer from pre-token count shards")
    parser.add_argument("shards", nargs="+", help="pre-token count shards (scratchlm pretokenize)")
    parser.add_argument("--name", required=True, help="the tokenizer's (corpus's) name in the results layout")
    add_setting(parser, CorpusSettings, "vocab_size", required=True)
    add_special_tokens_argument(parser)
    add_results_argument(parser, "results folder to write the tokenizer files into")

    parser = add_command(commands, "encode", run_encode, "encode a corpus file into a uint16 .npy array (worker pool)")
    parser.add_argument("input", help="UTF-8 corpus text file")
    parser.add_argument("output", help="output .npy file (uint16 ids)")
    parser.add_argument("--vocab", required=True, help="vocab file: our .pkl or a GPT-2 vocab.json")
    parser.add_argument("--merges", required=True, help="merges file: our .pkl or a GPT-2 merges.txt")
    add_special_tokens_argument(parser)
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: the usable cores)")
    add_setting(parser, EncodeSettings, "chunk_mb")

    add_command(commands, "compile", run_compile, "build the tokenizer's compiled kernels now, with progress (make "
                "install runs it; otherwise the first pipeline stages compile them, silently)")


def run_compile(args: argparse.Namespace) -> None:
    from scratchlm.tokenizer.warmup import compile_kernels

    compile_kernels()


def run_plan_shards(args: argparse.Namespace) -> None:
    from scratchlm.tokenizer.shards import plan_shards

    plan = plan_shards(args.input, args.output, special_tokens=args.special_tokens,
                       shard_mb=section_from(args, BpeSettings).shard_mb)
    print(f"{len(plan['boundaries']) - 1} shards -> {args.output}")


def run_pretokenize(args: argparse.Namespace) -> None:
    import pyarrow.parquet as pq

    from scratchlm.tokenizer.shards import write_planned_shard

    chunk = write_planned_shard(args.plan, args.shard, args.output)
    distinct = pq.ParquetFile(args.output).metadata.num_rows  # one row per distinct pre-token
    print(f"{distinct} distinct pre-tokens from {chunk.num_bytes} bytes in {chunk.seconds:.1f}s "
          f"-> {args.output} ({chunk.invalid_utf8} invalid UTF-8 sequences replaced)")


def run_train_bpe(args: argparse.Namespace) -> None:
    from scratchlm.tokenizer.bpe import train_into_layout

    layout, name = Layout(args.results), args.name
    summary = train_into_layout(args.shards, layout, name, vocab_size=args.vocab_size,
                                special_tokens=args.special_tokens)
    print(f"{summary['vocab_size']} tokens ({summary['num_merges']} merges) in {summary['timing_s']['merge']:.1f}s "
          f"-> {layout.vocab_pkl(name)}, {layout.merges_pkl(name)}; longest token {summary['longest_tokens'][:1]}")


def run_encode(args: argparse.Namespace) -> None:
    from scratchlm.tokenizer.encode import encode_corpus
    from scratchlm.tokenizer.pretokenize import default_workers

    encode_corpus(args.input, args.vocab, args.merges, args.output, special_tokens=args.special_tokens,
                  workers=args.workers or default_workers(), chunk_mb=section_from(args, EncodeSettings).chunk_mb)
