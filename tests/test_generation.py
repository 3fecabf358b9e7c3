"""Generation: KV-cached decoding against the full forward pass, sampling, stopping, perplexity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scratchlm.generation import (
    END_OF_TEXT,
    check_sampling,
    generate,
    generate_batch,
    generate_ids,
    perplexity,
    top_p_filter,
)
from scratchlm.nn.model import TransformerLM

VOCAB, CONTEXT = 64, 16


def tiny_model(seed: int = 0, vocab_size: int = VOCAB, **options) -> TransformerLM:
    torch.manual_seed(seed)
    return TransformerLM(vocab_size=vocab_size, context_length=CONTEXT, d_model=32, num_layers=2, num_heads=4,
                         **options)


def argmax_reference(model: TransformerLM, prompt: list[int], new_tokens: int) -> list[int]:
    """Greedy decoding the slow, obvious way: a full forward pass over the last context window per token."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(new_tokens):
            logits = model(torch.tensor([ids[-CONTEXT:]]))[0, -1]
            ids.append(int(logits.argmax()))
    return ids[len(prompt):]


@pytest.mark.parametrize("options", [{}, {"attention_backend": "sdpa"}, {"norm": "post", "tie_embeddings": True}])
def test_cached_logits_equal_full_forward(options):
    model = tiny_model(**options)
    tokens = torch.randint(0, VOCAB, (3, CONTEXT), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(tokens)
        cache = model.new_kv_cache()
        # A 5-token prefill, then single tokens, then a 3-token chunk, up to the full context.
        pieces = [model(tokens[:, :5], kv_cache=cache)]
        pieces += [model(tokens[:, i:i + 1], kv_cache=cache) for i in range(5, 13)]
        pieces.append(model(tokens[:, 13:], kv_cache=cache))
    assert cache.length == CONTEXT
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-5, atol=1e-5)


def test_greedy_is_deterministic_and_equals_uncached_argmax():
    model = tiny_model()
    prompt = [5, 17, 3]
    expected = argmax_reference(model, prompt, 10)
    for use_cache in (True, False):
        [(ids, stopped)] = generate_ids(model, [prompt], 10, temperature=0, use_cache=use_cache)
        assert ids == expected and not stopped
    assert generate_ids(model, [prompt], 10, temperature=0) == generate_ids(model, [prompt], 10, temperature=0)


@pytest.mark.parametrize("prompt_len", [3, CONTEXT, CONTEXT + 7])
def test_sliding_window_past_the_context_length(prompt_len):
    # 40 new tokens: the window slides (and the cache is rebuilt) many times; a prompt longer
    # than the context keeps only its last window.
    model = tiny_model(seed=2)
    prompt = [(7 * i + 1) % VOCAB for i in range(prompt_len)]
    [(ids, _)] = generate_ids(model, [prompt], 40, temperature=0)
    assert ids == argmax_reference(model, prompt, 40)


def test_batched_prompts_of_different_lengths_equal_one_by_one():
    model = tiny_model()
    prompts = [[1, 2, 3], [4, 5], [6, 7, 8], [9]]
    for settings in ({"temperature": 0}, {"temperature": 1.0, "top_p": 0.9, "seed": 11}):
        batched = generate_ids(model, prompts, 12, **settings)
        seed = settings.get("seed")
        alone = [generate_ids(model, [p], 12, **{**settings, "seed": seed and seed + i})[0]
                 for i, p in enumerate(prompts)]
        assert batched == alone


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([0.0625, 0.5, 0.25, 0.125, 0.0625])
    assert top_p_filter(probs, 0.5).tolist() == [0, 1, 0, 0, 0]  # the top token alone reaches 0.5
    assert top_p_filter(probs, 0.6).tolist() == pytest.approx([0, 2 / 3, 1 / 3, 0, 0])
    assert top_p_filter(probs, 0.75).tolist() == pytest.approx([0, 2 / 3, 1 / 3, 0, 0])
    assert top_p_filter(probs, 0.8).tolist() == pytest.approx([0, 4 / 7, 2 / 7, 1 / 7, 0])
    assert top_p_filter(probs, 0.01).tolist() == [0, 1, 0, 0, 0]  # never empty
    assert torch.equal(top_p_filter(probs, 1.0), probs)
    # Rows of a batch are filtered independently.
    batch = torch.stack((probs, probs.flip(0)))
    expected = torch.tensor([[0, 2 / 3, 1 / 3, 0, 0], [0, 0, 1 / 3, 2 / 3, 0]])
    torch.testing.assert_close(top_p_filter(batch, 0.6), expected)


def test_top_p_sampling_never_leaves_the_nucleus():
    model = tiny_model()
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor([[3, 4]]))[0, -1], dim=-1)
    nucleus = set(torch.nonzero(top_p_filter(probs, 0.3)).flatten().tolist())
    assert 1 <= len(nucleus) < VOCAB
    samples = {ids[0] for seed in range(30) for ids, _ in generate_ids(model, [[3, 4]], 1, top_p=0.3, seed=seed)}
    assert samples <= nucleus


def test_seeded_sampling_is_reproducible():
    model = tiny_model()
    first = generate_ids(model, [[1, 2]], 20, temperature=1.0, seed=7)
    assert generate_ids(model, [[1, 2]], 20, temperature=1.0, seed=7) == first
    assert generate_ids(model, [[1, 2]], 20, temperature=1.0, seed=8) != first


def test_stops_at_the_stop_token():
    model = tiny_model()
    greedy = argmax_reference(model, [1, 2, 3], 12)
    stop_id = greedy[4]
    cut = greedy.index(stop_id)
    assert generate_ids(model, [[1, 2, 3]], 12, temperature=0, stop_id=stop_id) == [(greedy[:cut], True)]
    # The limit comes first when it is shorter than the way to the stop token.
    assert generate_ids(model, [[1, 2, 3]], cut, temperature=0, stop_id=stop_id) == [(greedy[:cut], False)]
    assert generate_ids(model, [[1, 2, 3]], 0) == [([], False)]


@pytest.mark.parametrize("temperature, top_p, message", [
    (-0.5, 1.0, "temperature"), (float("nan"), 1.0, "temperature"), (float("inf"), 1.0, "temperature"),
    (1.0, 0.0, "top_p"), (1.0, 1.5, "top_p"), (1.0, -0.1, "top_p"),
])
def test_bad_sampling_settings_are_clear_errors(temperature, top_p, message):
    with pytest.raises(ValueError, match=message):
        check_sampling(temperature, top_p)
    with pytest.raises(ValueError, match=message):
        generate_ids(tiny_model(), [[1]], 3, temperature=temperature, top_p=top_p)


@pytest.mark.parametrize("prompts, max_new, message", [
    ([[]], 3, "no tokens"), ([[1, VOCAB]], 3, "outside the model's vocabulary"), ([[1]], -1, "max_new_tokens"),
])
def test_bad_prompts_are_clear_errors(prompts, max_new, message):
    with pytest.raises(ValueError, match=message):
        generate_ids(tiny_model(), prompts, max_new)


def test_perplexity_matches_the_mean_cross_entropy():
    model = tiny_model()
    tokens = np.random.default_rng(0).integers(0, VOCAB, size=3 * CONTEXT + 6).astype(np.uint16)
    # Reference: windows of CONTEXT inputs, the last one shorter, each target predicted once.
    nll = []
    with torch.no_grad():
        for start in range(0, len(tokens) - 1, CONTEXT):
            window = torch.from_numpy(tokens[start: start + CONTEXT + 1].astype(np.int64))
            logits = model(window[None, :-1])[0]
            nll.append(torch.nn.functional.cross_entropy(logits, window[1:], reduction="none"))
    expected = math.exp(torch.cat(nll).mean().item())
    assert torch.cat(nll).numel() == len(tokens) - 1
    for batch_size in (1, 2, 8):
        assert perplexity(model, tokens, batch_size=batch_size) == pytest.approx(expected, rel=1e-5)
    assert perplexity(model, tokens, max_tokens=CONTEXT + 1) == pytest.approx(math.exp(nll[0].mean().item()),
                                                                             rel=1e-5)


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    model = tiny_model()
    with torch.no_grad():
        model.lm_head.weight.zero_()
    assert perplexity(model, np.arange(50) % VOCAB) == pytest.approx(VOCAB, rel=1e-6)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        perplexity(model, np.array([3]))


@pytest.fixture(scope="module")
def gpt2_tokenizer(fixtures_dir):
    from scratchlm.tokenizer.serialization import load_gpt2_format

    tokenizer_module = pytest.importorskip("scratchlm.tokenizer.tokenizer")  # engineer C's module
    vocab, merges = load_gpt2_format(fixtures_dir / "gpt2_vocab.json", fixtures_dir / "gpt2_merges.txt",
                                     special_tokens=[END_OF_TEXT])
    return tokenizer_module.Tokenizer(vocab, merges, special_tokens=[END_OF_TEXT])


@pytest.fixture(scope="module")
def gpt2_model():
    torch.manual_seed(0)
    return TransformerLM(vocab_size=50257, context_length=CONTEXT, d_model=16, num_layers=1, num_heads=2)


def test_empty_prompt_starts_from_end_of_text(gpt2_tokenizer, gpt2_model):
    eot = gpt2_tokenizer.token_id(END_OF_TEXT)
    completion = generate(gpt2_model, gpt2_tokenizer, "", 8, temperature=0, stop_at=None)
    [(ids, _)] = generate_ids(gpt2_model, [[eot]], 8, temperature=0)
    assert completion.token_ids == ids and completion.text == gpt2_tokenizer.decode(ids)


def test_byte_level_prompt_with_unusual_characters(gpt2_tokenizer, gpt2_model):
    prompt = "naïve 🦙\u200b\x00 ☃ 日本語 \U0010ffff<|endoftext|>x"
    prompt_ids = gpt2_tokenizer.encode(prompt)
    assert gpt2_tokenizer.decode(prompt_ids) == prompt
    completions = generate_batch(gpt2_model, gpt2_tokenizer, [prompt, "Hello"], 6, temperature=0.8, top_p=0.9,
                                 seed=3)
    assert [c.prompt for c in completions] == [prompt, "Hello"]
    [(ids, stopped)] = generate_ids(gpt2_model, [prompt_ids], 6, temperature=0.8, top_p=0.9, seed=3,
                                    stop_id=gpt2_tokenizer.token_id(END_OF_TEXT))
    assert (completions[0].token_ids, completions[0].stopped) == (ids, stopped)
    assert completions[0].text == gpt2_tokenizer.decode(ids)


def test_unknown_stop_token_is_a_clear_error(gpt2_tokenizer, gpt2_model):
    with pytest.raises(ValueError, match="no token '<\\|stop\\|>'"):
        generate(gpt2_model, gpt2_tokenizer, "Hi", 3, stop_at="<|stop|>")
