"""Generation: KV-cached decoding against the full forward pass, sampling, stopping, perplexity."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from scratchlm.settings import GenerationSettings

from scratchlm.tokenizer import Tokenizer

from scratchlm.generation import (
    END_OF_TEXT,
    check_sampling,
    generate,
    generate_batch,
    generate_ids,
    perplexity,
    top_p_filter,
    write_samples,
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


@pytest.mark.parametrize("options", [{}, {"attention_backend": "sdpa"}, {"norm": "post", "tie_embeddings": True},
                                     {"qk_norm": True, "ffn": "relu2", "logit_softcap": 20.0, "d_ff": None}])
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

    vocab, merges = load_gpt2_format(fixtures_dir / "gpt2_vocab.json", fixtures_dir / "gpt2_merges.txt",
                                     special_tokens=[END_OF_TEXT])
    return Tokenizer(vocab, merges, special_tokens=[END_OF_TEXT])


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


@pytest.fixture
def run_folder(tmp_path, fixtures_dir, gpt2_model):
    """A finished run as the training stage leaves it: model.pt + model.json (GPT-2 fixture tokenizer)."""
    from scratchlm.training import save_checkpoint

    run_dir = tmp_path / "runs" / "tiny"
    run_dir.mkdir(parents=True)
    save_checkpoint(gpt2_model, None, 3, run_dir / "model.pt")
    (run_dir / "model.json").write_text(json.dumps({
        "model": gpt2_model.config.to_dict(), "corpus": "fixture", "step": 3, "val_loss": 10.8,
        "vocab": str(fixtures_dir / "gpt2_vocab.json"), "merges": str(fixtures_dir / "gpt2_merges.txt")}))
    return run_dir


def test_write_samples(run_folder, tmp_path, gpt2_tokenizer, gpt2_model):
    valid = tmp_path / "valid.npy"
    tokens = np.array(gpt2_tokenizer.encode("Once upon a time there was a tiny dog. " * 10), dtype=np.uint16)
    np.save(valid, tokens)
    output = run_folder / "samples.md"
    generation = GenerationSettings(prompts=["Once upon a time", "```code```", ""], max_new_tokens=5, seed=0,
                                    settings=[{"temperature": 0.0, "top_p": 1.0}, {"temperature": 1.0, "top_p": 0.9}],
                                    perplexity_tokens=40)
    write_samples(run_folder, output, generation, valid=valid, device="cpu")
    text = output.read_text()
    expected_ppl = perplexity(gpt2_model, tokens, max_tokens=40)
    assert f"Validation perplexity: **{expected_ppl:.3f}** (first 40 tokens of `{valid}`; " in text
    assert f"final validation loss 10.8000 is perplexity {math.exp(10.8):.3f})" in text
    assert text.count("## temperature") == 2 and text.count("### ") == 6
    greedy = generate(gpt2_model, gpt2_tokenizer, "Once upon a time", 5, temperature=0)
    assert f"text\n{('Once upon a time' + greedy.text).rstrip()}\n```" in text
    assert "````text\n```code```" in text  # the fence is longer than any backtick run in the sample
    assert f"*{len(greedy.token_ids)} new tokens, " in text
    with pytest.raises(ValueError, match="(?s)top_p.*less than or equal to 1"):
        GenerationSettings(prompts=["x"], settings=[{"temperature": 1, "top_p": 2}])


def test_cli_generate(run_folder, gpt2_tokenizer, gpt2_model, capsys):
    from scratchlm.cli import main

    results = str(run_folder.parent.parent)
    args = ["generate", "tiny", "--results", results, "--prompt", "Hello", "",
            "--max-new-tokens", "4", "--temperature", "0", "--device", "cpu"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for prompt in ("Hello", ""):
        completion = generate(gpt2_model, gpt2_tokenizer, prompt, 4, temperature=0)
        assert f"text\n{(prompt + completion.text).rstrip()}\n```" in out
        assert f"*{len(completion.token_ids)} new tokens, " in out
    assert main(["generate", "missing", "--results", results]) == 1
    assert capsys.readouterr().err.strip().endswith(f"no such run: {results}/runs/missing; runs there: tiny")
    # A typo of a run's name was answered "missing model.json; has the run finished?".
    assert main(["generate", "tinny", "--results", results]) == 1
    assert capsys.readouterr().err.strip().endswith("no such run: " + f"{results}/runs/tinny; did you mean tiny?")
    (run_folder.parent / "started").mkdir()
    assert main(["generate", "started", "--results", results]) == 1
    assert "missing model.json; has the run finished?" in capsys.readouterr().err
    assert main(args + ["--temperature", "-1"]) == 1
    assert "error: --temperature: Input should be greater than or equal to 0" in capsys.readouterr().err
    # Once a torch RuntimeError traceback, and a message about lists, respectively.
    assert main(args + ["--device", "tpu"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "scratchlm generate: error: --device: must be auto, cpu, cuda, cuda:N or mps, got 'tpu'"]
    assert main([*args[:5], "caf\udce9", *args[6:]]) == 1  # how Python passes the bytes b"caf\xe9"
    assert capsys.readouterr().err.strip().splitlines() == [
        "scratchlm generate: error: prompt 1 is not valid UTF-8 (byte 0xe9 at character 3)"]


def test_sample_markdown_fences_and_trailing_whitespace():
    from scratchlm.generation import Completion, _sample_lines

    lines = _sample_lines(2, Completion("Say ``x``", " and `y`\n\n\n\n", [5, 6, 7], stopped=True), 10,
                          separator="<|endoftext|>")
    assert lines[:5] == ["### 2. 'Say ``x``'", "", "```text", "Say ``x`` and `y`", "```"]
    assert lines[6] == "*3 new tokens, stopped at <|endoftext|>; trailing whitespace not shown.*"
    lines = _sample_lines(1, Completion("", "```", [9], stopped=False), 1, separator="<|eot|>")
    assert lines[0] == "### 1. (empty prompt: starts from <|eot|>)"
    assert lines[2:5] == ["````text", "```", "````"]
    assert lines[6] == "*1 new token, reached the 1-token limit.*"


def test_a_corpus_with_another_separator_generates(gpt2_model, fixtures_dir):
    """A tokenizer whose document separator is <|eot|> once failed: 'the tokenizer has no token <|endoftext|>'."""
    from scratchlm.tokenizer.serialization import load_gpt2_format

    vocab, merges = load_gpt2_format(fixtures_dir / "gpt2_vocab.json", fixtures_dir / "gpt2_merges.txt")
    del vocab[50256]  # <|endoftext|>: the id goes to <|eot|>, appended as a special token
    tokenizer = Tokenizer(vocab, merges, special_tokens=["<|eot|>"])
    assert tokenizer.eot_token == 50256 and tokenizer.separator == "<|eot|>"
    completion = generate(gpt2_model, tokenizer, "", 4, temperature=0)
    assert len(completion.token_ids) <= 4
    batch = generate_batch(gpt2_model, tokenizer, ["Hi", ""], 3, temperature=0)
    assert [c.prompt for c in batch] == ["Hi", ""]
