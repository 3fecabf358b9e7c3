"""Hugging Face interop: a trained run as a ``transformers`` Llama folder, and back.

Our default architecture (pre-norm RMSNorm, RoPE, SwiGLU, no biases) is the Llama family's, so a
run exports to the files ``LlamaForCausalLM`` and ``AutoTokenizer`` read: ``config.json``,
``generation_config.json``, ``model.safetensors``, ``tokenizer.json`` (+ its two small configs)
and a model card. Nothing here imports ``transformers``: export needs ``safetensors`` only.

Weight names map one to one, except for RoPE's layout. We rotate adjacent pairs of each head,
(x0, x1), (x2, x3), ...; ``transformers`` rotates halves, (x_i, x_{i + d/2}). Both use frequency
i for pair i, so reordering the output rows of q_proj and k_proj within each head, even rows
first and odd rows after (``_HALVES``), turns one convention into the other: q·k is a sum over
the same products, in another order. Tests prove it with equal logits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import torch

from pydantic import ValidationError

from scratchlm.fileio import OutputError, apply_umask, disk_full, read_json_object, require_file, write_json
from scratchlm.layout import RunFiles, read_summary
from scratchlm.nn import ModelConfig, TransformerLM
from scratchlm.nn.model import RMS_NORM_EPS
from scratchlm.settings.errors import describe
from scratchlm.tokenizer.serialization import load_hf_tokenizer, save_hf_tokenizer, save_pickle

log = logging.getLogger(__name__)

# What a Llama model must be to be ours: (ModelConfig option, the value Llama has).
LLAMA_OPTIONS = {"norm": "pre", "position": "rope", "ffn": "swiglu", "qk_norm": False, "logit_softcap": None}
# Our state-dict names -> Llama's; {i} is the layer.
LAYER_NAMES = {
    "attn.q_proj.weight": "self_attn.q_proj.weight", "attn.k_proj.weight": "self_attn.k_proj.weight",
    "attn.v_proj.weight": "self_attn.v_proj.weight", "attn.output_proj.weight": "self_attn.o_proj.weight",
    "ffn.w1.weight": "mlp.gate_proj.weight", "ffn.w3.weight": "mlp.up_proj.weight",
    "ffn.w2.weight": "mlp.down_proj.weight",
    "ln1.weight": "input_layernorm.weight", "ln2.weight": "post_attention_layernorm.weight",
}
TOP_NAMES = {"token_embeddings.weight": "model.embed_tokens.weight", "ln_final.weight": "model.norm.weight",
             "lm_head.weight": "lm_head.weight"}
ROPE_ROWS = ("attn.q_proj.weight", "attn.k_proj.weight")


# ------------------------------------------------------------------------------------ config


def check_llama_compatible(config: ModelConfig) -> None:
    """ValueError naming the first option that Llama cannot express."""
    for option, llama_value in LLAMA_OPTIONS.items():
        if getattr(config, option) != llama_value:
            raise ValueError(f"model option {option}={getattr(config, option)!r} has no Llama equivalent "
                             f"(Llama is {option}={llama_value!r}); this run cannot be exported")


def llama_config(config: ModelConfig, *, eos_token_id: int | None) -> dict:
    """``config.json`` of the ``LlamaForCausalLM`` equal to ``config`` (full multi-head attention)."""
    check_llama_compatible(config)
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": config.vocab_size, "hidden_size": config.d_model, "intermediate_size": config.d_ff,
        "num_hidden_layers": config.num_layers, "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_heads, "head_dim": config.d_model // config.num_heads,
        "hidden_act": "silu", "max_position_embeddings": config.context_length, "rms_norm_eps": RMS_NORM_EPS,
        # rope_theta/rope_scaling for transformers 4.x; 5.x reads them and writes rope_parameters.
        "rope_theta": float(config.rope_theta), "rope_scaling": None,
        "attention_bias": False, "attention_dropout": 0.0, "mlp_bias": False, "pretraining_tp": 1,
        "tie_word_embeddings": config.tie_embeddings, "bos_token_id": eos_token_id, "eos_token_id": eos_token_id,
        "initializer_range": 0.02, "use_cache": True, "torch_dtype": "float32",
    }


LLAMA_REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                  "max_position_embeddings")


def model_config_from_llama(hf: dict, source: str | os.PathLike) -> ModelConfig:
    """Our ModelConfig of a Llama ``config.json``; ValueError naming what we cannot load."""
    missing = [key for key in LLAMA_REQUIRED
               if not isinstance(hf.get(key), int) or isinstance(hf.get(key), bool) or hf[key] < 1]
    if missing:
        raise ValueError(f"{source}: {missing[0]!r} is missing or not a positive integer (a Llama config.json "
                         f"has {', '.join(LLAMA_REQUIRED)})")
    heads = hf.get("num_attention_heads")
    refusals = [
        (hf.get("model_type") != "llama", f"model_type {hf.get('model_type')!r} is not 'llama'"),
        (hf.get("num_key_value_heads", heads) != heads,
         f"grouped-query attention ({hf.get('num_key_value_heads')} key/value heads for {heads} heads)"),
        (bool(hf.get("attention_bias")) or bool(hf.get("mlp_bias")), "biases in attention or MLP layers"),
        (bool(hf.get("rope_scaling")) or (hf.get("rope_parameters") or {}).get("rope_type", "default") != "default",
         "RoPE scaling"),
        (hf.get("hidden_act", "silu") != "silu", f"activation {hf.get('hidden_act')!r} (ours is silu)"),
        (hf.get("head_dim", hf["hidden_size"] // heads) * heads != hf["hidden_size"],
         "head_dim * heads != hidden size"),
        (abs(hf.get("rms_norm_eps", RMS_NORM_EPS) - RMS_NORM_EPS) > 1e-12,
         f"rms_norm_eps {hf.get('rms_norm_eps')} (ours is {RMS_NORM_EPS})"),
    ]
    for refused, what in refusals:
        if refused:
            raise ValueError(f"{source}: cannot import a model with {what}")
    theta = hf.get("rope_theta") or (hf.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    try:
        return ModelConfig(vocab_size=hf["vocab_size"], context_length=hf["max_position_embeddings"],
                           d_model=hf["hidden_size"], num_layers=hf["num_hidden_layers"], num_heads=heads,
                           d_ff=hf["intermediate_size"], rope_theta=float(theta),
                           tie_embeddings=bool(hf.get("tie_word_embeddings", False)))
    except ValidationError as error:
        raise ValueError(f"{source}: {describe(error, ModelConfig, lambda path: '.'.join(map(str, path)))}") from None


def check_tensor_shapes(shards: list[Path], config: ModelConfig, source: str | os.PathLike) -> None:
    """The weights' names and shapes, read from the safetensors headers alone, against ``config``:
    a mismatch is named before anything the size of the model is allocated."""
    from safetensors import SafetensorError, safe_open

    shapes = {}
    for shard in shards:
        try:
            with safe_open(str(shard), framework="pt") as handle:
                shapes |= {name: list(handle.get_slice(name).get_shape()) for name in handle.keys()}
        except (SafetensorError, OSError) as error:
            raise ValueError(f"{shard}: not a readable safetensors file ({error})") from None
    meta = TransformerLM.from_config(config, device="meta").state_dict()  # shapes only: no memory
    expected = {llama: list(meta[ours].shape) for llama, ours in llama_names(config).items()}
    if config.tie_embeddings:
        shapes.setdefault("lm_head.weight", shapes.get("model.embed_tokens.weight"))
    for name, shape in expected.items():
        if name in shapes and shapes[name] != shape:
            raise ValueError(f"{source}: weight {name} has shape {shapes[name]}, but config.json implies {shape}")


# ------------------------------------------------------------------------------------ weights


def _halves(num_heads: int, head_dim: int) -> torch.Tensor:
    """Row order that takes adjacent RoPE pairs to halves, per head: 0, 2, 4, ..., 1, 3, 5, ..."""
    within = torch.cat([torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)])
    return (torch.arange(num_heads)[:, None] * head_dim + within).reshape(-1)


def to_llama_state_dict(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """Our state dict under Llama's names, q/k rows in Llama's RoPE order (tied: no lm_head)."""
    order = _halves(config.num_heads, config.d_model // config.num_heads)
    out = {}
    for name, tensor in state.items():
        if name.startswith("layers."):
            _, layer, rest = name.split(".", 2)
            target = f"model.layers.{layer}.{LAYER_NAMES[rest]}"
            tensor = tensor[order] if rest in ROPE_ROWS else tensor
        else:
            target = TOP_NAMES[name]
        out[target] = tensor.detach().to("cpu").contiguous().clone()
    if config.tie_embeddings:
        del out["lm_head.weight"]  # transformers ties it to embed_tokens
    return out


def llama_names(config: ModelConfig) -> dict[str, str]:
    """Llama's weight name -> ours, for every weight of ``config``."""
    names = {f"model.layers.{i}.{hf}": f"layers.{i}.{ours}"
             for i in range(config.num_layers) for ours, hf in LAYER_NAMES.items()}
    return names | {hf: ours for ours, hf in TOP_NAMES.items()}


def from_llama_state_dict(tensors: dict[str, torch.Tensor], config: ModelConfig,
                          source: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Inverse of :func:`to_llama_state_dict`; ValueError naming missing or unexpected weights."""
    inverse = torch.argsort(_halves(config.num_heads, config.d_model // config.num_heads))
    expected = llama_names(config)
    names = dict(tensors)
    if config.tie_embeddings:
        names.setdefault("lm_head.weight", names.get("model.embed_tokens.weight"))
    missing = sorted(set(expected) - set(names))
    unexpected = sorted(set(names) - set(expected) - {"model.rotary_emb.inv_freq"})
    if missing or unexpected:
        raise ValueError(f"{source}: weights do not match config.json (missing: {', '.join(missing[:3]) or 'none'}; "
                         f"unexpected: {', '.join(unexpected[:3]) or 'none'})")
    state = {}
    for hf_name, ours in expected.items():
        tensor = names[hf_name]
        state[ours] = tensor[inverse] if ours.split(".", 2)[-1] in ROPE_ROWS else tensor
    return state


# ------------------------------------------------------------------------------------ export


def export_run(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write a finished run as a Hugging Face Llama folder; returns ``out_dir``.

    The folder appears whole or not at all: it is written beside ``out_dir`` and renamed.
    """
    from safetensors.torch import save_file

    from scratchlm.generation import load_run

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    model, tokenizer, meta = load_run(run_dir, device="cpu")
    eos = tokenizer.eot_token
    config = llama_config(model.config, eos_token_id=eos)  # refuses non-Llama runs first
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        write_json(staging / "config.json", config, sort_keys=True)
        write_json(staging / "generation_config.json", {"bos_token_id": eos, "eos_token_id": eos})
        with _io_errors_as_os_errors(staging / "model.safetensors"):
            save_file(to_llama_state_dict(model.state_dict(), model.config), str(staging / "model.safetensors"),
                      metadata={"format": "pt"})
        _write_tokenizer_files(tokenizer, staging, context_length=model.config.context_length)
        (staging / "README.md").write_text(model_card(run_dir, meta, model), encoding="utf-8")
        apply_umask(staging)  # the user's umask, as for every other output (mkdtemp made it private)
        _replace_folder(staging, out_dir)
    except OSError as error:
        if disk_full(error, staging.parent):
            raise OutputError(f"{out_dir}: disk full while exporting ({error.strerror or error}); "
                              f"the previous export, if any, is unchanged") from None
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("exported %s -> %s", run_dir, out_dir)
    return out_dir


@contextlib.contextmanager
def _io_errors_as_os_errors(path: Path) -> Iterator[None]:
    """safetensors' I/O failures (a full disk) as the OSError they are (its own error type is not one)."""
    from safetensors import SafetensorError

    try:
        yield
    except SafetensorError as error:
        code = re.search(r"os error (\d+)", str(error))
        raise OSError(int(code.group(1)) if code else None, str(error), str(path)) from None


def _write_tokenizer_files(tokenizer, folder: Path, *, context_length: int) -> None:
    save_hf_tokenizer(tokenizer.vocab, tokenizer.merges, folder / "tokenizer.json",
                      special_tokens=tokenizer.special_tokens)
    eos = tokenizer.separator
    special = {"bos_token": eos, "eos_token": eos} if eos else {}
    write_json(folder / "special_tokens_map.json", special)
    write_json(folder / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast", **special, "model_max_length": context_length,
        "add_bos_token": False, "add_eos_token": False, "clean_up_tokenization_spaces": False})


def _replace_folder(staging: Path, out_dir: Path) -> None:
    """Rename ``staging`` onto ``out_dir``; an existing ``out_dir`` is removed only after that."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out_dir, old)
    os.replace(staging, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def model_card(run_dir: Path, meta: dict, model: TransformerLM) -> str:
    """A short README.md: what was trained on what, how far, and how to load it."""
    from scratchlm import __version__

    summary = read_summary(run_dir) or {}
    cfg = model.config
    params = sum(p.numel() for p in model.parameters())
    lines = [
        f"# {run_dir.name}", "",
        f"A {params / 1e6:.2f}M-parameter Llama-architecture language model trained from scratch with "
        f"scratchlm {__version__} (a byte-level BPE tokenizer and Transformer LM pipeline; not on PyPI) on the "
        f"`{meta.get('corpus')}` corpus. Loading it needs only `pip install transformers torch`.", "",
        "| | |", "|---|---|",
        f"| tokens seen | {summary['tokens']:,} |" if summary.get("tokens") else "| tokens seen | unknown |",
        f"| steps | {meta.get('step')} |",
        f"| final validation loss | {meta.get('val_loss'):.4f} nats |" if meta.get("val_loss") is not None else
        "| final validation loss | unknown |",
        f"| layers × d_model × heads | {cfg.num_layers} × {cfg.d_model} × {cfg.num_heads} |",
        f"| d_ff / context / vocab | {cfg.d_ff} / {cfg.context_length} / {cfg.vocab_size} |",
        f"| RoPE θ / tied embeddings | {cfg.rope_theta:g} / {str(cfg.tie_embeddings).lower()} |", "",
        "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
        'model, tok = AutoModelForCausalLM.from_pretrained("."), AutoTokenizer.from_pretrained(".")',
        'print(tok.decode(model.generate(**tok("Once upon a time", return_tensors="pt"), max_new_tokens=40)[0]))',
        "```", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ import


def import_hf(hf_dir: str | Path, run_dir: str | Path) -> Path:
    """Load a ``LlamaForCausalLM`` folder into a run folder (model.pt, model.json, tokenizer pickles),
    usable by ``generate``, ``load_run`` and as ``init_from`` of a training run; returns ``run_dir``.
    A run already in the folder is moved to its ``replaced/{UTC time}/`` first, as ``--fresh`` does,
    once the import has been read whole; the folder is locked meanwhile, like a training run's."""
    from safetensors.torch import load_file

    from scratchlm.training.checkpoint import save_checkpoint
    from scratchlm.training.run_folder import move_aside, run_folder_lock

    hf_dir, run_dir = Path(hf_dir), Path(run_dir)
    config_path = hf_dir / "config.json"
    config = model_config_from_llama(read_json_object(config_path, what="Hugging Face config"), config_path)
    shards = _safetensors_files(hf_dir)
    check_tensor_shapes(shards, config, hf_dir)
    tensors = {}
    for shard in shards:
        tensors |= load_file(str(shard))
    model = TransformerLM.from_config(config)
    state = from_llama_state_dict({k: v.float() for k, v in tensors.items()}, config, hf_dir)
    model.load_state_dict(state)
    vocab, merges, specials = load_hf_tokenizer(hf_dir / "tokenizer.json")
    if max(vocab) >= config.vocab_size:
        raise ValueError(f"{hf_dir / 'tokenizer.json'}: token id {max(vocab)} >= the model's vocab_size "
                         f"{config.vocab_size}")
    files = RunFiles(run_dir)
    with run_folder_lock(run_dir):
        move_aside(run_dir)  # nothing of an earlier run is overwritten, or mixed with the import
        save_pickle(vocab, files.vocab)
        save_pickle(merges, files.merges)
        save_checkpoint(model, None, 0, files.model, extra={"imported_from": str(hf_dir)})
        write_json(files.meta, {"model": config.to_dict(), "corpus": None, "step": 0, "val_loss": None,
                                "vocab": files.vocab.name, "merges": files.merges.name, "special_tokens": specials,
                                "imported_from": str(hf_dir)})
    log.info("imported %s -> %s", hf_dir, run_dir)
    return run_dir


def _safetensors_files(hf_dir: Path) -> list[Path]:
    """``model.safetensors``, or the shards its index names."""
    index = hf_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json_object(index, keys=("weight_map",), what="safetensors index")["weight_map"]
        if not isinstance(weight_map, dict) or not all(isinstance(name, str) for name in weight_map.values()):
            raise ValueError(f"{index}: 'weight_map' is not an object of tensor name -> file name")
        return [require_file(hf_dir / name, "safetensors shard") for name in sorted(set(weight_map.values()))]
    return [require_file(hf_dir / "model.safetensors", "safetensors weights file")]
