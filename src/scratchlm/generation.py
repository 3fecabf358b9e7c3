"""Text generation from a TransformerLM: KV-cached decoding, temperature and nucleus (top-p) sampling.

Also the evaluation that goes with it: ``perplexity`` over an encoded split, the pipeline's
``samples.md`` writer and the ``scratchlm generate`` command.

>>> model = TransformerLM(vocab_size=50, context_length=8, d_model=16, num_layers=1, num_heads=2)
>>> [(ids, stopped)] = generate_ids(model, [[1, 2, 3]], 4, temperature=0)
>>> len(ids), stopped
(4, False)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from scratchlm.fileio import atomic_open
from scratchlm.layout import RunFiles
from scratchlm.nn.functional import cross_entropy, softmax
from scratchlm.nn.model import TransformerLM
from scratchlm.progress import progress_bar
from scratchlm.settings import END_OF_TEXT, GenerationSettings, TrainingSettings, default_of
from scratchlm.tokenizer import Tokenizer
from scratchlm.tokenizer.encode import open_ids



class _Separator:
    """Default of ``stop_at``: the tokenizer's own document separator (its first special token)."""

    def __repr__(self) -> str:
        return "SEPARATOR"


SEPARATOR = _Separator()


@dataclass(frozen=True)
class Completion:
    """One generated continuation: its text, its token ids (without the stop token), and why it ended."""

    prompt: str
    text: str
    token_ids: list[int]
    stopped: bool  # True: the model produced the stop token; False: it reached max_new_tokens


def check_sampling(temperature: float, top_p: float) -> None:
    """Raise ValueError unless temperature >= 0 (0 = greedy) and 0 < top_p <= 1."""
    if not (isinstance(temperature, (int, float)) and temperature >= 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")


def top_p_filter(probs: Tensor, top_p: float) -> Tensor:
    """Keep the smallest set of most likely tokens whose probabilities sum to >= top_p, renormalised.

    >>> top_p_filter(torch.tensor([0.125, 0.5, 0.25, 0.125]), 0.75)
    tensor([0.0000, 0.6667, 0.3333, 0.0000])
    """
    if top_p >= 1.0:
        return probs
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    # A token is needed while the more likely ones before it sum to < top_p. The exclusive
    # cumsum is summed, not computed as cumsum - p, so exact binary fractions compare exactly.
    mass_before = torch.cat((torch.zeros_like(sorted_probs[..., :1]), sorted_probs[..., :-1].cumsum(-1)), dim=-1)
    sorted_probs = sorted_probs.masked_fill(mass_before >= top_p, 0.0)  # the top token always stays
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return kept / kept.sum(dim=-1, keepdim=True)


def sample_next(logits: Tensor, *, temperature: float, top_p: float,
                generators: Sequence[torch.Generator | None]) -> Tensor:
    """Next token ids (batch,) from logits (batch, vocab); one generator per row (None: torch's global RNG)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = top_p_filter(softmax(logits.float() / temperature, dim=-1), top_p)
    # One draw per row with its own generator, so a row's sample does not depend on its batch mates.
    return torch.cat([torch.multinomial(row, 1, generator=gen) for row, gen in zip(probs, generators)])


@torch.inference_mode()
def sample_continuation(model: TransformerLM, prompt: Tensor, max_new_tokens: int, *, temperature: float = 1.0,
           top_p: float = 1.0, stop_id: int | None = None,
           generators: Sequence[torch.Generator | None] | None = None, use_cache: bool = True) -> Tensor:
    """Extend equal-length prompts (batch, n) by up to max_new_tokens tokens -> (batch, n + new).

    Each token is predicted from at most the last ``context_length`` tokens. With ``use_cache`` a
    step feeds only the newest token through the KV cache; once the cache is full the window
    slides, which shifts every position, so the cache is rebuilt from the last window. Decoding
    ends early when every row has produced ``stop_id``; rows keep going after their own stop
    token (cut off by the caller) so the batch stays rectangular.
    """
    context_length = model.config.context_length
    generators = generators if generators is not None else [None] * prompt.shape[0]
    tokens, cache = prompt, None
    finished = torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)
    for _ in range(max_new_tokens):
        if cache is not None and cache.length < context_length:
            logits = model(tokens[:, -1:], kv_cache=cache)[:, -1]  # one new position
        else:  # first step, a full window (rebuild), or no cache at all
            cache = model.new_kv_cache() if use_cache else None
            logits = model(tokens[:, -context_length:], kv_cache=cache)[:, -1]
        next_ids = sample_next(logits, temperature=temperature, top_p=top_p, generators=generators)
        tokens = torch.cat((tokens, next_ids[:, None]), dim=1)
        if stop_id is not None:
            finished |= next_ids == stop_id
            if finished.all():
                break
    return tokens


def generate_ids(model: TransformerLM, prompts: Sequence[Sequence[int]], max_new_tokens: int, *,
                 temperature: float = 1.0, top_p: float = 1.0, stop_id: int | None = None,
                 seed: int | None = None, use_cache: bool = True) -> list[tuple[list[int], bool]]:
    """Continue each token-id prompt; returns (new ids without the stop token, stopped) per prompt.

    Prompts of equal length decode together as one batch (the KV cache holds one position per
    step for the whole batch). With ``seed``, prompt i samples from its own generator seeded
    ``seed + i``, so its output does not depend on the other prompts.
    """
    check_sampling(temperature, top_p)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    vocab_size = model.config.vocab_size
    for i, ids in enumerate(prompts):
        if not ids:
            raise ValueError(f"prompt {i} has no tokens (start an empty prompt from the document separator)")
        if not all(0 <= t < vocab_size for t in ids):
            raise ValueError(f"prompt {i} has token ids outside the model's vocabulary of {vocab_size}")
    device = next(model.parameters()).device
    results: list[tuple[list[int], bool]] = [None] * len(prompts)  # type: ignore[list-item]  # filled per group
    for length in sorted({len(ids) for ids in prompts}):
        rows = [i for i, ids in enumerate(prompts) if len(ids) == length]
        batch = torch.tensor([list(prompts[i]) for i in rows], dtype=torch.long, device=device)
        gens = [None if seed is None else torch.Generator(device=device).manual_seed(seed + i) for i in rows]
        out = sample_continuation(model, batch, max_new_tokens, temperature=temperature, top_p=top_p, stop_id=stop_id,
                     generators=gens, use_cache=use_cache)
        for i, new_ids in zip(rows, out[:, length:].tolist()):
            results[i] = _cut_at_stop(new_ids, stop_id)
    return results


def _cut_at_stop(ids: list[int], stop_id: int | None) -> tuple[list[int], bool]:
    if stop_id is not None and stop_id in ids:
        return ids[: ids.index(stop_id)], True
    return ids, False


def _separator_id(tokenizer: Tokenizer) -> int:
    if tokenizer.eot_token is None:
        raise ValueError("an empty prompt starts from the document separator, but the tokenizer has no special tokens")
    return tokenizer.eot_token


def special_token_id(tokenizer: Tokenizer, token: str) -> int:
    """The id of a special token such as <|endoftext|>, as a ValueError when the tokenizer lacks it."""
    try:
        return tokenizer.token_id(token)
    except KeyError:
        raise ValueError(f"the tokenizer has no token {token!r}") from None


def generate_batch(model: TransformerLM, tokenizer: Tokenizer, prompts: Sequence[str], max_new_tokens: int, *,
                   temperature: float = 1.0, top_p: float = 1.0, stop_at: str | None | _Separator = SEPARATOR,
                   seed: int | None = None) -> list[Completion]:
    """Sample a continuation of each prompt (see ``generate``); prompt i uses seed + i."""
    check_sampling(temperature, top_p)
    if stop_at is SEPARATOR:
        stop_at = tokenizer.separator
    stop_id = special_token_id(tokenizer, stop_at) if stop_at is not None else None
    # An empty prompt starts a new document, the way documents start in training.
    prompt_ids = [tokenizer.encode(prompt) or [_separator_id(tokenizer)] for prompt in prompts]
    outputs = generate_ids(model, prompt_ids, max_new_tokens, temperature=temperature, top_p=top_p,
                           stop_id=stop_id, seed=seed)
    return [Completion(prompt, tokenizer.decode(ids), ids, stopped)
            for prompt, (ids, stopped) in zip(prompts, outputs)]


def generate(model: TransformerLM, tokenizer: Tokenizer, prompt: str, max_new_tokens: int, *,
             temperature: float = 1.0, top_p: float = 1.0, stop_at: str | None | _Separator = SEPARATOR,
             seed: int | None = None) -> Completion:
    """Sample up to max_new_tokens tokens after ``prompt``; temperature 0 is greedy, top_p < 1 is nucleus.

    Stops after the ``stop_at`` token (by default the tokenizer's document separator, such as
    <|endoftext|>; not included in the text) or at the limit; ``seed`` makes sampling
    reproducible. An empty prompt starts from the document separator.
    """
    return generate_batch(model, tokenizer, [prompt], max_new_tokens, temperature=temperature, top_p=top_p,
                          stop_at=stop_at, seed=seed)[0]


@torch.inference_mode()
def perplexity(model: TransformerLM, tokens: np.ndarray | Sequence[int], *, batch_size: int = 8,
               max_tokens: int | None = None) -> float:
    """exp(mean next-token cross-entropy) over consecutive non-overlapping context_length windows.

    ``tokens`` is an encoded split (e.g. a memory-mapped .npy); ``max_tokens`` evaluates only
    its first max_tokens tokens. Every token after the first is predicted exactly once.
    """
    tokens = np.asarray(tokens[:max_tokens])  # a view of a memory-mapped split: windows are read as needed
    if len(tokens) < 2:
        raise ValueError(f"perplexity needs at least 2 tokens, got {len(tokens)}")
    if tokens.min() < 0 or tokens.max() >= model.config.vocab_size:
        raise ValueError(f"token ids outside the model's vocabulary of {model.config.vocab_size}")
    device = next(model.parameters()).device
    total_nll, count = 0.0, 0
    with progress_bar("perplexity", total=len(tokens) - 1, unit="tokens") as progress:
        for inputs, targets in _windows(tokens, model.config.context_length, batch_size):
            inputs, targets = (torch.from_numpy(a.astype(np.int64)).to(device) for a in (inputs, targets))
            total_nll += cross_entropy(model(inputs), targets).item() * targets.numel()
            count += targets.numel()
            progress.update(targets.numel())
    return math.exp(total_nll / count)


def _windows(tokens: np.ndarray, context_length: int, batch_size: int):
    """(inputs, targets) batches (batch, window) covering tokens; the shorter last window comes alone."""
    full = (len(tokens) - 1) // context_length
    inputs = tokens[: full * context_length].reshape(full, context_length)
    targets = tokens[1: full * context_length + 1].reshape(full, context_length)
    for start in range(0, full, batch_size):
        yield inputs[start: start + batch_size], targets[start: start + batch_size]
    if full * context_length < len(tokens) - 1:
        yield tokens[full * context_length: -1][None], tokens[full * context_length + 1:][None]


# ------------------------------------------------------------------------------- run folders


def load_run(run_dir: str | Path, *, device: str = default_of(TrainingSettings, "device"),
             special_tokens: Sequence[str] | None = None) -> tuple[TransformerLM, Tokenizer, dict]:
    """The trained model of a run folder, its tokenizer (paths from model.json) and model.json.

    ``special_tokens`` default to those model.json records (its corpus's), else ``<|endoftext|>``.
    """
    from scratchlm.training.device import select_device
    from scratchlm.training.run_folder import load_trained_model

    model, meta = load_trained_model(run_dir, device=select_device(device))
    if not (meta.get("vocab") and meta.get("merges")):
        raise ValueError(f"{RunFiles(run_dir).meta} names no tokenizer files (keys 'vocab' and 'merges')")
    vocab, merges = (tokenizer_file(run_dir, meta[key]) for key in ("vocab", "merges"))
    if special_tokens is None:
        special_tokens = meta.get("special_tokens") or [END_OF_TEXT]
    return model, Tokenizer.from_files(vocab, merges, special_tokens=list(special_tokens)), meta


def tokenizer_file(run_dir: str | Path, recorded: str) -> Path:
    """A tokenizer path from model.json: relative to the run folder (older runs recorded it
    relative to the project root, which is tried second)."""
    in_run = Path(run_dir) / recorded
    if Path(recorded).is_absolute() or in_run.exists() or not Path(recorded).exists():
        return in_run
    return Path(recorded)


def write_samples(run_dir: str | Path, output: str | Path | None, generation: GenerationSettings, *,
                  valid: str | Path | None, device: str, special_tokens: Sequence[str] | None = None) -> str:
    """samples.md for a run: validation perplexity (if ``valid`` is given), then each prompt at each
    sampling setting; written to ``output`` unless it is None, and returned."""
    check_prompts(generation.prompts)
    model, tokenizer, meta = load_run(run_dir, device=device, special_tokens=special_tokens)
    params = sum(p.numel() for p in model.parameters())
    lines = [f"# Samples: run `{Path(run_dir).name}`", "",
             f"Model: {params / 1e6:.2f}M parameters, step {meta.get('step')}, corpus `{meta.get('corpus')}`, "
             f"context {model.config.context_length} tokens.", ""]
    if valid is not None:
        lines += [_perplexity_line(model, meta, valid, batch_size=generation.batch_size,
                                   max_tokens=generation.perplexity_tokens), ""]
    new_tokens, seed = generation.max_new_tokens, generation.seed
    lines += [f"Up to {new_tokens} new tokens per sample, seed {seed}; a sample ends at {tokenizer.separator}.", ""]
    for setting in generation.settings:
        completions = generate_batch(model, tokenizer, generation.prompts, new_tokens,
                                     temperature=setting.temperature, top_p=setting.top_p, seed=seed)
        lines += [f"## temperature {setting.temperature}, top_p {setting.top_p}", ""]
        for i, completion in enumerate(completions, 1):
            lines += _sample_lines(i, completion, new_tokens, separator=tokenizer.separator)
    text = "\n".join(lines)
    if output is not None:
        with atomic_open(output) as handle:
            handle.write(text)
    return text


def _perplexity_line(model: TransformerLM, meta: dict, valid: str | Path, *, batch_size: int,
                     max_tokens: int | None) -> str:
    tokens = open_ids(valid)
    ppl = perplexity(model, tokens, batch_size=batch_size, max_tokens=max_tokens)
    evaluated = len(tokens) if max_tokens is None else min(len(tokens), max_tokens)
    trained = ("" if meta.get("val_loss") is None else f"; training's final validation loss "
               f"{meta['val_loss']:.4f} is perplexity {math.exp(meta['val_loss']):.3f}")
    return f"Validation perplexity: **{ppl:.3f}** (first {evaluated:,} tokens of `{valid}`{trained})."


def _sample_lines(number: int, completion: Completion, max_new_tokens: int, *, separator: str | None) -> list[str]:
    """One sample in markdown: heading with the prompt, the text in a fence, the token count."""
    title = repr(completion.prompt) if completion.prompt else f"(empty prompt: starts from {separator})"
    full_text = completion.prompt + completion.text
    # Weak models often end in runs of newlines: one blank line per token would bury the samples.
    text = full_text.rstrip()
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall("`+", text)), default=0))  # longer than any in text
    ending = f"stopped at {separator}" if completion.stopped else f"reached the {max_new_tokens}-token limit"
    if text != full_text:
        ending += "; trailing whitespace not shown"
    return [f"### {number}. {title}", "", f"{fence}text", text, fence, "",
            f"*{len(completion.token_ids)} new token{'s' * (len(completion.token_ids) != 1)}, {ending}.*", ""]


def check_prompts(prompts: Sequence[str]) -> None:
    """Refuse prompts that are not valid UTF-8 (bytes the shell passed through as surrogates).

    >>> check_prompts(["ok", "caf" + chr(0xDCE9)])  # how Python passes the argv bytes b"caf\\xe9"
    Traceback (most recent call last):
    ...
    ValueError: prompt 2 is not valid UTF-8 (byte 0xe9 at character 3)
    """
    for number, prompt in enumerate(prompts, 1):
        try:
            prompt.encode("utf-8")
        except UnicodeEncodeError as error:
            byte = ord(prompt[error.start]) & 0xFF
            raise ValueError(f"prompt {number} is not valid UTF-8 "
                             f"(byte {byte:#04x} at character {error.start})") from None
