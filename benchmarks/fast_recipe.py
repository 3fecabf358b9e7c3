"""The fast-training recipe against the tuned CS336 baseline, on real text, on CPU.

Data: the docs corpus (docs_train.txt 29 MB, docs_valid.txt 5 MB of Debian documentation) with
its own BPE tokenizer (vocab 2,048), built once into .bench/recipe/. Model: 4 layers, d_model
128, 4 heads, context 128 (about 1.3M parameters), batch 16, ``--steps`` steps (300: 614K
tokens), validation every 25 steps on the same 8 batches for every run.

* baseline: the CS336 recipe (AdamW, warm-up + cosine to 10%, SwiGLU), its learning rate tuned
  on seed 0 over ``--baseline-lrs`` (an untuned baseline proves nothing; the best must not be at
  an end of the sweep), then run on every seed;
* preset: all of ``CHANGES`` below (config.yaml's `speedrun` runs), AdamW's share at the tuned rate;
* leave-one-out: the preset minus each of its changes; and the preset plus each of the
  ``CANDIDATES`` that were measured and left out.

For every recipe and seed: the tokens and the wall time it needs to reach the tuned baseline's
final validation loss on the same seed (linear between evaluations), as a fraction of the
baseline's, and its own final loss.

    .venv/bin/python benchmarks/fast_recipe.py                   # seeds 0 and 1, about 16 minutes here
    .venv/bin/python benchmarks/fast_recipe.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from _docs_corpus import BENCH_DIR, docs_corpus

from scratchlm.nn.accounting import parameter_counts
from scratchlm.settings import Layer, ModelConfig, RunSettings
from scratchlm.settings.loading import merge_layers
from scratchlm.training.loop import train

FOLDER = BENCH_DIR / "recipe"
EOT = "<|endoftext|>"
VOCAB = 2048
BASE = {
    "corpus": "docs",
    "model": {"context_length": 128, "d_model": 128, "num_layers": 4, "num_heads": 4},
    "batch_size": 16,
    "eval_interval": 25,
    "eval_batches": 8,
    "log_interval": 25,
    "checkpoint_interval": 100000,
    "device": "cpu",
}
# The preset's changes, each one block of settings (config.yaml's `speedrun` runs are all of them),
# and the candidates measured but left out: at this scale they did not earn their place (each is
# tried as "preset + change").
CHANGES = {
    "muon": {"optimizer": {"name": "muon", "muon": {"lr": 0.02}}},
    "zero-init": {"model": {"zero_init_out": True}},
}
CANDIDATES = {
    "relu2": {"model": {"ffn": "relu2"}},
    "qk-norm": {"model": {"qk_norm": True}},
    "softcap": {"model": {"logit_softcap": 15.0}},
    "linear-to-zero": {"schedule": {"kind": "linear", "min_lr_ratio": 0.0, "warmup_fraction": 0.02}},
}


def merged(*blocks: dict) -> dict:
    """``blocks`` deep-merged in order."""
    return merge_layers([Layer(f"block {index}", block, "benchmark") for index, block in enumerate(blocks)])


def prepare_data() -> dict:
    """The docs corpus's tokenizer and encoded splits (made once)."""
    from scratchlm.tokenizer.bpe import train_bpe
    from scratchlm.tokenizer.encode import encode_corpus
    from scratchlm.tokenizer.serialization import save_pickle

    FOLDER.mkdir(parents=True, exist_ok=True)
    vocab, merges = FOLDER / "vocab.pkl", FOLDER / "merges.pkl"
    if not merges.exists():
        trained_vocab, trained_merges = train_bpe(docs_corpus("train"), VOCAB, [EOT], num_workers=2)
        save_pickle(trained_vocab, vocab)
        save_pickle(trained_merges, merges)
    data = {"corpus": "docs", "vocab_size": VOCAB, "vocab": str(vocab), "merges": str(merges)}
    for split in ("train", "valid"):
        ids = FOLDER / f"{split}.npy"
        if not ids.exists():
            encode_corpus(docs_corpus(split), vocab, merges, ids, workers=2)
        data[split] = str(ids)
    return data


def run(name: str, settings: dict, seed: int, data: dict, steps: int) -> dict:
    """Train one run from scratch; its evaluations as (tokens, seconds, val loss) and its final loss."""
    run_settings = RunSettings.model_validate(merged(BASE, settings, {"seed": seed, "steps": steps}))
    run_dir = FOLDER / "runs" / f"{name}-seed{seed}"
    began = time.perf_counter()
    summary = train(run_settings, data, run_dir, fresh=True, threads=2)
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    curve = [(line["tokens"], line["elapsed_s"], line["val_loss"]) for line in lines if "val_loss" in line]
    config = ModelConfig(**run_settings.model.model_dump(), vocab_size=VOCAB)
    seconds = time.perf_counter() - began
    print(f"  {name} seed {seed}: final val loss {summary['final_val_loss']:.4f} in {seconds:.0f} s", flush=True)
    return {"curve": curve, "final": summary["final_val_loss"], "parameters": parameter_counts(config)["total"]}


def reach(curve: list[tuple[int, float, float]], target: float) -> tuple[float, float]:
    """Tokens and seconds at which the validation loss first reaches ``target`` (linear between
    evaluations), or infinity."""
    previous = (0, 0.0, math.inf)
    for point in curve:
        if point[2] <= target:
            if previous[2] == math.inf:
                return float(point[0]), point[1]
            share = (previous[2] - target) / (previous[2] - point[2])
            return (previous[0] + share * (point[0] - previous[0]), previous[1] + share * (point[1] - previous[1]))
        previous = point
    return math.inf, math.inf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="steps per run (batch 16 x 128 tokens)")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds")
    parser.add_argument("--baseline-lrs", default="3e-3,1e-2,3e-2", help="the baseline's learning-rate sweep")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    data = prepare_data()
    print("baseline learning-rate sweep (seed 0):", flush=True)
    sweep = {lr: run(f"baseline-lr{lr}", {"optimizer": {"lr": float(lr)}}, seeds[0], data, args.steps)
             for lr in args.baseline_lrs.split(",")}
    best_lr = min(sweep, key=lambda lr: sweep[lr]["final"])
    at_end = best_lr in (min(sweep, key=float), max(sweep, key=float))
    edge = " (at an end of the sweep: widen --baseline-lrs)" if at_end else ""
    print(f"tuned baseline lr: {best_lr}{edge}", flush=True)
    # Every recipe keeps the tuned rate for what AdamW trains (all of the baseline; embeddings,
    # LM head and gains under Muon), so leaving Muon out falls back to the tuned baseline optimizer.
    tuned = {"optimizer": {"lr": float(best_lr)}}
    recipes = {"baseline": tuned, "preset": merged(tuned, *CHANGES.values())}
    recipes |= {f"preset - {change}": merged(tuned, *(block for name, block in CHANGES.items() if name != change))
                for change in CHANGES}
    recipes |= {f"preset + {change}": merged(recipes["preset"], block) for change, block in CANDIDATES.items()}
    results = {name: {} for name in recipes}
    for seed in seeds:
        for name, settings in recipes.items():
            reuse = name == "baseline" and seed == seeds[0]
            results[name][seed] = sweep[best_lr] if reuse else run(name, settings, seed, data, args.steps)
    report(results, seeds)
    if args.json:
        args.json.write_text(json.dumps({"baseline_lr": best_lr, "sweep": sweep, "results": results}, indent=1))


def report(results: dict, seeds: list[int]) -> None:
    """The table: per recipe and seed, tokens and seconds to the baseline's final loss, as shares."""
    print("\nrecipe | params | " + " | ".join(f"seed {seed}: final loss, tokens (share), wall (share)"
                                             for seed in seeds))
    for name, by_seed in results.items():
        cells = []
        for seed in seeds:
            baseline, mine = results["baseline"][seed], by_seed[seed]
            target = baseline["final"]
            tokens, seconds = reach(mine["curve"], target)
            base_tokens, base_seconds = reach(baseline["curve"], target)
            cells.append(f"{mine['final']:.4f}, {tokens:,.0f} ({tokens / base_tokens:.2f}), "
                         f"{seconds:.0f} s ({seconds / base_seconds:.2f})")
        print(f"{name} | {by_seed[seeds[0]]['parameters']:,} | " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
