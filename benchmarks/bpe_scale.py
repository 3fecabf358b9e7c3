"""BPE training at OpenWebText-like scale: ours next to HF ``tokenizers`` on a corpus with a chosen
number of distinct pre-tokens.

OpenWebText has about 6.6M distinct pre-tokens, most of them rare: names, numbers, identifiers,
typos, in lower case, capitalised and with a leading space. The real 30 MB docs corpus alone has
160K. This script makes (deterministically, into ``.bench/``) a corpus of the docs text plus
documents of generated rare words — pronounceable lower-case words, capitalised and leading-space
variants, numbers, snake_case and camelCase identifiers, each seen once to a few times — until
the corpus has the requested number of distinct GPT-2 pre-tokens. Then ``bpe_train.py``'s
machinery trains both, each in a fresh process, alternating, and prints wall time, merge-loop
time, peak RSS (main + workers) and the ratio.

    .venv/bin/python benchmarks/bpe_scale.py --distinct 1000000
    .venv/bin/python benchmarks/bpe_scale.py --distinct 3000000 --rounds 2
    .venv/bin/python benchmarks/bpe_scale.py --distinct 1000000 --engines   # compiled vs Python loop

``--engines`` times our two merge loops instead (numba and the pure-Python reference), on the
same counts in one process, alternating, and checks they give the same merges.
"""

from __future__ import annotations

import argparse
import os
import random
from pathlib import Path

from _docs_corpus import BENCH_DIR, docs_corpus
from bpe_train import report, run_child

from scratchlm.tokenizer.pretokenize import count_pretokens
from scratchlm.tokenizer.bpe import count_file, train_from_counts

EOT = "<|endoftext|>"
SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou", "er")]
WORDS_PER_DOCUMENT = 150


def rare_word(index: int, rng: random.Random) -> str:
    """The ``index``-th generated word: unique syllables, in one of the shapes real text has."""
    syllables = []
    index += len(SYLLABLES)  # at least two syllables
    while index:
        index, digit = divmod(index, len(SYLLABLES))
        syllables.append(SYLLABLES[digit])
    word = "".join(syllables)
    shape = rng.random()
    if shape < 0.55:
        return " " + word
    if shape < 0.75:
        return " " + word.capitalize()
    if shape < 0.85:
        return word.capitalize()
    if shape < 0.92:
        return f" {rng.randrange(10**rng.randint(3, 9))}"
    if shape < 0.96:
        return f" {word}_{rng.choice(SYLLABLES)}{rng.randrange(100)}"
    return f" {word}{rng.choice(SYLLABLES).capitalize()}"


def make_corpus(distinct: int, seed: int = 0) -> Path:
    """``.bench/scale_{distinct}.txt``: the docs corpus plus rare-word documents, built once."""
    path = BENCH_DIR / f"scale_{distinct}.txt"
    if path.exists():
        return path
    base = docs_corpus("train").read_text(encoding="utf-8")
    seen = set(count_pretokens(base, [EOT]))
    rng = random.Random(seed)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(base)
        index, words = 0, []
        while len(seen) < distinct:
            word = rare_word(index, rng)
            index += 1
            for _ in range(1 + int(rng.expovariate(1.0))):  # a long tail: 1, 2, 3... occurrences
                words.append(word)
            seen.update(count_pretokens(word, []))
            if len(words) >= WORDS_PER_DOCUMENT:
                rng.shuffle(words)
                out.write(EOT + "".join(words) + ".\n")
                words = []
        out.write(EOT + "".join(words) + ".\n")
    os.replace(tmp, path)
    return path


def compare_engines(path: Path, vocab_size: int, workers: int, rounds: int) -> None:
    """Merge-loop seconds of the compiled and the Python engine on the same counts, alternating."""
    import time

    counts = count_file(path, [EOT], num_workers=workers).counts
    seconds: dict[str, list[float]] = {"numba": [], "python": []}
    merges = {}
    for round_no in range(rounds):
        for engine in (("numba", "python") if round_no % 2 == 0 else ("python", "numba")):
            began = time.perf_counter()
            merges[engine] = train_from_counts(counts, vocab_size, [EOT], engine=engine)[1]
            seconds[engine].append(time.perf_counter() - began)
            print(f"round {round_no + 1}: {engine} merge loop {seconds[engine][-1]:.1f} s", flush=True)
    ratios = [p / n for p, n in zip(seconds["python"], seconds["numba"])]
    print(f"{len(counts):,} distinct pre-tokens, vocab {vocab_size}: compiled loop {min(seconds['numba']):.1f} s, "
          f"Python loop {min(seconds['python']):.1f} s: {min(seconds['python']) / min(seconds['numba']):.1f}x "
          f"(per round {', '.join(f'{r:.1f}' for r in ratios)}); same merges: {merges['numba'] == merges['python']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--distinct", type=int, default=1_000_000, help="distinct pre-tokens in the corpus")
    parser.add_argument("--vocab-size", type=int, default=32_000, help="vocabulary size")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="processes/threads")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each trainer")
    parser.add_argument("--engines", action="store_true", help="compare our compiled and Python merge loops")
    args = parser.parse_args()
    args.input = make_corpus(args.distinct)
    if args.engines:
        compare_engines(args.input, args.vocab_size, args.workers, args.rounds)
        return
    args.profile = False
    print(f"corpus {args.input}: {args.input.stat().st_size / 1e6:.0f} MB", flush=True)
    results: dict[str, list[dict]] = {"ours": [], "peer": []}
    for round_no in range(args.rounds):
        for name in (("ours", "peer") if round_no % 2 == 0 else ("peer", "ours")):
            results[name].append(run_child(name, args))
            print(f"round {round_no + 1}: {name} {results[name][-1]['seconds']:.1f} s", flush=True)
    report(results, args)


if __name__ == "__main__":
    main()
