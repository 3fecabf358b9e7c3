"""Encoding and decoding speed and memory: ours next to tiktoken with the same vocabulary.

Text: the docs corpus (docs_train.txt + docs_valid.txt, 35 MB of Debian documentation, built by
benchmarks/data/docs-corpus.sh into .bench/ if missing). Tokenizers: the reference ones in
tests/fixtures/reference-tokenizers (OpenWebText 32K, TinyStories 10K). One process each, the order
alternating over ``--rounds``; every figure is checked against tiktoken's ids.

* cold: a new process loads the tokenizer files and encodes the corpus files (wall time from
  its start to its last id: interpreter, imports, loading, the compiled kernels, reading, encoding).
  tiktoken reads the same vocab.json (its ranks are the ids), builds its Encoding and encodes
  the files read as str (its only input); ours encodes the bytes it reads (``encode_utf8``, what
  the encode stage does).
* warm: in one process, a second pass over the corpus as one str, both returning numpy arrays
  (``encode_array``, tiktoken's ``encode_to_numpy``); ours has its pre-token cache filled.
* decode: the corpus's ids back to text, from a Python list and from a numpy array.

    .venv/bin/python benchmarks/encode.py                       # cold, warm, decode: 3 rounds
    .venv/bin/python benchmarks/encode.py --stream-mb 500       # + peak RSS of encode_iterable vs tiktoken
    .venv/bin/python benchmarks/encode.py --pathological-mb 10  # + runs of one letter, spaces, emoji, ...
    .venv/bin/python benchmarks/encode.py --stage-mb 100        # + RSS of `scratchlm encode` at 1x and 3x
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _docs_corpus import docs_corpus

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "fixtures" / "reference-tokenizers"
EOT = "<|endoftext|>"
TARGET = 1.5
FLOOR = "floor"  # a child that only runs one compiled kernel: what loading the compiled code costs


def files_of(name: str) -> tuple[Path, Path]:
    return REFERENCE / f"{name}-vocab.json", REFERENCE / f"{name}-merges.txt"


def load(encoder: str, name: str, pattern: str | None = None):
    """(encode(str) -> ids, decode(ids) -> str, encode_file(path) -> ids) of ``encoder`` (ours or
    tiktoken) from the files; encode_file is each one's way to encode a file: ours reads bytes
    (``encode_utf8``, as the encode stage does), tiktoken has only str input. ``pattern``: GPT-2's,
    passed to tiktoken's child processes so that they do not import scratchlm for it."""
    vocab_path, merges_path = files_of(name)
    if encoder == "ours":
        from scratchlm.tokenizer import Tokenizer

        ours = Tokenizer.from_files(vocab_path, merges_path, [EOT])
        return ours.encode_array, ours.decode, lambda path: ours.encode_utf8(path.read_bytes())
    import tiktoken

    # GPT-2's files write bytes as printable characters; tiktoken's ranks are the ids.
    printable = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    shifted = [b for b in range(256) if b not in printable]
    byte_of = {chr(b): b for b in printable} | {chr(256 + k): b for k, b in enumerate(shifted)}
    vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    ranks = {bytes(byte_of[char] for char in token): token_id for token, token_id in vocab.items() if token != EOT}
    encoding = tiktoken.Encoding(name, pat_str=pattern or _gpt2_pattern(), mergeable_ranks=ranks,
                                 special_tokens={EOT: vocab[EOT]})

    def encode(text: str) -> np.ndarray:
        return encoding.encode_to_numpy(text, allowed_special="all")

    return encode, encoding.decode, lambda path: encode(path.read_text(encoding="utf-8"))


def _gpt2_pattern() -> str:
    from scratchlm.tokenizer.pretokenize import GPT2_PATTERN

    return GPT2_PATTERN


def corpus_text() -> str:
    return "".join(docs_corpus(split).read_text(encoding="utf-8") for split in ("train", "valid"))


def child(encoder: str, name: str, paths: list[Path], pattern: str) -> None:
    """What a cold process does: load, read, encode; prints the number of ids and a checksum."""
    encode_file = load(encoder, name, pattern)[2]
    ids = [encode_file(path) for path in paths]
    finished = time.time()  # the checksum below is not part of the figure
    ids = [np.asarray(part, dtype=np.int64) for part in ids]
    checksum = int(sum(int(part.sum()) for part in ids))
    print(json.dumps({"finished": finished, "ids": sum(map(len, ids)), "checksum": checksum,
                      "peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent it forked from)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024


def run_child(encoder: str, name: str, paths: list[Path], *args: str,
              timeout: float | None = None) -> tuple[float, dict]:
    """Wall seconds of a child process (from its start to the end of its encoding) and what it
    printed (ids, checksum, its peak RSS in MiB)."""
    began = time.time()
    command = [sys.executable, __file__, "--child", encoder, "--tokenizer", name, "--pattern", _gpt2_pattern(), *args]
    done = subprocess.run([*command, *map(str, paths)], check=True, capture_output=True, text=True, timeout=timeout)
    result = json.loads(done.stdout.splitlines()[-1])
    return result.pop("finished", time.time()) - began, result


def alternating(rounds: int, measure) -> list[dict]:
    """``measure(encoder)`` for tiktoken and ours, ``rounds`` times, the order alternating."""
    rows = []
    for index in range(rounds):
        order = ("tiktoken", "ours") if index % 2 == 0 else ("ours", "tiktoken")
        rows.append({encoder: measure(encoder) for encoder in order})
    return rows


def cold(name: str, megabytes: float, rounds: int) -> list[float]:
    paths = [docs_corpus("train"), docs_corpus("valid")]
    rows = alternating(rounds, lambda encoder: run_child(encoder, name, paths))
    ratios = []
    for index, row in enumerate(rows):
        if {**row["ours"][1], "peak_rss_mb": 0} != {**row["tiktoken"][1], "peak_rss_mb": 0}:
            raise SystemExit(f"{name}: cold ids differ from tiktoken's")
        ratios.append(row["tiktoken"][0] / row["ours"][0])
        print(f"  cold round {index + 1}: tiktoken {megabytes / row['tiktoken'][0]:.1f} MB/s "
              f"({row['tiktoken'][0]:.2f} s), ours {megabytes / row['ours'][0]:.1f} MB/s ({row['ours'][0]:.2f} s): "
              f"{ratios[-1]:.2f}x", flush=True)
    return ratios


def timed(function, *args) -> tuple[float, object]:
    """Seconds of ``function(*args)`` and its result, without the garbage collector (as timeit):
    a collection set off by the other library's garbage would land on whichever runs next."""
    gc.collect()
    gc.disable()
    try:
        began = time.perf_counter()
        result = function(*args)
        return time.perf_counter() - began, result
    finally:
        gc.enable()


def warm_and_decode(name: str, text: str, rounds: int) -> tuple[list[float], dict[str, list[float]]]:
    """Warm encoding ratios, and decoding ratios from a list and from an array."""
    megabytes = len(text.encode("utf-8")) / 1e6
    coders = {encoder: load(encoder, name) for encoder in ("tiktoken", "ours")}
    as_array = coders["tiktoken"][0](text)
    if not np.array_equal(coders["ours"][0](text), as_array):  # ours: the first (cold) pass fills the cache
        raise SystemExit(f"{name}: ids differ from tiktoken's")
    expected = as_array.tolist()
    warm, decode = [], {"list": [], "array": []}
    for index, row in enumerate(alternating(rounds, lambda encoder: (
            timed(coders[encoder][0], text)[0], timed(coders[encoder][1], expected),
            timed(coders[encoder][1], as_array)))):
        if not row["ours"][1][1] == row["ours"][2][1] == row["tiktoken"][1][1] == text:
            raise SystemExit(f"{name}: decoded text differs")
        warm.append(row["tiktoken"][0] / row["ours"][0])
        decode["list"].append(row["tiktoken"][1][0] / row["ours"][1][0])
        decode["array"].append(row["tiktoken"][2][0] / row["ours"][2][0])
        print(f"  warm round {index + 1}: tiktoken {megabytes / row['tiktoken'][0]:.1f} MB/s, ours "
              f"{megabytes / row['ours'][0]:.1f} MB/s: {warm[-1]:.2f}x; decode {len(expected):,} ids: tiktoken "
              f"{row['tiktoken'][1][0] * 1e3:.0f} ms, ours {row['ours'][1][0] * 1e3:.0f} ms from a list "
              f"({decode['list'][-1]:.2f}x), {row['ours'][2][0] * 1e3:.0f} ms from an array "
              f"({decode['array'][-1]:.2f}x)", flush=True)
    return warm, decode


def summary(label: str, ratios: list[float]) -> str:
    return (f"{label} {statistics.median(ratios):.2f}x (rounds {', '.join(f'{r:.2f}' for r in ratios)}; "
            f"lowest {min(ratios):.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (0: only the options below)")
    parser.add_argument("--tokenizer", default="owt-32k,tinystories-10k", help="reference tokenizers, comma-separated")
    parser.add_argument("--stream-mb", type=int, default=0, help="peak RSS of encode_iterable over a file this large")
    parser.add_argument("--pathological-mb", type=float, default=0, help="time and RSS of pathological inputs")
    parser.add_argument("--stage-mb", type=int, default=0, help="RSS of `scratchlm encode` at this size and 3x")
    parser.add_argument("--child", choices=["ours", "tiktoken", FLOOR], help=argparse.SUPPRESS)
    parser.add_argument("--stream", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pattern", help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        (stream_child if args.stream else child)(args.child, args.tokenizer, args.paths, args.pattern)
        return
    from _encode_memory import pathological, stage_rss, stream_rss

    text = corpus_text()
    megabytes = len(text.encode("utf-8")) / 1e6
    print(f"docs corpus: {megabytes:.1f} MB", flush=True)
    for name in args.tokenizer.split(",") if args.rounds else ():
        print(f"{name}:", flush=True)
        cold_ratios = cold(name, megabytes, args.rounds)
        warm, decode = warm_and_decode(name, text, args.rounds)
        print(f"{name}: ours/tiktoken (target >= {TARGET}x): {summary('cold', cold_ratios)}; "
              f"{summary('warm', warm)}; {summary('decode from a list', decode['list'])}; "
              f"{summary('from an array', decode['array'])}", flush=True)
    del text
    if args.stream_mb:
        stream_rss(args.tokenizer.split(",")[0], args.stream_mb)
    if args.pathological_mb:
        pathological(args.tokenizer.split(",")[0], args.pathological_mb)
    if args.stage_mb:
        stage_rss(args.stage_mb)


def stream_child(encoder: str, name: str, paths: list[Path], pattern: str) -> None:
    """Count the ids of a file streamed line by line: ours through ``encode_iterable``, tiktoken
    one line at a time (it has no streaming API). The floor reads nothing: it runs one of our
    compiled functions on an empty array, the least any process running them holds."""
    count = 0
    with open(paths[0], encoding="utf-8") as handle:
        if encoder == FLOOR:
            from scratchlm.tokenizer.fast_decode import CompiledDecoder

            CompiledDecoder({0: b"a"}).decode_bytes(np.zeros(0, dtype=np.int64))
        elif encoder == "ours":
            from scratchlm.tokenizer import Tokenizer

            tokenizer = Tokenizer.from_files(*files_of(name), [EOT])
            for _ in tokenizer.encode_iterable(handle):
                count += 1
        else:
            encode = load(encoder, name, pattern)[0]
            for line in handle:
                count += len(encode(line))
    print(json.dumps({"ids": count, "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main()
