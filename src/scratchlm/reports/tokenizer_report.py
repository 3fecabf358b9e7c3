"""Tokenizer report: compression (bytes/token) within and across corpora, encoding throughput
and the time it projects for the Pile, encoded corpus sizes, vocabulary and longest tokens."""

from __future__ import annotations

import logging
import os
import random
import time
from pathlib import Path
from typing import Sequence

from scratchlm.fileio import atomic_open, write_json
from scratchlm.layout import SPLITS, Layout
from scratchlm.reports import markdown_table
from scratchlm.settings import EncodeSettings
from scratchlm.tokenizer.encode import open_ids
from scratchlm.tokenizer.pretokenize import iter_document_blocks
from scratchlm.tokenizer.tokenizer import Tokenizer
from scratchlm.tokenizer.utf8 import decode_utf8, valid_utf8

log = logging.getLogger(__name__)

PILE_BYTES = 825 * 10**9  # the Pile (Gao et al., 2020) is 825 GB of text


def corpus_paths(results: str | os.PathLike, corpus: str) -> dict[str, Path]:
    """Where the pipeline puts a corpus's tokenizer, text and encoded splits."""
    layout = Layout(str(results))
    paths = {"vocab": Path(layout.vocab_pkl(corpus)), "merges": Path(layout.merges_pkl(corpus))}
    for split in SPLITS:
        paths[f"{split}_text"] = Path(layout.corpus_text(corpus, split))
        paths[f"{split}_ids"] = Path(layout.ids(corpus, split))
    return paths


def sample_documents(path: str | os.PathLike, separator: str, count: int, seed: int) -> list[str]:
    """``count`` non-empty documents of ``path`` drawn uniformly, in one streaming pass (reservoir)."""
    rng = random.Random(seed)
    split_token = separator.encode("utf-8")
    sample: list[bytes] = []
    seen = 0
    for block in iter_document_blocks(path, 0, os.path.getsize(path), split_token):
        for document in block.split(split_token):
            if not document.strip():
                continue
            seen += 1
            if len(sample) < count:
                sample.append(document)
            elif (slot := rng.randrange(seen)) < count:
                sample[slot] = document
    if not sample:
        raise ValueError(f"{path}: no documents to sample")
    return [decode_utf8(document)[0] for document in sample]


def bytes_per_token(tokenizer: Tokenizer, documents: Sequence[str]) -> float:
    """Compression ratio: UTF-8 bytes of ``documents`` per token."""
    num_bytes = sum(len(document.encode("utf-8")) for document in documents)
    return num_bytes / max(1, sum(len(tokenizer.encode(document)) for document in documents))


def measure_throughput(vocab: Path, merges: Path, special_tokens: Sequence[str], text_path: Path,
                       megabytes: float) -> dict:
    """MB per CPU second of one process encoding the first ``megabytes`` MiB of ``text_path`` as the
    encode stage does (``encode_utf8``), with a fresh tokenizer (the first pass fills its cache)
    and again (warm cache, as on a large corpus).

    CPU time rather than wall time: on a shared machine the process may get a fraction of a core.
    The compiled code is loaded first, by another tokenizer: a process pays that once, whatever
    it encodes, and on a 1 MiB sample it would hide the rate.
    """
    with open(text_path, "rb") as handle:
        data = handle.read(int(megabytes * 2**20))
    cut = data.rfind(special_tokens[0].encode("utf-8"), 1) if special_tokens else -1
    data = valid_utf8(data[:cut] if cut > 0 else data)[0]
    Tokenizer.from_files(vocab, merges, special_tokens).encode_utf8(b"load the compiled code")
    tokenizer = Tokenizer.from_files(vocab, merges, special_tokens)
    rates = []
    for _ in range(2):
        began = time.process_time()
        tokenizer.encode_utf8(data)
        rates.append(len(data) / 1e6 / max(time.process_time() - began, 1e-9))
    return {"bytes": len(data), "first_pass_mb_s": rates[0], "warm_mb_s": rates[1]}


def longest_tokens(tokenizer: Tokenizer, count: int = 10) -> list[dict]:
    """The ``count`` longest ordinary tokens (ties by id)."""
    specials = {special.encode("utf-8") for special in tokenizer.special_tokens}
    ordered = sorted((token_id for token_id, token in tokenizer.vocab.items() if token not in specials),
                     key=lambda token_id: (-len(tokenizer.vocab[token_id]), token_id))
    return [{"id": token_id, "bytes": len(tokenizer.vocab[token_id]),
             "text": tokenizer.vocab[token_id].decode("utf-8", errors="replace")} for token_id in ordered[:count]]


def encoded_sizes(paths: dict[str, Path]) -> dict[str, dict]:
    """Tokens and bytes/token of each encoded split that exists (read from the .npy header)."""
    sizes = {}
    for split in SPLITS:
        if paths[f"{split}_ids"].is_file() and paths[f"{split}_text"].is_file():
            tokens = len(open_ids(paths[f"{split}_ids"]))
            num_bytes = paths[f"{split}_text"].stat().st_size
            sizes[split] = {"tokens": tokens, "bytes": num_bytes, "bytes_per_token": num_bytes / max(tokens, 1)}
    return sizes


def tokenizer_stats(results: str | os.PathLike, corpora: dict[str, list[str]], *, documents: int,
                    throughput_mb: float, workers: int, seed: int) -> dict:
    """Everything the report shows, as JSON-ready data (``corpora``: name -> special tokens)."""
    paths = {corpus: corpus_paths(results, corpus) for corpus in corpora}
    for corpus, files in paths.items():
        for key in ("vocab", "merges", "valid_text"):
            if not files[key].is_file():
                raise FileNotFoundError(f"{files[key]}: missing (the tokenizer report needs the {corpus} {key})")
    samples = {corpus: sample_documents(paths[corpus]["valid_text"], specials[0], documents, seed)
               for corpus, specials in corpora.items()}
    stats: dict = {"documents_per_corpus": documents, "seed": seed, "workers": workers, "tokenizers": {}}
    for corpus, specials in corpora.items():
        files = paths[corpus]
        tokenizer = Tokenizer.from_files(files["vocab"], files["merges"], specials)
        throughput = measure_throughput(files["vocab"], files["merges"], specials, files["valid_text"],
                                        throughput_mb)
        pile_hours = PILE_BYTES / (throughput["warm_mb_s"] * 1e6) / 3600
        stats["tokenizers"][corpus] = {
            "vocab_size": len(tokenizer.vocab),
            "merges": len(tokenizer.merges),
            "special_tokens": tokenizer.special_tokens,
            "bytes_per_token": {text: bytes_per_token(tokenizer, docs) for text, docs in samples.items()},
            "throughput": throughput | {"pile_hours_1_process": pile_hours,
                                        f"pile_hours_{workers}_processes": pile_hours / workers},
            "encoded": encoded_sizes(files),
            "longest_tokens": longest_tokens(tokenizer),
        }
        log.info("%s tokenizer: %s", corpus, stats["tokenizers"][corpus]["bytes_per_token"])
    return stats


def _cell(text: str) -> str:
    """A token shown in a markdown table cell: escaped, visible whitespace, pipes escaped."""
    return "`" + repr(text)[1:-1].replace("`", "'").replace("|", "\\|") + "`"


def render_markdown(stats: dict) -> str:
    """The report as markdown."""
    tokenizers = stats["tokenizers"]
    corpora = list(tokenizers)
    workers = stats["workers"]
    lines = ["# Tokenizers", "",
             f"Compression is UTF-8 bytes per token (higher is better) on {stats['documents_per_corpus']} "
             f"documents sampled (seed {stats['seed']}) from each corpus's valid split; rows are "
             "tokenizers, columns the text they encode, so off-diagonal cells are cross-corpus.", "",
             "## Compression (bytes/token)", ""]
    lines += markdown_table(["tokenizer \\ text"] + corpora,
                            [[f"{name} ({info['vocab_size']:,})"] +
                             [f"{info['bytes_per_token'][text]:.2f}" for text in corpora]
                             for name, info in tokenizers.items()])
    lines += ["", "## Throughput", "",
              "One process encoding the start of the tokenizer's own valid split, in MB per CPU second: first "
              "pass with an empty pre-token cache, then warm (what a large corpus sees). The Pile (825 GB) "
              f"projection uses the warm rate, and assumes linear scaling for {workers} processes.", ""]
    lines += markdown_table(
        ["tokenizer", "MiB measured", "first pass MB/s", "warm MB/s", "Pile, 1 process", f"Pile, {workers} processes"],
        [[name, f"{t['bytes'] / 2**20:.1f}", f"{t['first_pass_mb_s']:.1f}", f"{t['warm_mb_s']:.1f}",
          f"{t['pile_hours_1_process']:,.1f} h", f"{t[f'pile_hours_{workers}_processes']:,.1f} h"]
         for name, t in ((name, info["throughput"]) for name, info in tokenizers.items())])
    encoded = [[name, split, f"{size['bytes'] / 2**20:,.1f} MiB", f"{size['tokens']:,}",
                f"{size['bytes_per_token']:.2f}"]
               for name, info in tokenizers.items() for split, size in info["encoded"].items()]
    if encoded:
        lines += ["", "## Encoded corpora", ""]
        lines += markdown_table(["corpus", "split", "text", "tokens", "bytes/token"], encoded)
    lines += ["", "## Longest tokens", ""]
    for name, info in tokenizers.items():
        lines += [f"**{name}** ({info['vocab_size']:,} ids, {info['merges']:,} merges, special tokens: "
                  f"{', '.join(_cell(s) for s in info['special_tokens']) or 'none'})", ""]
        lines += markdown_table(["id", "bytes", "token"],
                                [[token["id"], token["bytes"], _cell(token["text"])]
                                 for token in info["longest_tokens"]])
        lines.append("")
    return "\n".join(lines)


def write_tokenizer_report(results: str | os.PathLike, corpora: dict[str, list[str]],
                           markdown_path: str | os.PathLike, json_path: str | os.PathLike,
                           settings: EncodeSettings) -> dict:
    """Write ``tokenizer.md`` and ``tokenizer.json`` for the tokenizers of ``corpora`` (name -> specials);
    ``settings``: the report's sample and measurement sizes."""
    stats = tokenizer_stats(results, corpora, documents=settings.report_documents,
                            throughput_mb=settings.report_throughput_mb, workers=settings.report_workers,
                            seed=settings.report_seed)
    write_json(json_path, stats, ensure_ascii=False)
    with atomic_open(markdown_path, "w", encoding="utf-8") as handle:
        handle.write(render_markdown(stats))
    return stats
