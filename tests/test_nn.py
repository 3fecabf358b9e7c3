"""The from-scratch model against the CS336 snapshots and an independent torch.nn.functional composition."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from scratchlm.nn import (
    Embedding,
    Linear,
    ModelConfig,
    MultiHeadSelfAttention,
    ReLU2FeedForward,
    RMSNorm,
    RotaryPositionalEmbedding,
    SiLUFeedForward,
    SwiGLU,
    TransformerBlock,
    TransformerLM,
    cross_entropy,
    default_d_ff,
    scaled_dot_product_attention,
    silu,
    softmax,
)

ATOL = 1e-5
SMALL = dict(vocab_size=61, context_length=24, d_model=32, num_layers=2, num_heads=4, d_ff=48)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float = ATOL, rtol: float = 1e-4) -> None:
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)


def snapshot(fixtures_dir, name: str) -> torch.Tensor:
    with np.load(fixtures_dir / "snapshots" / f"{name}.npz") as data:
        return torch.from_numpy(data["array"])


def seeded_randn(seed: int, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(*shape, dtype=dtype)


# --- an independent reference: torch.nn.functional ops on the same state dict ---------------------

def reference_rope(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotate pairs (x[2k], x[2k+1]) as complex numbers times exp(i·pos·theta^(-2k/d))."""
    d = x.shape[-1]
    freqs = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    rotation = torch.polar(torch.ones(len(positions), d // 2, dtype=torch.float64),
                           torch.outer(positions.double(), freqs))
    pairs = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    return torch.view_as_real(pairs * rotation).flatten(-2).to(x.dtype)


def reference_attention(x, sd, prefix, cfg: ModelConfig) -> torch.Tensor:
    q, k, v = (rearrange(F.linear(x, sd[f"{prefix}{name}.weight"]), "b t (h d) -> b h t d", h=cfg.num_heads)
               for name in ("q_proj", "k_proj", "v_proj"))
    if cfg.qk_norm:
        d_k = cfg.d_model // cfg.num_heads
        q = F.rms_norm(q, (d_k,), sd[f"{prefix}q_norm.weight"], eps=1e-5)
        k = F.rms_norm(k, (d_k,), sd[f"{prefix}k_norm.weight"], eps=1e-5)
    if cfg.position == "rope":
        positions = torch.arange(x.shape[-2])
        q, k = reference_rope(q, positions, cfg.rope_theta), reference_rope(k, positions, cfg.rope_theta)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return F.linear(rearrange(out, "b h t d -> b t (h d)"), sd[f"{prefix}output_proj.weight"])


def reference_ffn(x, sd, prefix, cfg: ModelConfig) -> torch.Tensor:
    if cfg.ffn == "relu2":
        return F.linear(F.relu(F.linear(x, sd[f"{prefix}w1.weight"])) ** 2, sd[f"{prefix}w2.weight"])
    hidden = F.silu(F.linear(x, sd[f"{prefix}w1.weight"]))
    if cfg.ffn == "swiglu":
        hidden = hidden * F.linear(x, sd[f"{prefix}w3.weight"])
    return F.linear(hidden, sd[f"{prefix}w2.weight"])


def reference_lm(sd: dict, cfg: ModelConfig, token_ids: torch.Tensor) -> torch.Tensor:
    def norm(h, key):
        return F.rms_norm(h, (cfg.d_model,), sd[key], eps=1e-5)

    x = F.embedding(token_ids, sd["token_embeddings.weight"])
    for i in range(cfg.num_layers):
        p = f"layers.{i}."
        attn = lambda h: reference_attention(h, sd, p + "attn.", cfg)  # noqa: E731
        ffn = lambda h: reference_ffn(h, sd, p + "ffn.", cfg)  # noqa: E731
        if cfg.norm == "pre":
            x = x + attn(norm(x, p + "ln1.weight"))
            x = x + ffn(norm(x, p + "ln2.weight"))
        elif cfg.norm == "post":
            x = norm(x + attn(x), p + "ln1.weight")
            x = norm(x + ffn(x), p + "ln2.weight")
        else:
            x = x + attn(x)
            x = x + ffn(x)
    if cfg.norm != "none":
        x = norm(x, "ln_final.weight")
    logits = F.linear(x, sd["lm_head.weight"])
    return logits if cfg.logit_softcap is None else cfg.logit_softcap * torch.tanh(logits / cfg.logit_softcap)


def small_model(seed: int = 0, **options) -> TransformerLM:
    torch.manual_seed(seed)
    return TransformerLM(**{**SMALL, **options})


def random_tokens(batch: int, seq: int, vocab: int = SMALL["vocab_size"], seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(seed))


# --- functional ------------------------------------------------------------------------------------

def test_softmax_silu_match_torch_and_survive_large_inputs():
    x = seeded_randn(0, 3, 7) * 30
    assert_close(softmax(x, dim=-1), torch.softmax(x, dim=-1), atol=1e-6)
    assert_close(softmax(x, dim=0), torch.softmax(x, dim=0), atol=1e-6)
    assert_close(silu(x), F.silu(x), atol=1e-6)
    assert torch.isfinite(softmax(torch.tensor([1e4, 0.0, -1e4]), dim=0)).all()
    x, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    weights = seeded_randn(1, 3, 7)
    (softmax(x, dim=-1) * weights).sum().backward()
    (torch.softmax(x_ref, dim=-1) * weights).sum().backward()
    assert_close(x.grad, x_ref.grad, atol=1e-6)


def test_cross_entropy_matches_torch_over_batch_dims():
    logits = seeded_randn(0, 2, 5, 11) * 10
    targets = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(0))
    expected = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    assert_close(cross_entropy(logits, targets), expected, atol=1e-6)
    huge = torch.tensor([[1e5, 0.0, -1e5]])
    assert cross_entropy(huge, torch.tensor([0])).item() == pytest.approx(0.0)
    assert cross_entropy(huge, torch.tensor([2])).item() == pytest.approx(2e5)


@pytest.fixture(scope="module")
def attention_inputs():
    q, k, v = seeded_randn(1, 4, 12, 64), seeded_randn(2, 4, 16, 64), seeded_randn(3, 4, 16, 64)
    return q, k, v, seeded_randn(5, 4, 12, 16) > 0.5


def test_scaled_dot_product_attention_snapshot(fixtures_dir, attention_inputs):
    q, k, v, mask = attention_inputs
    expected = snapshot(fixtures_dir, "test_scaled_dot_product_attention")
    assert_close(scaled_dot_product_attention(q, k, v, mask), expected, atol=1e-6)
    assert_close(scaled_dot_product_attention(q, k, v, mask),
                 F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-6)


def test_scaled_dot_product_attention_4d_snapshot(fixtures_dir, attention_inputs):
    q, k, v, mask = (rearrange(t, "(batch head) seq d -> batch head seq d", head=2) for t in attention_inputs)
    expected = snapshot(fixtures_dir, "test_4d_scaled_dot_product_attention")
    assert_close(scaled_dot_product_attention(q, k, v, mask), expected, atol=1e-6)


def test_rope_snapshot_and_complex_reference(fixtures_dir):
    x = seeded_randn(4, 4, 12, 64)
    rope = RotaryPositionalEmbedding(10000.0, 64, 12)
    out = rope(x, torch.arange(12))
    assert_close(out, snapshot(fixtures_dir, "test_rope"), atol=1e-6)
    assert_close(out, reference_rope(x, torch.arange(12), 10000.0), atol=1e-6)
    # Explicit per-batch positions and extra leading dims.
    positions = torch.tensor([[3, 1, 4], [1, 5, 9]])
    y = seeded_randn(6, 2, 3, 8)
    big = RotaryPositionalEmbedding(500.0, 8, 16)
    for b in range(2):
        assert_close(big(y, positions)[b], reference_rope(y[b], positions[b], 500.0), atol=1e-6)
    assert big(y.expand(5, 2, 3, 8), positions).shape == (5, 2, 3, 8)
    assert not dict(big.state_dict())  # cos/sin tables are not persistent


def test_hand_written_backwards_match_autograd_of_torch_ops(attention_inputs):
    q, k, v, mask = (t.clone().requires_grad_(t.is_floating_point()) for t in attention_inputs)
    q_ref, k_ref, v_ref = (t.detach().clone().requires_grad_() for t in (q, k, v))
    grad_out = seeded_randn(7, 4, 12, 64)
    scaled_dot_product_attention(q, k, v, mask).backward(grad_out)
    F.scaled_dot_product_attention(q_ref, k_ref, v_ref, attn_mask=mask).backward(grad_out)
    for ours, ref in ((q, q_ref), (k, k_ref), (v, v_ref)):
        assert_close(ours.grad, ref.grad)

    x = (seeded_randn(8, 3, 50) * 5).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    silu(x).backward(seeded_randn(9, 3, 50))
    F.silu(x_ref).backward(seeded_randn(9, 3, 50))
    assert_close(x.grad, x_ref.grad)

    logits = (seeded_randn(10, 2, 6, 30) * 8).requires_grad_()
    logits_ref = logits.detach().clone().requires_grad_()
    targets = torch.randint(0, 30, (2, 6), generator=torch.Generator().manual_seed(0))
    (3 * cross_entropy(logits, targets)).backward()
    (3 * F.cross_entropy(logits_ref.flatten(0, 1), targets.flatten())).backward()
    assert_close(logits.grad, logits_ref.grad, atol=1e-6)


def test_attention_broadcasts_keys_and_mask_over_batch_dims():
    q = seeded_randn(1, 2, 3, 5, 8).requires_grad_()
    kv = seeded_randn(2, 3, 7, 8).requires_grad_()  # shared by the leading batch dim
    mask = seeded_randn(3, 2, 1, 5, 7) > -0.5
    mask[..., 0] = True  # every query sees at least one key
    out = scaled_dot_product_attention(q, kv, kv, mask)
    expected = F.scaled_dot_product_attention(q, kv.expand(2, 3, 7, 8), kv.expand(2, 3, 7, 8),
                                              attn_mask=mask)
    assert_close(out, expected)
    out.sum().backward()
    assert kv.grad.shape == kv.shape and q.grad.shape == q.shape


@pytest.mark.parametrize("chunk_entries", [1, 100, 1 << 20])
def test_attention_chunking_is_invisible(monkeypatch, chunk_entries):
    from scratchlm.nn import functional

    monkeypatch.setattr(functional, "CPU_CHUNK_ENTRIES", chunk_entries)
    q, k, v = (seeded_randn(seed, 5, 2, 6, 4, dtype=torch.float64).requires_grad_() for seed in (1, 2, 3))
    mask = torch.ones(6, 6, dtype=torch.bool).tril()
    assert torch.autograd.gradcheck(lambda *qkv: scaled_dot_product_attention(*qkv, mask), (q, k, v))
    flat = (seeded_randn(4, 6, 4).requires_grad_(), seeded_randn(5, 9, 4), seeded_randn(6, 9, 4))
    out = scaled_dot_product_attention(*flat)  # no batch dims at all
    assert_close(out, F.scaled_dot_product_attention(*flat))
    out.sum().backward()
    assert flat[0].grad.shape == (6, 4)


def test_attention_chunk_policy_by_device():
    """On a GPU the TinyStories base shape runs as one chunk (it was 128, each a few kernel launches)."""
    from scratchlm.nn.functional import GPU_CHUNK_BYTES, _chunks, attention_chunk_entries

    base = (torch.Size([128, 16]), 256 * 256)
    assert len(_chunks(*base, attention_chunk_entries(torch.device("cpu")))) == 128
    for dtype in (torch.float32, torch.bfloat16):
        assert _chunks(*base, attention_chunk_entries(torch.device("cuda"), dtype)) == [slice(0, 128)]
    # A batch over the budget is split into as few chunks as fit, each within it.
    huge = _chunks(torch.Size([512, 32]), 1024 * 1024, attention_chunk_entries(torch.device("cuda")))
    assert len(huge) == 64 and all((c.stop - c.start) * 32 * 1024 * 1024 * 4 <= GPU_CHUNK_BYTES for c in huge)


def test_cross_entropy_on_low_precision_logits():
    logits = (seeded_randn(0, 4, 9) * 3).bfloat16().requires_grad_()
    targets = torch.tensor([1, 0, 8, 3])
    loss = cross_entropy(logits, targets)
    assert loss.dtype == torch.float32
    assert_close(loss, F.cross_entropy(logits.float(), targets), atol=1e-6)
    loss.backward()
    assert logits.grad.dtype == torch.bfloat16


# --- modules ---------------------------------------------------------------------------------------

def test_linear_and_embedding_match_functional_and_init():
    torch.manual_seed(0)
    linear, embedding = Linear(300, 200), Embedding(1000, 64)
    x = seeded_randn(1, 2, 3, 300)
    assert linear.weight.shape == (200, 300)
    assert_close(linear(x), F.linear(x, linear.weight))
    std = (2 / 500) ** 0.5
    assert linear.weight.abs().max() <= 3 * std + 1e-6
    assert linear.weight.std().item() == pytest.approx(std * 0.9866, rel=0.05)  # truncation shrinks std
    ids = random_tokens(3, 5, vocab=1000)
    assert_close(embedding(ids), F.embedding(ids, embedding.weight))
    assert embedding.weight.abs().max() <= 3.0


def test_rmsnorm_matches_functional_and_keeps_dtype():
    norm = RMSNorm(16)
    with torch.no_grad():
        norm.weight.copy_(seeded_randn(0, 16))
    x = seeded_randn(1, 2, 5, 16) * 4
    assert_close(norm(x), F.rms_norm(x, (16,), norm.weight, eps=1e-5))
    assert norm(x.bfloat16()).dtype == torch.bfloat16


@pytest.mark.parametrize("ffn", ["swiglu", "silu", "relu2"])
def test_feed_forward_matches_functional(ffn):
    torch.manual_seed(0)
    module = {"swiglu": SwiGLU, "silu": SiLUFeedForward, "relu2": ReLU2FeedForward}[ffn](32, 48)
    x = seeded_randn(1, 2, 5, 32)
    cfg = ModelConfig(**SMALL, ffn=ffn)
    assert_close(module(x), reference_ffn(x, module.state_dict(), "", cfg))


def test_default_d_ff():
    assert default_d_ff(512) == 1344 and default_d_ff(768) == 2048 and default_d_ff(512, "silu") == 2048
    assert SwiGLU(512).w1.weight.shape == (1344, 512)
    assert ModelConfig(**{**SMALL, "d_ff": None}, ffn="silu").d_ff == 4 * SMALL["d_model"]


@pytest.mark.parametrize("backend", ["scratch", "sdpa"])
def test_multihead_attention_matches_functional(backend):
    torch.manual_seed(0)
    cfg = ModelConfig(**SMALL)
    rope = RotaryPositionalEmbedding(cfg.rope_theta, cfg.d_model // cfg.num_heads, cfg.context_length)
    attn = MultiHeadSelfAttention(cfg.d_model, cfg.num_heads, rope, backend=backend)
    x = seeded_randn(1, 3, 10, cfg.d_model)
    assert_close(attn(x), reference_attention(x, attn.state_dict(), "", cfg))
    nope = MultiHeadSelfAttention(cfg.d_model, cfg.num_heads, backend=backend)
    nope_cfg = ModelConfig(**SMALL, position="none")
    assert_close(nope(x), reference_attention(x, nope.state_dict(), "", nope_cfg))


def test_attention_is_causal():
    model = small_model()
    ids = random_tokens(1, 12)
    changed = ids.clone()
    changed[0, 8] = (changed[0, 8] + 1) % SMALL["vocab_size"]
    before, after = model(ids), model(changed)
    assert_close(before[:, :8], after[:, :8])
    assert not torch.allclose(before[:, 8:], after[:, 8:])


def test_transformer_block_matches_functional():
    torch.manual_seed(0)
    cfg = ModelConfig(**SMALL)
    rope = RotaryPositionalEmbedding(cfg.rope_theta, cfg.d_model // cfg.num_heads, cfg.context_length)
    block = TransformerBlock(cfg.d_model, cfg.num_heads, cfg.d_ff, rope=rope)
    sd = block.state_dict()
    x = seeded_randn(1, 2, 9, cfg.d_model)
    h = x + reference_attention(F.rms_norm(x, (32,), sd["ln1.weight"], eps=1e-5), sd, "attn.", cfg)
    expected = h + reference_ffn(F.rms_norm(h, (32,), sd["ln2.weight"], eps=1e-5), sd, "ffn.", cfg)
    assert_close(block(x), expected)


# --- the whole LM ----------------------------------------------------------------------------------

def expected_keys(num_layers: int, *, norms: bool = True, gated: bool = True) -> set[str]:
    keys = {"token_embeddings.weight", "lm_head.weight"} | ({"ln_final.weight"} if norms else set())
    for i in range(num_layers):
        keys |= {f"layers.{i}.attn.{name}.weight" for name in ("q_proj", "k_proj", "v_proj", "output_proj")}
        keys |= {f"layers.{i}.ffn.{name}.weight" for name in (("w1", "w2", "w3") if gated else ("w1", "w2"))}
        keys |= {f"layers.{i}.ln1.weight", f"layers.{i}.ln2.weight"} if norms else set()
    return keys


def test_state_dict_keys_and_shapes_follow_the_reference_layout():
    sd = small_model().state_dict()
    assert set(sd) == expected_keys(2)
    assert sd["layers.1.attn.q_proj.weight"].shape == (32, 32)
    assert sd["layers.0.ffn.w1.weight"].shape == (48, 32) and sd["layers.0.ffn.w2.weight"].shape == (32, 48)
    assert sd["lm_head.weight"].shape == (61, 32) and sd["token_embeddings.weight"].shape == (61, 32)
    assert set(small_model(norm="none", ffn="silu").state_dict()) == expected_keys(2, norms=False, gated=False)


ABLATIONS = [
    {},
    {"norm": "post"},
    {"norm": "none"},
    {"position": "none"},
    {"ffn": "silu", "d_ff": None},
    {"attention_backend": "sdpa"},
    {"ffn": "relu2", "d_ff": None},
    {"qk_norm": True},
    {"logit_softcap": 2.0},  # low enough that the cap bends these logits
    {"ffn": "relu2", "qk_norm": True, "logit_softcap": 15.0, "attention_backend": "sdpa"},
]


@pytest.mark.parametrize("options", ABLATIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_lm_logits_and_gradients_match_functional(options):
    model = small_model(**options)
    cfg = model.config
    sd = {name: tensor.detach().clone().requires_grad_() for name, tensor in model.state_dict().items()}
    ids, targets = random_tokens(3, 20, seed=2), random_tokens(3, 20, seed=3)

    logits = model(ids)
    expected = reference_lm(sd, cfg, ids)
    assert_close(logits, expected)

    cross_entropy(logits, targets).backward()
    F.cross_entropy(expected.flatten(0, 1), targets.flatten()).backward()
    for name, param in model.named_parameters():
        assert_close(param.grad, sd[name].grad)


def test_tied_embeddings_share_one_parameter_and_load_the_reference_layout():
    model = small_model(tie_embeddings=True)
    assert model.token_embeddings.weight is model.lm_head.weight
    assert set(model.state_dict()) == expected_keys(2)
    ids = random_tokens(2, 7)
    sd = model.state_dict()
    assert_close(model(ids), reference_lm(sd, model.config, ids))
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in small_model().parameters()) - SMALL["vocab_size"] * SMALL["d_model"]


def test_state_dict_round_trip_between_instances():
    source, target = small_model(seed=0), small_model(seed=1)
    target.load_state_dict(source.state_dict())
    ids = random_tokens(2, 9)
    assert torch.equal(source(ids), target(ids))


@pytest.mark.parametrize("options", [{"attention_backend": "scratch"}, {"attention_backend": "sdpa"},
                                     {"qk_norm": True, "ffn": "relu2", "logit_softcap": 3.0}],
                         ids=["scratch", "sdpa", "qk_norm,relu2,softcap"])
def test_kv_cache_decoding_equals_full_forward(options):
    model = small_model(**options).eval()
    ids = random_tokens(2, SMALL["context_length"], seed=4)
    with torch.no_grad():
        full = model(ids)
        cache = model.new_kv_cache()
        pieces = [model(ids[:, :10], kv_cache=cache)]
        pieces += [model(ids[:, t:t + 1], kv_cache=cache) for t in range(10, ids.shape[1])]
        assert cache.length == SMALL["context_length"]
        with pytest.raises(ValueError, match="context length"):
            model(ids[:, :1], kv_cache=cache)
    assert_close(torch.cat(pieces, dim=1), full)


def test_relu2_by_hand():
    """w2(relu(w1 x)²) on numbers small enough to check by eye."""
    ffn = ReLU2FeedForward(2, 3)
    with torch.no_grad():
        ffn.w1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0], [1.0, 1.0]]))
        ffn.w2.weight.copy_(torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.5, 1.0]]))
    # w1 x = (2, 3, -1) for x = (2, -3); relu² = (4, 9, 0); w2 -> (13, 4.5)
    assert ffn(torch.tensor([2.0, -3.0])).tolist() == [13.0, 4.5]


def test_qk_norm_gives_unit_rms_queries_and_keys_per_head():
    attn = MultiHeadSelfAttention(32, 4, qk_norm=True)
    seen = []
    attn._attend = lambda q, k, v: seen.append((q, k)) or v  # what reaches the scores
    attn(seeded_randn(0, 2, 6, 32) * 7)
    for tensor in seen[0]:
        torch.testing.assert_close(tensor.square().mean(-1), torch.ones(tensor.shape[:-1]), atol=1e-4, rtol=0)
    assert set(attn.state_dict()) >= {"q_norm.weight", "k_norm.weight"} and attn.q_norm.weight.shape == (8,)


def test_logit_softcap_bounds_the_logits_smoothly():
    capped, plain = small_model(seed=3, logit_softcap=0.5), small_model(seed=3)
    ids = random_tokens(2, 6)
    assert capped(ids).abs().max() < 0.5
    assert_close(capped(ids), 0.5 * torch.tanh(plain(ids) / 0.5))


def test_zero_init_out_starts_every_block_as_the_identity():
    model = small_model(zero_init_out=True)
    for weight in model._output_weights():
        assert not weight.any()
    ids = random_tokens(2, 8)
    assert not model(ids).any()  # uniform next-token distribution: loss = ln(vocab)
    cross_entropy(model(ids), ids).backward()
    assert model.lm_head.weight.grad.any()  # and it learns from the first step
    with pytest.raises(ValueError, match="zero_init_out with tie_embeddings"):
        ModelConfig(**SMALL, zero_init_out=True, tie_embeddings=True)


def test_default_layout_is_unchanged_by_the_new_options():
    """Off by default: the CS336 state-dict names, and nothing more."""
    assert set(small_model().state_dict()) == expected_keys(2)


def test_model_config_round_trip_and_validation():
    cfg = ModelConfig(**SMALL, norm="post", tie_embeddings=True)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert TransformerLM.from_config(cfg).config == cfg
    with pytest.raises(ValueError, match="unknown model option"):
        ModelConfig.from_dict({**SMALL, "dropout": 0.1})
    with pytest.raises(ValueError, match="norm"):
        ModelConfig(**SMALL, norm="layer")
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(**{**SMALL, "num_heads": 5})
    with pytest.raises(ValueError, match="(?s)num_layers.*greater than 0"):
        ModelConfig(**{**SMALL, "num_layers": 0})


def test_meta_device_construction_allocates_nothing():
    meta = TransformerLM(**SMALL, device="meta")
    assert all(p.device.type == "meta" for p in meta.parameters())
    assert sum(p.numel() for p in meta.parameters()) == sum(p.numel() for p in small_model().parameters())
    assert meta(random_tokens(1, 5).to("meta")).shape == (1, 5, SMALL["vocab_size"])


def test_small_model_overfits_one_batch():
    from scratchlm.optim import AdamW

    model = small_model(num_layers=1)
    ids = random_tokens(4, 16, seed=5)
    inputs, targets = ids[:, :-1], ids[:, 1:]
    optimizer = AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    initial = cross_entropy(model(inputs), targets).item()
    for _ in range(40):
        optimizer.zero_grad()
        loss = cross_entropy(model(inputs), targets)
        loss.backward()
        optimizer.step()
    assert initial > 3.5 and loss.item() < 0.02


@pytest.mark.slow
def test_torch_compile_matches_eager():
    """`compile: true` must work: RoPE switches to real arithmetic when traced by torch.compile."""
    torch.manual_seed(0)
    model = TransformerLM(vocab_size=64, context_length=16, d_model=32, num_layers=1, num_heads=2)
    token_ids = torch.randint(0, 64, (2, 16))
    compiled = torch.compile(model)
    torch.testing.assert_close(compiled(token_ids), model(token_ids), atol=1e-5, rtol=1e-5)
