"""Pre-tokenization shared by training and encoding: special-token splitting, the GPT-2 regex,
and cutting a file into chunks at special-token boundaries (so no document is split)."""

from __future__ import annotations

import os
from typing import Iterator, Sequence

import regex

# GPT-2's pre-tokenizer pattern (as used by CS336 and tiktoken's "gpt2" encoding).
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_REGEX = regex.compile(GPT2_PATTERN)


def special_tokens_regex(special_tokens: Sequence[str]) -> "regex.Pattern[str] | None":
    """A regex matching any special token, longest first (so overlapping specials work)."""
    if not special_tokens:
        return None
    ordered = sorted(set(special_tokens), key=len, reverse=True)
    return regex.compile("|".join(regex.escape(token) for token in ordered))


def split_on_special_tokens(text: str, special_tokens: Sequence[str]) -> Iterator[tuple[str, bool]]:
    """Yield ``(piece, is_special)`` in order; special tokens are matched longest first.

    >>> list(split_on_special_tokens("a<|x|>b", ["<|x|>"]))
    [('a', False), ('<|x|>', True), ('b', False)]
    """
    pattern = special_tokens_regex(special_tokens)
    if pattern is None:
        if text:
            yield text, False
        return
    start = 0
    for match in pattern.finditer(text):
        if match.start() > start:
            yield text[start:match.start()], False
        yield match.group(), True
        start = match.end()
    if start < len(text):
        yield text[start:], False


def find_chunk_boundaries(path: str | os.PathLike, num_chunks: int, split_token: bytes,
                          *, probe_size: int = 1 << 16) -> list[int]:
    """Byte offsets cutting ``path`` into about ``num_chunks`` pieces, each cut placed at the
    start of a ``split_token`` occurrence at or after the even split point.

    Returns sorted unique offsets starting at 0 and ending at the file size; fewer chunks
    come back when the file has fewer documents than ``num_chunks``.
    """
    if num_chunks < 1:
        raise ValueError(f"num_chunks must be >= 1, got {num_chunks}")
    if not split_token:
        raise ValueError("split_token must be non-empty")
    size = os.path.getsize(path)
    guesses = [size * i // num_chunks for i in range(num_chunks + 1)]
    boundaries = [0]
    overlap = len(split_token) - 1
    with open(path, "rb") as handle:
        for guess in guesses[1:-1]:
            position = max(guess, boundaries[-1])
            handle.seek(position)
            while True:
                block = handle.read(probe_size)
                if not block:
                    position = size
                    break
                found = block.find(split_token)
                if found >= 0:
                    position += found
                    break
                # Step back so a token straddling two probes is still found.
                position += max(1, len(block) - overlap)
                handle.seek(position)
            boundaries.append(position)
    boundaries.append(size)
    return sorted(set(boundaries))
