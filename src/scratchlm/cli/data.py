"""``scratchlm download`` and ``scratchlm demo-corpus``: a corpus's text files."""

from __future__ import annotations

import argparse

from scratchlm.layout import Layout
from scratchlm.tokenizer.pretokenize import END_OF_TEXT


def add_download_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="https://, http://, file:// URL or a local path (.gz is decompressed)")
    parser.add_argument("output", help=f"file to write, e.g. {Layout().corpus_text('owt', 'train')}")
    parser.add_argument("--sha256", default=None, help="expected sha256 of the transferred (compressed) bytes")
    parser.add_argument("--retries", type=int, default=5, help="consecutive attempts without progress before giving up")
    parser.add_argument("--timeout-s", type=float, default=60.0, help="socket timeout per read, in seconds")
    parser.add_argument("--backoff-s", type=float, default=2.0, help="first retry delay, doubled each failure")
    parser.add_argument("--no-decompress", dest="decompress", action="store_const", const=False, default=None,
                        help="keep .gz data compressed")
    parser.add_argument("--allow-unverified", action="store_true",
                        help="accept a transfer whose completeness nothing proves (no length, not chunked, no sha256)")


def run_download(args: argparse.Namespace) -> None:
    from scratchlm.data.download import download

    download(args.source, args.output, sha256=args.sha256, retries=args.retries, timeout_s=args.timeout_s,
             backoff_s=args.backoff_s, decompress=args.decompress, allow_unverified=args.allow_unverified)


def add_demo_corpus_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", help=f"text file to write, e.g. {Layout().corpus_text('demo', 'train')}")
    parser.add_argument("--split", default="train", help="name of the split; each split is a different stream")
    parser.add_argument("--seed", type=int, default=1234, help="random seed (same seed and split, same bytes)")
    parser.add_argument("--size-mb", type=float, default=20.0, help="size of the file in MiB")
    parser.add_argument("--special-token", default=END_OF_TEXT, help="document separator")


def run_demo_corpus(args: argparse.Namespace) -> None:
    from scratchlm.data.demo import write_demo_corpus

    write_demo_corpus(args.output, seed=args.seed, split=args.split, size_mb=args.size_mb,
                      special_token=args.special_token)
