"""FLOPs, parameters and memory of a TransformerLM, computed from its ModelConfig alone.

Everything here is arithmetic on the configuration (no model is built), so GPT-2 XL at a
16K context costs nothing to analyse; the accounting report and MFU figures use it. The counts
follow our architecture exactly (RMSNorm gains, no biases, SwiGLU with three matrices or SiLU with
two, optional tied embeddings); the tests check them against ``sum(p.numel())`` of a meta-device
model and against ``torch.utils.flop_counter.FlopCounterMode`` on a real forward pass.

Conventions: a matrix multiply (m×n)@(n×p) costs 2·m·n·p FLOPs; element-wise work
(norms, softmax, RoPE, activations) is left out of the FLOPs, as usual; the backward
pass costs twice the forward; memory is float32 (4 bytes a value).
"""

from __future__ import annotations

from dataclasses import dataclass

from scratchlm.nn.model import ModelConfig

BYTES_PER_FLOAT32 = 4

# The FLOPs of one forward pass, grouped as the report shows them.
COMPONENTS = ("attention projections", "attention scores + weighted sum", "feed-forward", "LM head")

# AdamW's element-wise update per parameter, as scratchlm.optim.AdamW computes it
# (scalars such as α/(1-β1ᵗ) are computed once per tensor and not counted):
#   θ ← θ·(1 - α·λ)                              1 FLOP  (decoupled weight decay)
#   m ← m + (1-β1)·(g - m)                       3 FLOPs
#   v ← β2·v + (1-β2)·g²                         4 FLOPs
#   θ ← θ - α/(1-β1ᵗ) · m / (√v/√(1-β2ᵗ) + ε)    6 FLOPs (sqrt, div, add, div, mul, add)
ADAMW_FLOPS_PER_PARAMETER = 14


@dataclass(frozen=True)
class Matmul:
    """One kind of matrix multiply of a forward pass: (m×n)@(n×p), done ``count`` times."""

    name: str
    component: str
    m: int
    n: int
    p: int
    count: int

    @property
    def flops(self) -> int:
        return 2 * self.m * self.n * self.p * self.count


def parameter_counts(cfg: ModelConfig) -> dict[str, int]:
    """Trainable parameters by group, and ``total`` (a tied embedding is counted once).

    >>> parameter_counts(ModelConfig(vocab_size=10, context_length=4, d_model=8, num_layers=1, num_heads=2, d_ff=16))
    {'token embeddings': 80, 'attention': 256, 'feed-forward': 384, 'RMSNorm gains': 24, 'LM head': 80, 'total': 824}
    """
    d, ffn_matrices = cfg.d_model, 3 if cfg.ffn == "swiglu" else 2
    norms_per_layer = 0 if cfg.norm == "none" else 2
    counts = {
        "token embeddings": 0 if cfg.tie_embeddings else cfg.vocab_size * d,
        "attention": cfg.num_layers * 4 * d * d,
        "feed-forward": cfg.num_layers * ffn_matrices * d * cfg.d_ff,
        "RMSNorm gains": ((cfg.num_layers * norms_per_layer + (norms_per_layer > 0)) * d
                          + cfg.qk_norm * cfg.num_layers * 2 * (d // cfg.num_heads)),
        "LM head": d * cfg.vocab_size,
    }
    counts["total"] = sum(counts.values())
    return counts


def forward_matmuls(cfg: ModelConfig, *, batch_size: int = 1, seq_len: int | None = None) -> list[Matmul]:
    """Every matrix multiply of one forward pass over ``batch_size`` sequences of ``seq_len`` tokens."""
    T = seq_len or cfg.context_length
    BT, d, d_k, F, L = batch_size * T, cfg.d_model, cfg.d_model // cfg.num_heads, cfg.d_ff, cfg.num_layers
    heads = L * batch_size * cfg.num_heads  # attention runs per layer, sequence and head
    projections, scores, ffn, head = COMPONENTS
    matmuls = [Matmul(f"{name} (x·Wᵀ)", projections, BT, d, d, L) for name in ("q_proj", "k_proj", "v_proj")]
    matmuls += [
        Matmul("Q·Kᵀ scores", scores, T, d_k, T, heads),
        Matmul("softmax(scores)·V", scores, T, T, d_k, heads),
        Matmul("output_proj", projections, BT, d, d, L),
        Matmul("ffn.w1", ffn, BT, d, F, L),
    ]
    if cfg.ffn == "swiglu":
        matmuls.append(Matmul("ffn.w3 (gate)", ffn, BT, d, F, L))
    matmuls += [Matmul("ffn.w2", ffn, BT, F, d, L), Matmul("lm_head", head, BT, d, cfg.vocab_size, 1)]
    return matmuls


def forward_flops(cfg: ModelConfig, *, batch_size: int = 1, seq_len: int | None = None) -> int:
    """Matmul FLOPs of one forward pass."""
    return sum(mm.flops for mm in forward_matmuls(cfg, batch_size=batch_size, seq_len=seq_len))


def flops_by_component(matmuls: list[Matmul]) -> dict[str, int]:
    """FLOPs of each of COMPONENTS (in that order)."""
    totals = dict.fromkeys(COMPONENTS, 0)
    for mm in matmuls:
        totals[mm.component] += mm.flops
    return totals


def training_flops_per_token(cfg: ModelConfig, *, seq_len: int | None = None) -> float:
    """Model FLOPs of forward + backward (2x forward) per trained token, as used for MFU."""
    T = seq_len or cfg.context_length
    return 3 * forward_flops(cfg, seq_len=T) / T


def activation_floats(cfg: ModelConfig, *, seq_len: int | None = None) -> dict[str, int]:
    """Floats saved for the backward pass per sequence, by CS336's list of components.

    The per-layer entries are summed over the layers. SwiGLU adds its second matmul (w3)
    and the gate product to CS336's W1 / SiLU / W2 list.
    """
    T, d, F, L = seq_len or cfg.context_length, cfg.d_model, cfg.d_ff, cfg.num_layers
    per_layer = {
        "RMSNorms (2 per block)": (0 if cfg.norm == "none" else 2) * T * d,
        "Q, K, V projections": 3 * T * d,
        "Q·Kᵀ scores": cfg.num_heads * T * T,
        "softmax": cfg.num_heads * T * T,
        "weighted sum of values": T * d,
        "output projection": T * d,
        "W1 matmul": T * F,
        "ReLU²" if cfg.ffn == "relu2" else "SiLU": T * F,
    }
    if cfg.qk_norm:
        per_layer["QK-norm (queries and keys)"] = 2 * T * d
    if cfg.ffn == "swiglu":
        per_layer |= {"W3 matmul (gate)": T * F, "gate product": T * F}
    per_layer["W2 matmul"] = T * d
    floats = {f"{name} ×{L} layers": L * value for name, value in per_layer.items()}
    floats |= {
        "final RMSNorm": 0 if cfg.norm == "none" else T * d,
        "output embedding (logits)": T * cfg.vocab_size,
        "cross-entropy (softmax)": T * cfg.vocab_size,
    }
    if cfg.logit_softcap is not None:
        floats["logit soft-cap (tanh)"] = T * cfg.vocab_size
    return floats


@dataclass(frozen=True)
class AdamWMemory:
    """float32 training memory with AdamW: ``per_sequence_bytes · batch_size + fixed_bytes``."""

    parameters_bytes: int
    gradients_bytes: int
    optimizer_state_bytes: int  # AdamW's two moments, m and v
    activation_bytes_per_sequence: dict[str, int]

    @property
    def per_sequence_bytes(self) -> int:  # a
        return sum(self.activation_bytes_per_sequence.values())

    @property
    def fixed_bytes(self) -> int:  # b
        return self.parameters_bytes + self.gradients_bytes + self.optimizer_state_bytes

    def total_bytes(self, batch_size: int) -> int:
        return self.per_sequence_bytes * batch_size + self.fixed_bytes

    def max_batch_size(self, budget_bytes: int) -> int:
        """Largest batch whose training memory fits in ``budget_bytes`` (0 if not even one)."""
        return max(0, (budget_bytes - self.fixed_bytes) // self.per_sequence_bytes)


def adamw_memory(cfg: ModelConfig, *, seq_len: int | None = None) -> AdamWMemory:
    """Training memory of ``cfg`` with AdamW in float32."""
    params = parameter_counts(cfg)["total"] * BYTES_PER_FLOAT32
    activations = {name: n * BYTES_PER_FLOAT32 for name, n in activation_floats(cfg, seq_len=seq_len).items()}
    return AdamWMemory(parameters_bytes=params, gradients_bytes=params, optimizer_state_bytes=2 * params,
                       activation_bytes_per_sequence=activations)


def adamw_step_flops(cfg: ModelConfig, *, batch_size: int, seq_len: int | None = None) -> dict[str, float]:
    """FLOPs of one training step: forward, backward (2x forward), AdamW update, total."""
    forward = forward_flops(cfg, batch_size=batch_size, seq_len=seq_len)
    update = ADAMW_FLOPS_PER_PARAMETER * parameter_counts(cfg)["total"]
    return {"forward": forward, "backward": 2 * forward, "optimizer update": update,
            "total": 3 * forward + update}


def training_days(cfg: ModelConfig, *, steps: int, batch_size: int, peak_flops: float, mfu: float) -> float:
    """Days to train for ``steps`` AdamW steps at ``mfu`` of a device delivering ``peak_flops`` FLOP/s."""
    step = adamw_step_flops(cfg, batch_size=batch_size)["total"]
    return steps * step / (peak_flops * mfu) / 86_400
