"""The tokenizer stages: ``plan-shards``, ``pretokenize`` (map), ``train-bpe`` (reduce), ``encode``.

By hand, the pipeline's tokenizer stages are::

    scratchlm plan-shards corpus.txt plan.json --special-tokens '<|endoftext|>'
    scratchlm pretokenize plan.json 0 shard0.parquet     # one per shard, on any machines
    scratchlm train-bpe shard*.parquet --name corpus --vocab-size 10000
"""

from __future__ import annotations

import argparse

from scratchlm.cli.common import add_results_argument, add_special_tokens_argument
from scratchlm.layout import Layout

def add_plan_shards_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="UTF-8 text file, documents separated by the first special token")
    parser.add_argument("output", help=f"plan to write, e.g. {Layout().shard_plan('owt', 'train')}")
    add_special_tokens_argument(parser)
    parser.add_argument("--shard-mb", type=float, default=16.0, help="MiB of text per shard")


def run_plan_shards(args: argparse.Namespace) -> None:
    from scratchlm.tokenizer.shards import plan_shards

    plan = plan_shards(args.input, args.output, special_tokens=args.special_tokens, shard_mb=args.shard_mb)
    print(f"{len(plan['boundaries']) - 1} shards -> {args.output}")


def add_pretokenize_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", help="shard plan (scratchlm plan-shards)")
    parser.add_argument("shard", type=int, help="which shard of the plan (0-based)")
    parser.add_argument("output", help=f"Parquet shard to write (token, count), e.g. {Layout().shard_counts('owt', 0)}")


def run_pretokenize(args: argparse.Namespace) -> None:
    from scratchlm.tokenizer.shards import write_planned_shard

    chunk = write_planned_shard(args.plan, args.shard, args.output)
    print(f"{len(chunk.counts)} distinct pre-tokens from {chunk.num_bytes} bytes in {chunk.seconds:.1f}s "
          f"-> {args.output} ({chunk.invalid_utf8} invalid UTF-8 sequences replaced)")


def add_train_bpe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shards", nargs="+", help="pre-token count shards (scratchlm pretokenize)")
    parser.add_argument("--name", required=True, help="the tokenizer's (corpus's) name in the results layout")
    parser.add_argument("--vocab-size", type=int, required=True, help="total size: specials + 256 bytes + merges")
    add_special_tokens_argument(parser)
    add_results_argument(parser, "results folder to write the tokenizer files into")


def run_train_bpe(args: argparse.Namespace) -> None:
    from scratchlm.tokenizer.bpe import train_from_shards

    layout, name = Layout(args.results), args.name
    summary = train_from_shards(
        args.shards, vocab_size=args.vocab_size, special_tokens=args.special_tokens,
        vocab_pkl=layout.vocab_pkl(name), merges_pkl=layout.merges_pkl(name), vocab_json=layout.vocab_json(name),
        merges_txt=layout.merges_txt(name), tokenizer_json=layout.hf_tokenizer(name),
        summary_json=layout.tokenizer_summary(name))
    print(f"{summary['vocab_size']} tokens ({summary['num_merges']} merges) in {summary['timing_s']['merge']:.1f}s "
          f"-> {layout.vocab_pkl(name)}, {layout.merges_pkl(name)}; longest token {summary['longest_tokens'][:1]}")


def add_encode_arguments(parser: argparse.ArgumentParser) -> None:
    from scratchlm.tokenizer.pretokenize import default_workers

    parser.add_argument("input", help="UTF-8 corpus text file")
    parser.add_argument("output", help="output .npy file (uint16 ids)")
    parser.add_argument("--vocab", required=True, help="vocab file: our .pkl or a GPT-2 vocab.json")
    parser.add_argument("--merges", required=True, help="merges file: our .pkl or a GPT-2 merges.txt")
    add_special_tokens_argument(parser, nargs="+")
    parser.add_argument("--workers", type=int, default=default_workers(), help="worker processes")
    parser.add_argument("--chunk-mb", type=float, default=4.0, help="MiB of text per task sent to a worker")


def run_encode(args: argparse.Namespace) -> None:
    from scratchlm.tokenizer.encode import encode_corpus

    encode_corpus(args.input, args.vocab, args.merges, args.output, special_tokens=args.special_tokens,
                  workers=args.workers, chunk_mb=args.chunk_mb)
