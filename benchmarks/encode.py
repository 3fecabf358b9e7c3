"""Encoding speed: our Tokenizer next to tiktoken with the same vocabulary (target: >= 0.5x).

Encodes ``docs_valid.txt`` (5 MB of real documentation, built by
../shared/bench/make-docs-corpus.sh into .bench/ if missing) with the 32K OpenWebText
tokenizer in ../shared/reference-tokenizers, single process, in the same run as tiktoken
loaded with that vocabulary; the order alternates over ``--rounds`` so that load from other
processes hits both alike, and the ratio of each round is reported with the ids checked equal.
"Cold" is a fresh tokenizer (its first pass fills the pre-token cache); "warm" is a second
pass, which is what a worker sees after its first few MB of a large corpus.

    .venv/bin/python benchmarks/encode.py                 # ratio to tiktoken, 3 rounds
    .venv/bin/python benchmarks/encode.py --rss-mb 500    # + peak RSS of the encode stage on 500 MB
    .venv/bin/python benchmarks/encode.py --profile       # cProfile of one cold pass
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tiktoken

from _docs_corpus import BENCH_DIR, docs_corpus

from scratchlm.profiling import ProcessTreeMonitor
from scratchlm.tokenizer.pretokenize import GPT2_PATTERN
from scratchlm.tokenizer.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference-tokenizers"
EOT = "<|endoftext|>"
# Train splits users encode, in bytes, and the best Python peers' times on 32 workers (issue 4).
CORPORA = {"TinyStories train": (2.23e9, 84.0), "OpenWebText train": (11.92e9, 508.0)}


def load_pair(name: str) -> tuple[Tokenizer, tiktoken.Encoding]:
    """Our tokenizer and tiktoken's, from the same GPT-2 style vocab.json / merges.txt."""
    ours = Tokenizer.from_files(REFERENCE / f"{name}-vocab.json", REFERENCE / f"{name}-merges.txt", [EOT])
    # Token ids follow merge order in these files, so they are valid tiktoken ranks.
    ranks = {token: token_id for token_id, token in ours.vocab.items() if token != EOT.encode()}
    reference = tiktoken.Encoding(name, pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                                  special_tokens={EOT: ours.token_id(EOT)})
    return ours, reference


def timed(function) -> tuple[float, float, object]:
    """Wall and CPU seconds of ``function()`` and its result."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def compare(name: str, text: str, rounds: int) -> dict:
    """MB/s of ours (cold, warm) and tiktoken per round, alternating which goes first.

    Rates per CPU second are reported too: on a shared machine a process may get a fraction
    of a core, which wall-clock rates hide but CPU time does not.
    """
    megabytes = len(text.encode("utf-8")) / 1e6
    rows = []
    for round_index in range(rounds):
        ours, reference = load_pair(name)
        runs = [("tiktoken", lambda: reference.encode(text, allowed_special="all")),
                ("cold", lambda: ours.encode(text)), ("warm", lambda: ours.encode(text))]
        if round_index % 2:
            runs = runs[1:] + runs[:1]
        rates, ids = {}, {}
        for label, run in runs:
            wall, cpu, ids[label] = timed(run)
            rates[label], rates[f"{label}_cpu"] = megabytes / wall, megabytes / cpu
        if not ids["cold"] == ids["warm"] == ids["tiktoken"]:
            raise SystemExit(f"round {round_index}: our ids differ from tiktoken's")
        rows.append(rates)
        print(f"round {round_index}: MB/s wall (per CPU second): tiktoken {rates['tiktoken']:.2f} "
              f"({rates['tiktoken_cpu']:.2f}), ours cold {rates['cold']:.2f} ({rates['cold_cpu']:.2f}), "
              f"warm {rates['warm']:.2f} ({rates['warm_cpu']:.2f}); ids equal ({len(ids['cold']):,} tokens)",
              flush=True)
    labels = ("tiktoken", "cold", "warm")
    rate = {key: statistics.median(row[key] for row in rows) for label in labels for key in (label, f"{label}_cpu")}
    ratio = {key: statistics.median(row[key] / row[base] for row in rows)
             for key, base in (("cold", "tiktoken"), ("warm", "tiktoken"),
                               ("cold_cpu", "tiktoken_cpu"), ("warm_cpu", "tiktoken_cpu"))}
    return {"megabytes": megabytes, "rounds": rows, "median_mb_s": rate, "median_ratio": ratio}


def projections(rates: dict, workers: int = 16) -> dict:
    """Time of the encode stage on ``workers`` processes with a core each, scaling linearly from one
    process at its rate per CPU second: warm (a large corpus) and cold (bound: cache never warm)."""
    result = {}
    for corpus, (size, peer_seconds) in CORPORA.items():
        warm, cold = (size / (rates[f"{label}_cpu"] * 1e6 * workers) for label in ("warm", "cold"))
        result[corpus] = {"seconds_warm": warm, "seconds_cold": cold, "peer_seconds_32_workers": peer_seconds}
        print(f"{corpus}: {size / 1e9:.1f} GB -> {warm:.0f} s (warm) to {cold:.0f} s (cold) on {workers} "
              f"workers; peers: {peer_seconds:.0f} s on 32")
    return result


def peak_rss(docs_train: Path, megabytes: int, workers: int) -> dict:
    """Peak RSS of the process tree while ``scratchlm encode`` encodes a ``megabytes`` MB file.

    The command runs in a child process (started before this one has loaded anything big), so
    its workers inherit nothing from the benchmark; the tree includes this parent.
    """
    text = docs_train.read_bytes()
    big = BENCH_DIR / f"docs_{megabytes}mb.txt"
    if not big.exists() or big.stat().st_size < megabytes * 10**6:
        with open(big, "wb") as handle:  # the docs corpus repeated: real text, repeated documents
            while handle.tell() < megabytes * 10**6:
                handle.write(text + EOT.encode())
    del text
    with tempfile.TemporaryDirectory(dir=BENCH_DIR) as folder, ProcessTreeMonitor("encode") as monitor:
        command = [sys.executable, "-m", "scratchlm.cli", "encode", str(big), str(Path(folder) / "ids.npy"),
                   "--vocab", str(REFERENCE / "owt-32k-vocab.json"), "--merges", str(REFERENCE / "owt-32k-merges.txt"),
                   "--workers", str(workers)]
        subprocess.run(command, check=True)
    profile = monitor.profile
    size = big.stat().st_size
    print(f"scratchlm encode on {size / 1e6:.0f} MB, {workers} workers: {profile.wall_s:.1f} s wall "
          f"({size / 1e6 / profile.wall_s:.1f} MB/s), {profile.cpu_s:.1f} CPU s "
          f"({size / 1e6 / profile.cpu_s:.1f} MB per CPU second), peak RSS {profile.peak_rss_mb:.0f} MiB "
          f"over {profile.peak_processes} processes", flush=True)
    return {"bytes": size, "workers": workers, "wall_s": profile.wall_s, "cpu_s": profile.cpu_s,
            "peak_rss_mb": profile.peak_rss_mb, "processes": profile.peak_processes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median reported)")
    parser.add_argument("--tokenizer", default="owt-32k", help="reference tokenizer (owt-32k, tinystories-10k)")
    parser.add_argument("--rss-mb", type=int, default=0, help="also measure peak RSS encoding a file this large")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="workers for --rss-mb")
    parser.add_argument("--profile", action="store_true", help="cProfile one cold pass instead")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    docs = docs_corpus("valid")
    if args.profile:
        import cProfile
        import pstats

        ours, _ = load_pair(args.tokenizer)
        profiler = cProfile.Profile()
        profiler.runcall(ours.encode, docs.read_text(encoding="utf-8"))
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(12)
        return
    results: dict = {"tokenizer": args.tokenizer, "corpus": str(docs)}
    if args.rss_mb:  # first, while this process is still small
        results["rss"] = peak_rss(docs.with_name("docs_train.txt"), args.rss_mb, args.workers)
    results |= compare(args.tokenizer, docs.read_text(encoding="utf-8"), args.rounds)
    ratio = results["median_ratio"]
    print(f"median over {args.rounds} rounds, ours/tiktoken: cold {ratio['cold']:.2f}x wall, "
          f"{ratio['cold_cpu']:.2f}x CPU; warm {ratio['warm']:.2f}x wall, {ratio['warm_cpu']:.2f}x CPU "
          "(target >= 0.5x)")
    results["projected_16_workers"] = projections(results["median_mb_s"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
