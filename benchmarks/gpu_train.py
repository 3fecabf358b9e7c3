"""Training throughput and MFU of our training step on one GPU: scratch vs sdpa attention, eager vs
compiled, fp32 (TF32) vs bf16, on the CS336 TinyStories base shape (batch 128, context 256,
d_model 512, 4 layers, 16 heads, d_ff 1344, vocab 10K).

The step is the trainer's own: autocast, our cross-entropy, gradient clipping on the device,
our foreach AdamW, no host sync inside the step. Variants run in alternating rounds in this one
process, so the ratio scratch/sdpa compares them under the same conditions. MFU divides model
FLOPs (``scratchlm.nn.accounting.training_flops_per_token``) by the device's dense peak.

    python benchmarks/gpu_train.py --quick          # < 5 min on one H100/H200, compilation included
    python benchmarks/gpu_train.py                  # every combination, more rounds
    python benchmarks/gpu_train.py --json out.json

Without a GPU it runs a tiny shape on the CPU to check that the script works and says that GPU
figures need a GPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from scratchlm.fileio import atomic_open
from scratchlm.nn import ModelConfig, TransformerLM, cross_entropy
from scratchlm.optim import AdamW, clip_gradients
from scratchlm.nn.accounting import training_flops_per_token
from scratchlm.training.device import CompiledOrEager, autocast, configure_backend

BASE = dict(vocab_size=10_000, context_length=256, d_model=512, num_layers=4, num_heads=16, d_ff=1344)
TINY = dict(vocab_size=512, context_length=64, d_model=64, num_layers=2, num_heads=4, d_ff=192)
# Dense (no sparsity) peak FLOP/s per precision: bf16 tensor cores, and TF32 for fp32 matmuls.
PEAK_FLOPS = {"H200": {"bf16": 989e12, "fp32": 494e12}, "H100": {"bf16": 989e12, "fp32": 494e12},
              "A100": {"bf16": 312e12, "fp32": 156e12}, "L40S": {"bf16": 362e12, "fp32": 183e12},
              "A10": {"bf16": 125e12, "fp32": 62.5e12}}


def peak_flops(device: torch.device, precision: str) -> float | None:
    """The dense peak of a known GPU for ``precision``, from its product name; None otherwise."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peaks in PEAK_FLOPS.items():
        if key in name:
            return peaks[precision]
    return None


class Variant:
    """One configuration's model, optimizer and step function."""

    def __init__(self, shape: dict, *, attention: str, compiled: bool, precision: str, device: torch.device):
        self.name = f"{attention:7s} {'compiled' if compiled else 'eager':8s} {precision}"
        self.attention, self.compiled, self.precision, self.device = attention, compiled, precision, device
        torch.manual_seed(0)
        self.model = TransformerLM(**shape, attention_backend=attention, device=device)
        self.forward = CompiledOrEager(self.model) if compiled else self.model
        self.optimizer = AdamW(self.model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
        self.dtype = torch.bfloat16 if precision == "bf16" else None

    def step(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.dtype):
            loss = cross_entropy(self.forward(inputs), targets)
        loss.backward()
        clip_gradients(self.model.parameters(), 1.0)
        self.optimizer.step()
        return loss.detach()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(variants: list[Variant], batch: tuple[torch.Tensor, torch.Tensor], *, rounds: int,
            steps: int, warmup: int) -> dict[str, dict]:
    """Median tokens/s of each variant over alternating rounds (after ``warmup`` steps, which compile)."""
    inputs, targets = batch
    results = {}
    for variant in variants:
        started = time.perf_counter()
        for _ in range(warmup):
            loss = variant.step(inputs, targets)
        synchronize(variant.device)
        results[variant.name] = {"warmup_s": time.perf_counter() - started, "loss": float(loss), "rates": []}
    for r in range(rounds):
        for variant in (variants if r % 2 == 0 else variants[::-1]):
            synchronize(variant.device)
            started = time.perf_counter()
            for _ in range(steps):
                variant.step(inputs, targets)
            synchronize(variant.device)
            results[variant.name]["rates"].append(steps * inputs.numel() / (time.perf_counter() - started))
    for variant in variants:
        entry = results[variant.name]
        entry["tokens_per_s"] = statistics.median(entry["rates"])
        if variant.device.type == "cuda":
            entry["peak_memory_gib"] = torch.cuda.max_memory_allocated(variant.device) / 2**30
    return results


def plan(quick: bool) -> list[dict]:
    """The variants to run: ``--quick`` keeps the ones the targets are about."""
    if quick:
        return [dict(attention=a, compiled=c, precision="bf16") for a in ("scratch", "sdpa") for c in (False, True)]
    return [dict(attention=a, compiled=c, precision=p) for p in ("bf16", "fp32") for a in ("scratch", "sdpa")
            for c in (False, True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="bf16 only, fewer rounds: under 5 minutes on an H100")
    parser.add_argument("--batch-size", type=int, default=None, help="sequences per step (default 128; 4 on CPU)")
    parser.add_argument("--rounds", type=int, default=None, help="alternating timing rounds (default 3, quick 2)")
    parser.add_argument("--steps", type=int, default=20, help="steps per round")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation happens here)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    gpu = torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    configure_backend(device)  # TF32 for the fp32 variants, as training does
    shape = BASE if gpu else TINY
    batch_size = args.batch_size or (128 if gpu else 4)
    rounds = args.rounds or (2 if args.quick else 3)
    if not gpu:
        print("No CUDA device: running a tiny shape on the CPU to check the script. GPU figures need a GPU.")
    print(f"{torch.cuda.get_device_name(device) if gpu else 'CPU'}, torch {torch.__version__}, shape {shape}, "
          f"batch {batch_size}")
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, shape["vocab_size"], (batch_size, shape["context_length"] + 1), generator=generator)
    batch = (tokens[:, :-1].to(device), tokens[:, 1:].to(device))
    variants = [Variant(shape, device=device, **options) for options in plan(args.quick or not gpu)]
    results = measure(variants, batch, rounds=rounds, steps=args.steps if gpu else 2, warmup=args.warmup)
    flops_per_token = training_flops_per_token(ModelConfig(**shape))
    for variant in variants:
        entry = results[variant.name]
        peak = peak_flops(device, variant.precision)
        entry["mfu"] = entry["tokens_per_s"] * flops_per_token / peak if peak else None
        mfu = f"MFU {entry['mfu']:.1%}" if entry["mfu"] is not None else "MFU n/a"
        memory = f", {entry['peak_memory_gib']:.1f} GiB" if "peak_memory_gib" in entry else ""
        print(f"{variant.name}: {entry['tokens_per_s']:>12,.0f} tokens/s  {mfu}  (warm-up {entry['warmup_s']:.0f} s"
              f"{memory}, loss {entry['loss']:.3f})")
    for precision in ("bf16", "fp32"):
        for compiled in ("eager", "compiled"):
            pair = [results.get(f"{a:7s} {compiled:8s} {precision}") for a in ("scratch", "sdpa")]
            if all(pair):
                print(f"scratch / sdpa attention, {compiled} {precision}: "
                      f"{pair[1]['tokens_per_s'] / pair[0]['tokens_per_s']:.2f}x the time")
    if args.json:
        with atomic_open(args.json, "w") as handle:
            json.dump({"device": torch.cuda.get_device_name(device) if gpu else "cpu", "shape": shape,
                       "batch_size": batch_size, "flops_per_token": flops_per_token, "results": results},
                      handle, indent=2)


if __name__ == "__main__":
    main()
