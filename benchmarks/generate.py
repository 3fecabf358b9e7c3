"""Decoding speed with and without the KV cache, TinyStories-shaped model on CPU (target: cached >= 5x).

Both paths run in this process, alternating, on the same random-weight model and greedy
decoding (so both produce the same tokens); the best of ``--repeats`` runs of each is reported.

    .venv/bin/python benchmarks/generate.py [--new-tokens 256] [--repeats 1] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch

from scratchlm.generation import generate_ids
from scratchlm.nn.model import TransformerLM
from scratchlm.profiling import ProcessTreeMonitor

# TinyStories model of the CS336 assignment: ~23M non-embedding parameters.
TINYSTORIES_SHAPE = dict(vocab_size=10_000, context_length=256, d_model=512, num_layers=4, num_heads=16, d_ff=1344)


def time_decoding(model: TransformerLM, new_tokens: int, *, use_cache: bool) -> tuple[float, list[int]]:
    """Seconds to greedily decode new_tokens after a one-token prompt, and the tokens."""
    start = time.perf_counter()
    [(ids, _)] = generate_ids(model, [[0]], new_tokens, temperature=0, use_cache=use_cache)
    return time.perf_counter() - start, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=256,
                        help="tokens to generate (1-token prompt; 256 fills the 256-token context exactly)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each path; the fastest counts")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = TransformerLM(**TINYSTORIES_SHAPE).eval()
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {TINYSTORIES_SHAPE} ({params / 1e6:.1f}M parameters), CPU, {args.threads} threads")
    time_decoding(model, 8, use_cache=True)  # warm-up: allocator, kernels
    best = {True: float("inf"), False: float("inf")}
    outputs = {}
    with ProcessTreeMonitor("bench-generate") as monitor:
        for _ in range(args.repeats):
            for use_cache in (True, False):
                seconds, outputs[use_cache] = time_decoding(model, args.new_tokens, use_cache=use_cache)
                best[use_cache] = min(best[use_cache], seconds)
    for use_cache, label in ((True, "cached  "), (False, "uncached")):
        print(f"{label}: {args.new_tokens / best[use_cache]:8.1f} tokens/s ({best[use_cache]:.2f} s "
              f"for {args.new_tokens} tokens)")
    print(f"speedup (cached / uncached tokens/s): {best[False] / best[True]:.1f}x (target >= 5x)")
    print(f"same greedy tokens: {outputs[True] == outputs[False]}; "
          f"peak RSS {monitor.profile.peak_rss_mb:.0f} MiB")


if __name__ == "__main__":
    main()
