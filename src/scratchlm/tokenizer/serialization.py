"""Reading and writing tokenizers: our pickles (loaded safely) and GPT-2 vocab.json / merges.txt.

GPT-2's text form maps every byte to a printable unicode character (``bytes_to_unicode``) so
that a token's bytes can be stored as a JSON key; a space byte becomes ``Ġ``, for example.
"""

from __future__ import annotations

import io
import json
from collections import Counter
import os
import pickle
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from scratchlm.fileio import atomic_open, read_json_object

Vocab = dict[int, bytes]
# Ids are packed as uint32 whose high byte is 0 by the encoder, so they stay below 2**24.
MAX_TOKEN_ID = 1 << 24
Merges = list[tuple[bytes, bytes]]


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table.

    >>> bytes_to_unicode()[ord(" ")], bytes_to_unicode()[ord("a")]
    ('Ġ', 'a')
    """
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    table = {byte: chr(byte) for byte in printable}
    shift = 0
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(256 + shift)
            shift += 1
    return table


@lru_cache(maxsize=1)
def unicode_to_bytes() -> dict[str, int]:
    """Inverse of :func:`bytes_to_unicode`."""
    return {char: byte for byte, char in bytes_to_unicode().items()}


def token_to_text(token: bytes) -> str:
    """Bytes of a token in GPT-2's printable form: ``token_to_text(b' the') == 'Ġthe'``."""
    table = bytes_to_unicode()
    return "".join(table[byte] for byte in token)


def text_to_token(text: str, *, source: str | os.PathLike = "<string>") -> bytes:
    """Inverse of :func:`token_to_text`; a character outside the table is a clear error."""
    table = unicode_to_bytes()
    try:
        return bytes(table[char] for char in text)
    except KeyError as error:
        raise ValueError(f"{source}: {text!r} is not in GPT-2 byte-to-unicode form ({error} unknown)") from None


def save_gpt2_format(vocab: Vocab, merges: Merges, vocab_path: str | os.PathLike, merges_path: str | os.PathLike,
                     *, special_tokens: list[str] | tuple[str, ...] = ()) -> None:
    """Write ``vocab.json`` ({text: id}) and ``merges.txt`` (one ``a b`` pair per line).

    Special tokens are written as their plain text (as GPT-2 does with ``<|endoftext|>``).
    """
    specials = {token.encode("utf-8") for token in special_tokens}
    as_text = {
        (token.decode("utf-8") if token in specials else token_to_text(token)): token_id
        for token_id, token in sorted(vocab.items())
    }
    with atomic_open(vocab_path, "w", encoding="utf-8") as handle:
        json.dump(as_text, handle, ensure_ascii=False, indent=0)
        handle.write("\n")
    with atomic_open(merges_path, "w", encoding="utf-8") as handle:
        handle.write("#version: 0.2\n")
        for left, right in merges:
            handle.write(f"{token_to_text(left)} {token_to_text(right)}\n")


def load_gpt2_format(vocab_path: str | os.PathLike, merges_path: str | os.PathLike,
                     *, special_tokens: list[str] | tuple[str, ...] = ()) -> tuple[Vocab, Merges]:
    """Read a GPT-2 style ``vocab.json`` + ``merges.txt`` into ``(vocab, merges)`` of bytes.

    Keys that are listed in ``special_tokens`` (or are not in byte-to-unicode form, such as
    ``<|endoftext|>``) are taken as their UTF-8 text.
    """
    specials = set(special_tokens)
    pairs = _vocab_pairs(vocab_path)
    texts = [text for text, _ in pairs]
    if len(set(texts)) != len(texts):
        duplicate = next(text for text, count in Counter(texts).items() if count > 1)
        raise ValueError(f"{vocab_path}: token {duplicate!r} appears twice (JSON keys must be unique)")
    table = unicode_to_bytes()
    entries = []
    for text, token_id in pairs:
        if text in specials or any(char not in table for char in text):
            entries.append((token_id, text.encode("utf-8")))
        else:
            entries.append((token_id, text_to_token(text, source=vocab_path)))
    check_vocab(entries, vocab_path)
    vocab: Vocab = dict(entries)
    merges: Merges = []
    for line_no, line in enumerate(_text(merges_path, "merges.txt").splitlines(), start=1):
        if not line.strip() or line.startswith("#version"):
            continue
        parts = line.rstrip("\n").split(" ")
        if len(parts) != 2:
            raise ValueError(f"{merges_path}:{line_no}: expected two tokens separated by one space, got {line!r}")
        merges.append((text_to_token(parts[0], source=merges_path), text_to_token(parts[1], source=merges_path)))
    return vocab, merges


def _text(path: str | os.PathLike, form: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a UTF-8 text file, so not a GPT-2 {form} (a .pkl tokenizer file is given "
                         f"as a vocab .pkl and a merges .pkl together)") from None


def _vocab_pairs(vocab_path: str | os.PathLike) -> list[tuple[str, object]]:
    """(token text, id) of a GPT-2 vocab.json, in file order, with the file's shape checked."""
    try:  # pairs, not a dict: a token listed twice is then seen
        pairs = json.loads(_text(vocab_path, "vocab.json"), object_pairs_hook=list)
    except json.JSONDecodeError as error:
        raise ValueError(f"{vocab_path}: not valid JSON ({error})") from None
    if not isinstance(pairs, list) or not all(isinstance(pair, tuple) for pair in pairs):
        raise ValueError(f"{vocab_path}: expected a JSON object of token -> id, got a JSON "
                         f"{'array' if isinstance(pairs, list) else type(pairs).__name__}")
    if isinstance(dict(pairs).get("model"), list):  # an object under "model": not a token's id
        raise ValueError(f"{vocab_path}: a Hugging Face tokenizer.json, not a GPT-2 vocab.json; import its model "
                         f"folder with `scratchlm import-hf FOLDER RUN`, or give a vocab.json and merges.txt")
    return pairs


def save_pickle(obj: Vocab | Merges, path: str | os.PathLike) -> None:
    """Pickle a vocab or merge list atomically."""
    with atomic_open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=pickle.HIGHEST_PROTOCOL)


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickler that builds only plain data: it refuses every class and function lookup.

    dict, list, tuple, bytes, int and str are pickled with dedicated opcodes and never
    reach ``find_class``; anything that would import a callable (the way a malicious pickle
    runs code) is rejected.
    """

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only plain data is allowed")


def load_pickle(path: str | os.PathLike, *, expect: type | None = None) -> Vocab | Merges:
    """Load a vocab (dict of id -> bytes) or merges (list of (bytes, bytes)) pickle without ever
    executing code from the file.

    The unpickler builds plain data only, in time linear in the file's size; the shape check
    then looks at each entry once and never descends further, so a small pickle full of shared
    references (a "billion laughs" of nested lists) is refused at its first wrong entry.
    ``expect`` (dict or list) refuses the other kind.
    """
    data = Path(path).read_bytes()
    try:
        obj = _PlainDataUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as error:
        raise ValueError(f"{path}: {_one_line(error)}") from None
    except Exception as error:  # truncated or not a pickle at all
        raise ValueError(f"{path}: not a readable tokenizer pickle "
                         f"({type(error).__name__}: {_one_line(error)})") from None
    if expect is not None and not isinstance(obj, expect):
        raise ValueError(f"{path}: expected {_SHAPES[expect]}, got a {type(obj).__name__}")
    if isinstance(obj, dict):
        check_vocab(obj.items(), path)
    elif isinstance(obj, list):
        _check_merges(obj, path)
    else:
        raise ValueError(f"{path}: unexpected {type(obj).__name__} in tokenizer pickle "
                         f"(expected {_SHAPES[dict]} or {_SHAPES[list]})")
    return obj


def _one_line(error: Exception, limit: int = 120) -> str:
    """An error's message on one line, cut to ``limit`` characters (a garbage file's bytes can be in it)."""
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[:limit] + "..."


_SHAPES = {dict: "a dict of int id -> bytes token", list: "a list of (bytes, bytes) merges"}


def _check_merges(merges: list, path: str | os.PathLike) -> None:
    for rank, pair in enumerate(merges):
        if not (type(pair) is tuple and len(pair) == 2 and type(pair[0]) is bytes and type(pair[1]) is bytes):
            raise ValueError(f"{path}: expected {_SHAPES[list]}; merge {rank} is {pair!r:.60}")


def check_vocab(entries: Iterable[tuple[object, object]], path: str | os.PathLike) -> None:
    """Ids are distinct integers in [0, MAX_TOKEN_ID), tokens are distinct bytes; ValueError naming ``path``."""
    seen: set[int] = set()
    ids_of: dict[bytes, int] = {}
    for token_id, token in entries:
        if type(token_id) is not int or not 0 <= token_id < MAX_TOKEN_ID:
            raise ValueError(f"{path}: token id {token_id!r} is not an integer in [0, {MAX_TOKEN_ID:,})")
        if type(token) is not bytes:
            raise ValueError(f"{path}: token {token_id} is a {type(token).__name__}, not bytes")
        if token_id in seen:
            raise ValueError(f"{path}: token id {token_id} is used twice")
        if token in ids_of:  # encoding would give one of the ids, decoding both: ids that disagree
            raise ValueError(f"{path}: token {token!r:.40} has two ids, {ids_of[token]} and {token_id}")
        seen.add(token_id)
        ids_of[token] = token_id


# --- Hugging Face `tokenizers` form (tokenizer.json) -----------------------------------------

# GPT-2's byte-level setup as the `tokenizers` library writes it: its ByteLevel pre-tokenizer
# applies exactly the GPT-2 regex (our GPT2_PATTERN) and maps bytes to the printable table above.
_HF_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}


def save_hf_tokenizer(vocab: Vocab, merges: Merges, path: str | os.PathLike,
                      *, special_tokens: list[str] | tuple[str, ...] = ()) -> None:
    """Write a ``tokenizers`` ``tokenizer.json``: byte-level BPE with our vocab and merges, the GPT-2
    pre-tokenizer and decoder, and ``special_tokens`` as added special tokens (never split)."""
    specials = {token.encode("utf-8"): token for token in special_tokens}
    ids = {token: token_id for token_id, token in sorted(vocab.items())}
    added = [{"id": ids[token], "content": text, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for token, text in specials.items() if token in ids]
    model_vocab = {(specials[token] if token in specials else token_to_text(token)): token_id
                   for token_id, token in sorted(vocab.items())}
    document = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": _HF_BYTE_LEVEL,
        "post_processor": {**_HF_BYTE_LEVEL, "trim_offsets": False},
        "decoder": _HF_BYTE_LEVEL,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": model_vocab,
                  # "a b" strings: no byte-level token holds a space (it is "Ġ"), and every version reads them
                  "merges": [f"{token_to_text(left)} {token_to_text(right)}" for left, right in merges]},
    }
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, ensure_ascii=False)
        handle.write("\n")


def load_hf_tokenizer(path: str | os.PathLike) -> tuple[Vocab, Merges, list[str]]:
    """``(vocab, merges, special_tokens)`` of a byte-level BPE ``tokenizer.json`` (GPT-2 style);
    ValueError naming the file for any other kind of tokenizer, which ours could not reproduce."""
    document = read_json_object(path, what="tokenizer.json")
    model = document.get("model") or {}
    _check_pipeline(document, path)
    added = document.get("added_tokens", [])
    plain = [token for token in added if not token.get("special")]
    if plain:
        raise ValueError(f"{path}: added token {plain[0].get('content')!r} (id {plain[0].get('id')}) is not a special "
                         f"token; ours has only BPE tokens and special tokens, so it would encode differently")
    specials = [token["content"] for token in added]
    entries = [(token_id, text.encode("utf-8") if text in specials else text_to_token(text, source=path))
               for text, token_id in model.get("vocab", {}).items()]
    entries += [(token["id"], token["content"].encode("utf-8")) for token in added
                if token["content"] not in model.get("vocab", {})]
    check_vocab(entries, path)
    merges = [tuple(text_to_token(part, source=path) for part in (pair.split(" ") if isinstance(pair, str) else pair))
              for pair in model.get("merges", [])]
    return dict(entries), merges, specials


def _check_pipeline(document: dict, path: str | os.PathLike) -> None:
    """Refuse, by name, any part of a tokenizer.json that ours would not reproduce."""
    model = document.get("model") or {}
    if model.get("type") != "BPE" or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise ValueError(f"{path}: not a byte-level BPE tokenizer (model type {model.get('type')!r})")
    pre = document.get("pre_tokenizer") or {}
    if pre.get("type") != "ByteLevel" or not pre.get("use_regex", True) or pre.get("add_prefix_space"):
        raise ValueError(f"{path}: pre-tokenizer {pre.get('type')!r} is not GPT-2's byte-level regex split "
                         f"(ByteLevel with use_regex, no prefix space)")
    if document.get("normalizer"):
        raise ValueError(f"{path}: has a normalizer ({document['normalizer'].get('type')}); ours has none")
    _check_post_processor(document.get("post_processor"), path)


def _check_post_processor(processor: dict | None, path: str | os.PathLike) -> None:
    """Refuse a post-processor that adds tokens to every encoding (a BOS, a template with special
    tokens): ours adds none, so the ids would differ. ByteLevel (offsets only) is fine."""
    if not processor or processor.get("type") == "ByteLevel":
        return
    if processor.get("type") == "Sequence":
        for part in processor.get("processors", []):
            _check_post_processor(part, path)
        return
    template = processor.get("single", []) if processor.get("type") == "TemplateProcessing" else None
    if template is not None and all("Sequence" in piece for piece in template):
        return
    raise ValueError(f"{path}: its post-processor ({processor.get('type')}) adds tokens to every encoding (e.g. a "
                     f"BOS); ours adds none, so the ids would differ: remove it from the file to import the rest")
