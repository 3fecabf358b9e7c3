"""``scratchlm download`` and ``scratchlm demo-corpus``: a corpus's text files."""

from __future__ import annotations

import argparse

from scratchlm.cli.common import Subparsers, add_command, add_setting, section_from
from scratchlm.layout import SPLITS, Layout
from scratchlm.settings import END_OF_TEXT, DownloadSettings, GeneratorSettings, SourceSettings


def register(commands: Subparsers) -> None:
    """``download`` and ``demo-corpus``."""
    parser = add_command(commands, "download", run_download, "download (or copy) a corpus file, resumable, .gz aware")
    parser.add_argument("url", help=SourceSettings.model_fields["url"].description)
    parser.add_argument("output", help=f"file to write, e.g. {Layout().corpus_text('owt', 'train')}")
    add_setting(parser, SourceSettings, "sha256")
    add_setting(parser, SourceSettings, "allow_unverified")
    for field in DownloadSettings.model_fields:
        add_setting(parser, DownloadSettings, field)
    parser.add_argument("--no-decompress", dest="decompress", action="store_const", const=False, default=None,
                        help="keep .gz data compressed")

    parser = add_command(commands, "demo-corpus", run_demo_corpus,
                         "generate the offline demo corpus (synthetic stories)")
    parser.add_argument("output", help=f"text file to write, e.g. {Layout().corpus_text('demo', 'train')}")
    parser.add_argument("--split", choices=SPLITS, default=SPLITS[0],
                        help="which split; each is a different stream")
    add_setting(parser, GeneratorSettings, "seed")
    add_setting(parser, GeneratorSettings, "train_mb", "--size-mb")
    parser.add_argument("--special-token", default=END_OF_TEXT, help="document separator")


def run_download(args: argparse.Namespace) -> None:
    from scratchlm.data.download import download_source

    download_source(section_from(args, SourceSettings), args.output, section_from(args, DownloadSettings),
                    decompress=args.decompress)


def run_demo_corpus(args: argparse.Namespace) -> None:
    from scratchlm.data.demo import write_demo_corpus

    generator = section_from(args, GeneratorSettings)  # --size-mb is the train_mb field
    write_demo_corpus(args.output, seed=generator.seed, split=args.split, size_mb=generator.train_mb,
                      special_token=args.special_token)
