"""Training-step throughput: our from-scratch LM + AdamW next to the same model built from torch.nn.

Both run in this process with the same weights and batches, alternating in rounds so that
load from other processes hits both alike; the ratio is the figure to compare across machines.
Peak memory is measured separately, one child process per implementation.

    python benchmarks/train_step.py                 # CS336 TinyStories shape, batch 16, CPU
    python benchmarks/train_step.py --batch-size 4 --rounds 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from scratchlm.fileio import atomic_open
from scratchlm.nn import TransformerLM, cross_entropy
from scratchlm.optim import AdamW
from scratchlm.profiling import ProcessTreeMonitor


class TorchBlock(nn.Module):
    """Pre-norm block from torch.nn layers; parameter names match ours so state dicts are interchangeable."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int):
        super().__init__()
        self.num_heads = num_heads
        self.attn = nn.Module()
        for name in ("q_proj", "k_proj", "v_proj", "output_proj"):
            setattr(self.attn, name, nn.Linear(d_model, d_model, bias=False))
        self.ffn = nn.Module()
        self.ffn.w1, self.ffn.w3 = nn.Linear(d_model, d_ff, bias=False), nn.Linear(d_model, d_ff, bias=False)
        self.ffn.w2 = nn.Linear(d_ff, d_model, bias=False)
        self.ln1, self.ln2 = nn.RMSNorm(d_model, eps=1e-5), nn.RMSNorm(d_model, eps=1e-5)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.ln1(x)
        q, k, v = (proj(h).view(b, t, self.num_heads, -1).transpose(1, 2)
                   for proj in (self.attn.q_proj, self.attn.k_proj, self.attn.v_proj))
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn.output_proj(attn.transpose(1, 2).reshape(b, t, d))
        h = self.ln2(x)
        return x + self.ffn.w2(F.silu(self.ffn.w1(h)) * self.ffn.w3(h))


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE on interleaved pairs (x[2k], x[2k+1]); cos/sin are (seq, d_k/2)."""
    pairs = x.unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)


class TorchLM(nn.Module):
    """The reference architecture from torch.nn + F.scaled_dot_product_attention."""

    def __init__(self, vocab_size: int, context_length: int, d_model: int, num_layers: int, num_heads: int,
                 d_ff: int, rope_theta: float):
        super().__init__()
        self.token_embeddings = nn.Embedding(vocab_size, d_model)
        self.layers = nn.ModuleList(TorchBlock(d_model, num_heads, d_ff) for _ in range(num_layers))
        self.ln_final = nn.RMSNorm(d_model, eps=1e-5)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        d_k = d_model // num_heads
        angles = torch.outer(torch.arange(context_length).float(),
                             rope_theta ** (-torch.arange(0, d_k, 2).float() / d_k))
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        t = token_ids.shape[-1]
        x = self.token_embeddings(token_ids)
        for layer in self.layers:
            x = layer(x, self.cos[:t], self.sin[:t])
        return self.lm_head(self.ln_final(x))


def build(kind: str, shape: dict, seed: int):
    """(model, optimizer, loss function) for "ours" or "torch", with identical initial weights."""
    torch.manual_seed(seed)
    ours = TransformerLM(**shape, attention_backend="scratch")
    hyper = dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    if kind == "ours":
        return ours, AdamW(ours.parameters(), **hyper), cross_entropy
    model = TorchLM(**{**shape, "d_ff": ours.config.d_ff, "rope_theta": ours.config.rope_theta})
    model.load_state_dict(ours.state_dict())
    try:
        optimizer = torch.optim.AdamW(model.parameters(), **hyper, fused=True)
    except (RuntimeError, ValueError):  # no fused kernel for this device/build
        optimizer = torch.optim.AdamW(model.parameters(), **hyper, foreach=True)

    def loss_fn(logits, targets):
        return F.cross_entropy(logits.flatten(0, -2), targets.flatten())

    return model, optimizer, loss_fn


def train_step(model, optimizer, loss_fn, inputs, targets) -> float:
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model(inputs), targets)
    loss.backward()
    optimizer.step()
    return loss.item()


def make_batch(shape: dict, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, shape["vocab_size"], (batch_size, shape["context_length"] + 1), generator=generator)
    return tokens[:, :-1], tokens[:, 1:]


def time_interleaved(shape: dict, batch_size: int, rounds: int, steps: int) -> dict:
    """Median tokens/s per implementation over ``rounds`` alternating blocks of ``steps`` steps, and their ratio."""
    runs = {kind: build(kind, shape, seed=0) for kind in ("ours", "torch")}
    inputs, targets = make_batch(shape, batch_size, seed=1)
    first_loss = {kind: train_step(*runs[kind], inputs, targets) for kind in runs}  # warm-up step
    rates: dict[str, list[float]] = {kind: [] for kind in runs}
    for r in range(rounds):
        for kind in (("ours", "torch") if r % 2 == 0 else ("torch", "ours")):
            start = time.perf_counter()
            for _ in range(steps):
                train_step(*runs[kind], inputs, targets)
            rates[kind].append(steps * inputs.numel() / (time.perf_counter() - start))
    results = {kind: {"tokens_per_s": statistics.median(rates[kind]), "rounds": rates[kind],
                      "first_loss": first_loss[kind]} for kind in runs}
    # Each round's pair ran back to back, under about the same load: their ratio is the robust figure.
    results["ratio"] = statistics.median(a / b for a, b in zip(rates["ours"], rates["torch"]))
    return results


def _peak_rss_child(kind: str, shape: dict, batch_size: int, threads: int, queue) -> None:
    torch.set_num_threads(threads)  # a spawned child starts with torch's default
    with ProcessTreeMonitor(kind, interval=0.02) as monitor:
        run = build(kind, shape, seed=0)
        inputs, targets = make_batch(shape, batch_size, seed=1)
        for _ in range(2):  # the optimizer state exists from the first step on
            train_step(*run, inputs, targets)
    queue.put(monitor.profile.peak_rss_bytes)


def peak_rss_mb(kind: str, shape: dict, batch_size: int) -> float:
    """Peak RSS (MiB) of a fresh process that builds the model and runs two training steps."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_peak_rss_child, args=(kind, shape, batch_size, torch.get_num_threads(), queue))
    child.start()
    peak = queue.get()
    child.join()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab-size", type=int, default=10_000, help="vocabulary size")
    parser.add_argument("--context-length", type=int, default=256, help="tokens per sequence")
    parser.add_argument("--d-model", type=int, default=512, help="model width")
    parser.add_argument("--num-layers", type=int, default=4, help="Transformer blocks")
    parser.add_argument("--num-heads", type=int, default=16, help="attention heads")
    parser.add_argument("--d-ff", type=int, default=1344, help="feed-forward hidden size")
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per step")
    parser.add_argument("--rounds", type=int, default=4, help="alternating timing rounds per implementation")
    parser.add_argument("--steps", type=int, default=2, help="training steps per round")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = dict(vocab_size=args.vocab_size, context_length=args.context_length, d_model=args.d_model,
                 num_layers=args.num_layers, num_heads=args.num_heads, d_ff=args.d_ff)
    print(f"shape {shape}, batch {args.batch_size}, {torch.get_num_threads()} threads, torch {torch.__version__}")

    # Memory first: a child inherits the parent's peak RSS at fork time, so the parent must be small.
    memory = {} if args.no_memory else {kind: peak_rss_mb(kind, shape, args.batch_size) for kind in ("ours", "torch")}
    results = time_interleaved(shape, args.batch_size, args.rounds, args.steps)
    for kind, peak in memory.items():
        results[kind]["peak_rss_mb"] = peak
    ratio = results.pop("ratio")
    for kind, label in (("ours", "ours (scratch attention, our AdamW)"),
                        ("torch", "torch.nn + F.sdpa + torch AdamW")):
        r = results[kind]
        memory = f", peak RSS {r['peak_rss_mb']:.0f} MiB" if "peak_rss_mb" in r else ""
        print(f"{label:40s} {r['tokens_per_s']:9.0f} tokens/s (first loss {r['first_loss']:.4f}){memory}")
    print(f"ratio ours/torch: {ratio:.3f} (median over rounds of "
          f"{', '.join(f'{a / b:.2f}' for a, b in zip(results['ours']['rounds'], results['torch']['rounds']))})")
    if args.json:
        with atomic_open(args.json, "w") as handle:
            json.dump({"shape": shape, "batch_size": args.batch_size, "threads": torch.get_num_threads(),
                       "results": results, "ratio": ratio}, handle, indent=2)


if __name__ == "__main__":
    main()
