"""BPE training speed and memory: ours next to HuggingFace ``tokenizers`` (target: <= 2.0x, < 1 GB).

Trains on ``docs_train.txt`` (30 MB of real documentation, built by
benchmarks/data/docs-corpus.sh into .bench/ if missing) with vocab 32,000 and
``<|endoftext|>``. Each trainer runs in a fresh child process, alternating over ``--rounds`` so
that load from other processes hits both alike; the parent samples the RSS of each child's whole
process tree (pool workers included). Our run also reports its pre-tokenize / merge split,
from which the TinyStories and OpenWebText estimates are extrapolated.

    .venv/bin/python benchmarks/bpe_train.py                       # docs corpus, 2 rounds
    .venv/bin/python benchmarks/bpe_train.py --input results/corpora/demo/train.txt --vocab-size 2048
    .venv/bin/python benchmarks/bpe_train.py --profile --rounds 1  # + cProfile of our merge loop
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from _docs_corpus import docs_corpus

from scratchlm.profiling import ProcessTreeMonitor

EOT = "<|endoftext|>"
# Scale of the corpora users compare with (issue 3): bytes and distinct pre-tokens.
SCALES = {"TinyStories (10K)": (2.1e9, 60e3), "OpenWebText (32K)": (11.9e9, 6.6e6)}


def run_ours(path: str, vocab_size: int, workers: int, profile: bool) -> dict:
    """Our trainer, timed in two halves: counting pre-tokens and the merge loop (the counts pass
    between them as an Arrow table, as in the pipeline)."""
    from scratchlm.tokenizer.bpe import count_file_table, train_from_counts

    began, began_cpu = time.perf_counter(), _tree_cpu_seconds()
    counts, chunk = count_file_table(path, [EOT], num_workers=workers)
    counted, counted_cpu = time.perf_counter(), _tree_cpu_seconds()
    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        vocab, merges = profiler.runcall(train_from_counts, counts, vocab_size, [EOT])
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(12)
    else:
        vocab, merges = train_from_counts(counts, vocab_size, [EOT])
    done, done_cpu = time.perf_counter(), _tree_cpu_seconds()
    return {"seconds": done - began, "pretokenize_s": counted - began, "merge_s": done - counted,
            "pretokenize_cpu_s": counted_cpu - began_cpu, "merge_cpu_s": done_cpu - counted_cpu,
            "distinct_pretokens": counts.num_rows, "bytes": chunk.num_bytes, "vocab": len(vocab),
            "merges": len(merges)}


def _tree_cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (the pool workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_peer(path: str, vocab_size: int, workers: int, profile: bool) -> dict:
    """HuggingFace BpeTrainer the way its users run it at full speed: a Split that removes
    <|endoftext|>, then its own GPT-2 byte-level pre-tokenizer (the same regex as ours)."""
    os.environ["RAYON_NUM_THREADS"] = str(workers)  # read when the thread pool starts
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(EOT, behavior="removed"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    began = time.perf_counter()
    tokenizer.train([path], trainer)
    return {"seconds": time.perf_counter() - began, "vocab": tokenizer.get_vocab_size()}


RUNNERS = {"ours": run_ours, "peer": run_peer}


def run_child(name: str, args: argparse.Namespace) -> dict:
    """Run one trainer in a fresh process; wall time and peak RSS of its whole process tree."""
    command = [sys.executable, __file__, "--child", name, "--input", str(args.input),
               "--vocab-size", str(args.vocab_size), "--workers", str(args.workers)]
    if args.profile and name == "ours":
        command.append("--profile")
    with ProcessTreeMonitor(f"bpe-{name}", interval=0.05) as monitor:
        out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
    result = json.loads(out.splitlines()[-1])
    return result | {"peak_rss_mb": monitor.profile.peak_rss_mb, "cpu_s": monitor.profile.cpu_s}


def report(results: dict[str, list[dict]], args: argparse.Namespace) -> None:
    """Print the figures: best time of each, the ratio, peak RSS and the scale estimates."""
    best = {name: min(runs, key=lambda r: r["seconds"]) for name, runs in results.items()}
    ours, peer = best["ours"], best["peer"]
    size_mb = ours["bytes"] / 1e6
    print(f"\ncorpus {args.input} ({size_mb:.1f} MB), vocab {args.vocab_size}, {args.workers} workers, "
          f"{len(results['ours'])} rounds (best of each)")
    for name, label in (("ours", "scratchlm"), ("peer", "HF tokenizers")):
        times = ", ".join(f"{r['seconds']:.1f}" for r in results[name])
        print(f"  {label:14s} {best[name]['seconds']:7.1f} s  (runs: {times})  CPU {best[name]['cpu_s']:6.1f} s  "
              f"peak RSS {max(r['peak_rss_mb'] for r in results[name]):6.0f} MiB")
    per_round = ", ".join(f"{o['seconds'] / p['seconds']:.2f}" for o, p in zip(results["ours"], results["peer"]))
    print(f"  ratio ours/peer: {ours['seconds'] / peer['seconds']:.2f}x (per round: {per_round})")
    print(f"  ours: pre-tokenize {ours['pretokenize_s']:.1f} s wall / {ours['pretokenize_cpu_s']:.1f} s CPU, "
          f"merge loop {ours['merge_s']:.1f} s wall / {ours['merge_cpu_s']:.1f} s CPU "
          f"for {ours['distinct_pretokens']:,} distinct pre-tokens")
    # Estimates from CPU seconds, which other processes on a shared machine inflate far less
    # than wall time: pre-tokenization scales with bytes / cores, the merge loop (one core)
    # roughly with distinct pre-tokens (docs words are long, so this leans pessimistic).
    per_core = size_mb / ours["pretokenize_cpu_s"]
    per_pretoken_us = ours["merge_cpu_s"] / ours["distinct_pretokens"] * 1e6
    print(f"  rates: pre-tokenize {per_core:.1f} MB/s per core; merge loop {per_pretoken_us:.0f} us "
          f"per distinct pre-token")
    for label, (size, distinct) in SCALES.items():
        merge = distinct * per_pretoken_us / 1e6
        for cores in (16, 32):
            pretok = size / 1e6 / (per_core * cores)
            print(f"  estimate {label} on {cores} cores: pre-tokenize {pretok:.0f} s + merge loop ~{merge:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--input", type=Path, default=None, help="text file (default: the docs corpus)")
    parser.add_argument("--vocab-size", type=int, default=32_000, help="vocabulary size")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="processes/threads")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each trainer")
    parser.add_argument("--profile", action="store_true", help="cProfile our merge loop (printed to stderr)")
    parser.add_argument("--child", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = RUNNERS[args.child](str(args.input), args.vocab_size, args.workers, args.profile)
        print(json.dumps(result))
        return
    args.input = args.input or docs_corpus("train")
    results: dict[str, list[dict]] = {"ours": [], "peer": []}
    for round_no in range(args.rounds):
        order = ("ours", "peer") if round_no % 2 == 0 else ("peer", "ours")
        for name in order:
            results[name].append(run_child(name, args))
            print(f"round {round_no + 1}: {name} {results[name][-1]['seconds']:.1f} s", flush=True)
    report(results, args)


if __name__ == "__main__":
    main()
