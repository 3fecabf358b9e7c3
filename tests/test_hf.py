"""Hugging Face interop: exported runs load in transformers with equal logits, ids and generations."""

from __future__ import annotations

import json
import re
import time
import os
import stat
from pathlib import Path

import pytest
import torch

from scratchlm.cli import main as cli_main
from scratchlm.generation import generate, load_run
from scratchlm.hf import export_run, import_hf
from scratchlm.nn import ModelConfig, TransformerLM
from scratchlm.training.checkpoint import save_checkpoint

import transformers  # noqa: E402  (a dev dependency: the interop is tested, never skipped)
EOT = "<|endoftext|>"


def make_run(run_dir: Path, fixtures_dir: Path, *, seed: int = 0, **options) -> TransformerLM:
    """A finished run folder with a random small model and the GPT-2 fixture tokenizer."""
    torch.manual_seed(seed)
    config = ModelConfig(**{"vocab_size": 50257, "context_length": 48, "d_model": 32, "num_layers": 2,
                            "num_heads": 4, "rope_theta": 500.0} | options)
    model = TransformerLM.from_config(config).eval()
    run_dir.mkdir(parents=True)
    save_checkpoint(model, None, 7, run_dir / "model.pt")
    (run_dir / "model.json").write_text(json.dumps({
        "model": config.to_dict(), "corpus": "fixture", "step": 7, "val_loss": 3.5, "special_tokens": [EOT],
        "vocab": str(fixtures_dir / "gpt2_vocab.json"), "merges": str(fixtures_dir / "gpt2_merges.txt")}))
    return model


@pytest.fixture(scope="module", params=[False, True], ids=["untied", "tied"])
def exported(request, tmp_path_factory, fixtures_dir):
    """(our model, transformers model, transformers tokenizer, run folder)."""
    run_dir = tmp_path_factory.mktemp("hf") / "run"
    model = make_run(run_dir, fixtures_dir, tie_embeddings=request.param)
    export_run(run_dir, run_dir / "hf")
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(run_dir / "hf", dtype=torch.float32).eval()
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(run_dir / "hf")
    return model, hf_model, hf_tokenizer, run_dir


def test_logits_equal_ours_up_to_the_full_context(exported):
    model, hf_model, _, _ = exported
    generator = torch.Generator().manual_seed(1)
    for length in (1, 7, 48):
        ids = torch.randint(0, 50257, (3, length), generator=generator)
        with torch.no_grad():
            difference = (hf_model(ids).logits - model(ids)).abs().max().item()
        assert difference < 1e-5, (length, difference)


def test_greedy_generation_gives_the_same_ids(exported):
    model, hf_model, hf_tokenizer, run_dir = exported
    _, tokenizer, _ = load_run(run_dir, device="cpu")
    prompt = "Once upon a time"
    ours = generate(model, tokenizer, prompt, 32, temperature=0.0, stop_at=None)
    inputs = hf_tokenizer(prompt, return_tensors="pt")
    theirs = hf_model.generate(**inputs, max_new_tokens=32, do_sample=False, eos_token_id=None,
                               pad_token_id=hf_tokenizer.eos_token_id)
    assert theirs[0, inputs["input_ids"].shape[1]:].tolist() == ours.token_ids


def test_tokenizer_ids_equal_and_round_trip(exported, fixtures_dir):
    _, _, hf_tokenizer, run_dir = exported
    _, tokenizer, _ = load_run(run_dir, device="cpu")
    texts = [(fixtures_dir / name).read_text(encoding="utf-8")
             for name in ("tinystories_sample.txt", "german.txt", "address.txt", "corpus.en",
                          "special_token_double_newlines_non_whitespace.txt")]
    texts += ["héllo wörld 😀 👋🏽 日本語  \n\n\t tabs", f"two{EOT}{EOT}docs", "", "   ", "<|endoftext"]
    for text in texts:
        ids = hf_tokenizer(text)["input_ids"]
        assert ids == tokenizer.encode(text)
        assert hf_tokenizer.decode(ids) == text
    assert hf_tokenizer.eos_token == EOT and hf_tokenizer.eos_token_id == 50256


def test_export_then_import_is_bit_identical(exported, tmp_path):
    model, _, _, run_dir = exported
    import_hf(run_dir / "hf", tmp_path / "back")
    again, tokenizer, meta = load_run(tmp_path / "back", device="cpu")
    assert again.config == model.config
    state, original = again.state_dict(), model.state_dict()
    assert state.keys() == original.keys()
    assert all(torch.equal(state[name], original[name]) for name in state)
    assert tokenizer.encode(f"Hi there{EOT}") == [17250, 612, 50256] and meta["special_tokens"] == [EOT]


def test_model_card_and_configs(exported):
    model, _, _, run_dir = exported
    config = json.loads((run_dir / "hf/config.json").read_text())
    assert config["num_key_value_heads"] == config["num_attention_heads"] == 4
    assert config["rope_theta"] == 500.0 and config["max_position_embeddings"] == 48
    assert config["eos_token_id"] == 50256 and config["tie_word_embeddings"] == model.config.tie_embeddings
    card = (run_dir / "hf/README.md").read_text()
    assert "from_pretrained" in card and "3.5000 nats" in card
    assert "pip install transformers torch" in card and "pypi.org" not in card  # scratchlm is not on PyPI


@pytest.mark.parametrize("option, value", [("norm", "post"), ("position", "none"), ("ffn", "silu"), ("ffn", "relu2"),
                                           ("qk_norm", True), ("logit_softcap", 30.0)])
def test_runs_llama_cannot_express_are_refused(tmp_path, fixtures_dir, option, value):
    make_run(tmp_path / "run", fixtures_dir, **{option: value})
    with pytest.raises(ValueError, match=rf"model option {option}={value!r} has no Llama equivalent"):
        export_run(tmp_path / "run", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_import_refuses_what_we_cannot_load(exported, tmp_path, capsys):
    _, _, _, run_dir = exported
    config = json.loads((run_dir / "hf/config.json").read_text())
    for change, message in [({"num_key_value_heads": 2}, "grouped-query attention"),
                            ({"attention_bias": True}, "biases"),
                            ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "RoPE scaling"),
                            ({"model_type": "gpt2"}, "model_type 'gpt2'")]:
        folder = tmp_path / "bad"
        folder.mkdir(exist_ok=True)
        (folder / "config.json").write_text(json.dumps(config | change))
        assert cli_main(["import-hf", str(folder), "--run-dir", str(tmp_path / "out")]) == 1
        assert capsys.readouterr().err.strip().splitlines() == [
            f"scratchlm import-hf: error: {folder / 'config.json'}: cannot import a model with " + message
            + capsys_tail(message)]
    (folder / "config.json").write_text(json.dumps(config))
    assert cli_main(["import-hf", str(folder), "--run-dir", str(tmp_path / "out")]) == 1
    assert "model.safetensors: no such safetensors weights file" in capsys.readouterr().err
    for weight_map, problem in [([1], "'weight_map' is not an object"),
                                ({"x": "shard-1.safetensors"}, "shard-1.safetensors: no such safetensors shard")]:
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
        assert cli_main(["import-hf", str(folder), "--run-dir", str(tmp_path / "out")]) == 1
        err = capsys.readouterr().err  # once: AttributeError ('list' object has no attribute 'values')
        assert problem in err and "Traceback" not in err


def capsys_tail(message: str) -> str:
    """The rest of each refusal's line after its fixed start."""
    return {"grouped-query attention": " (2 key/value heads for 4 heads)", "biases": " in attention or MLP layers",
            "RoPE scaling": "", "model_type 'gpt2'": " is not 'llama'"}[message]


def test_cli_export_import_generate(tmp_path, fixtures_dir, capsys):
    make_run(tmp_path / "run", fixtures_dir)
    assert cli_main(["export", "--run-dir", str(tmp_path / "run"), "--output", str(tmp_path / "out")]) == 0
    assert cli_main(["import-hf", str(tmp_path / "out"), "--run-dir", str(tmp_path / "back")]) == 0
    args = ["--prompt", "Hi", "--max-new-tokens", "3", "--temperature", "0", "--device", "cpu"]
    capsys.readouterr()
    assert cli_main(["generate", "--run-dir", str(tmp_path / "run"), *args]) == 0
    original = capsys.readouterr().out
    assert cli_main(["generate", "--run-dir", str(tmp_path / "back"), *args]) == 0
    samples = capsys.readouterr().out  # the header names the run folder and its training step; the samples:
    assert samples[samples.index("## "):] == original[original.index("## "):]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "README.md", "config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json",
        "tokenizer.json", "tokenizer_config.json"]


def test_export_folder_follows_the_umask(exported):
    """The export was once 0700/0600 (a private staging folder renamed) under umask 022."""
    _, _, _, run_dir = exported
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((run_dir / "hf").stat().st_mode) == 0o777 & ~mask
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask for path in (run_dir / "hf").iterdir())


def test_import_over_a_run_moves_it_aside(exported, tmp_path):
    """import-hf over a finished run once replaced its model silently, keeping the old metrics."""
    _, _, _, run_dir = exported
    target = tmp_path / "run"
    import_hf(run_dir / "hf", target)
    (target / "metrics.jsonl").write_text('{"step": 1}\n')  # what a trained run has besides the model
    old_model = (target / "model.pt").read_bytes()
    import_hf(run_dir / "hf", target)
    replaced = list((target / "replaced").iterdir())
    assert len(replaced) == 1 and (replaced[0] / "model.pt").read_bytes() == old_model
    assert (replaced[0] / "metrics.jsonl").is_file() and not (target / "metrics.jsonl").exists()


def test_foreign_tokenizer_features_are_supported_or_refused(exported, tmp_path):
    """Added tokens and a BOS post-processor once imported silently, then encoded differently."""
    import tokenizers

    from scratchlm.tokenizer import Tokenizer
    from scratchlm.tokenizer.serialization import load_hf_tokenizer

    _, _, _, run_dir = exported
    document = json.loads((run_dir / "hf/tokenizer.json").read_text())
    path = tmp_path / "tokenizer.json"

    # A special token added outside the BPE vocabulary: supported, the same ids as HF tokenizers.
    extra = {"id": 50257, "content": "<|pad|>", "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
    path.write_text(json.dumps(document | {"added_tokens": [*document["added_tokens"], extra]}))
    vocab, merges, specials = load_hf_tokenizer(path)
    ours = Tokenizer(vocab, merges, specials)
    text = f"Hello<|pad|> world{EOT}again"
    assert ours.encode(text) == tokenizers.Tokenizer.from_file(str(path)).encode(text).ids
    assert 50257 in ours.encode(text)

    for change, message in [
        ({"added_tokens": [*document["added_tokens"], extra | {"special": False, "content": "hello"}]},
         r"added token 'hello' \(id 50257\) is not a special token"),
        ({"post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": EOT, "type_id": 0}},
                                                                      {"Sequence": {"id": "A", "type_id": 0}}],
                             "pair": [], "special_tokens": {}}},
         r"its post-processor \(TemplateProcessing\) adds tokens to every encoding \(e.g. a BOS\)"),
    ]:
        path.write_text(json.dumps(document | change))
        with pytest.raises(ValueError, match=rf"tokenizer.json: {message}"):
            load_hf_tokenizer(path)


def test_malformed_import_folders_are_one_line_errors(exported, tmp_path, capsys):
    """A missing config key, weights of other shapes and a truncated file were tracebacks (one case
    allocated a model of 17 GB before looking at the shapes)."""
    import shutil

    _, _, _, run_dir = exported
    good = run_dir / "hf"
    config = json.loads((good / "config.json").read_text())
    cases = [
        ("missing", {k: v for k, v in config.items() if k != "hidden_size"}, None,
         r"config.json: 'hidden_size' is missing or not a positive integer \(a Llama config.json has vocab_size"),
        ("shape", config | {"hidden_size": 4096, "head_dim": 1024}, None,
         r"shape: weight model.layers.0.self_attn.q_proj.weight has shape \[32, 32\], but config.json implies "
         r"\[4096, 4096\]"),
        ("truncated", config, lambda f: f.write_bytes(f.read_bytes()[:1000]),
         r"model.safetensors: not a readable safetensors file"),
        ("heads", config | {"num_attention_heads": 0, "num_key_value_heads": 0}, None,
         r"config.json: 'num_attention_heads' is missing or not a positive integer"),
        ("odd", config | {"num_attention_heads": 3, "num_key_value_heads": 3, "head_dim": 11, "hidden_size": 33}, None,
         r"config.json: model: RoPE needs an even head size|config.json: .*head size"),
    ]
    for name, document, damage, message in cases:
        folder = tmp_path / name
        shutil.copytree(good, folder)
        (folder / "config.json").write_text(json.dumps(document))
        if damage:
            damage(folder / "model.safetensors")
        started = time.perf_counter()
        assert cli_main(["import-hf", str(folder), "--run-dir", str(tmp_path / f"out-{name}")]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and re.search(message, err[0]), err
        assert time.perf_counter() - started < 10 and not (tmp_path / f"out-{name}" / "model.pt").exists()


def test_export_onto_a_full_file_system_says_disk_full(tmp_path, fixtures_dir, full_disk):
    """Once: safetensors' SafetensorError traceback ("I/O error: No space left on device")."""
    from scratchlm.fileio import OutputError

    make_run(tmp_path / "run", fixtures_dir)
    with pytest.raises(OutputError, match=r"full/hf: disk full while exporting .*No space left on device"):
        export_run(tmp_path / "run", full_disk / "hf")
    assert not list(full_disk.iterdir())
