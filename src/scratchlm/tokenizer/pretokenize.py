"""Pre-tokenization shared by training and encoding: special-token splitting, the GPT-2 regex,
and cutting a file into chunks at special-token boundaries (so no document is split)."""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import AnyStr, Iterator, Sequence

import numpy as np
import regex

from scratchlm.tokenizer.utf8 import decode_utf8, valid_utf8


# GPT-2's pre-tokenizer pattern (as used by CS336 and tiktoken's "gpt2" encoding).
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_REGEX = regex.compile(GPT2_PATTERN)


# GPT2_PATTERN specialised to ASCII text for the stdlib `re` engine, about twice as fast as
# `regex` on it. Whitespace is spelled out because `re`'s \s also matches \x1c-\x1f, which are
# not Unicode White_Space (and so are not \s for `regex` and tiktoken).
ASCII_WHITESPACE = r"\t\n\x0b\x0c\r "
ASCII_PRETOKEN_RE = re.compile(
    rf"'(?:[sdmt]|ll|ve|re)| ?[A-Za-z]+| ?[0-9]+| ?[^{ASCII_WHITESPACE}A-Za-z0-9]+"
    rf"|[{ASCII_WHITESPACE}]+(?![^{ASCII_WHITESPACE}])|[{ASCII_WHITESPACE}]+"
)
# The same on ASCII bytes: counting then makes no str per pre-token and encodes none at the end,
# which doubles the counting rate on text with many rare words.
ASCII_PRETOKEN_BYTES_RE = re.compile(ASCII_PRETOKEN_RE.pattern.encode("ascii"))


def pretokenize(text: str) -> list[str]:
    """GPT-2 pre-tokens of ``text`` (which holds no special tokens).

    >>> pretokenize("Hello, wörld!  ok")
    ['Hello', ',', ' wörld', '!', ' ', ' ok']
    """
    return ASCII_PRETOKEN_RE.findall(text) if text.isascii() else GPT2_REGEX.findall(text)


def special_tokens_regex(special_tokens: Sequence[AnyStr]) -> "regex.Pattern[AnyStr] | None":
    """A regex matching any special token (str or bytes), longest first (so overlapping specials work)."""
    if not special_tokens:
        return None
    ordered = sorted(set(special_tokens), key=len, reverse=True)
    bar = "|" if isinstance(ordered[0], str) else b"|"
    return regex.compile(bar.join(regex.escape(token) for token in ordered))


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


def default_workers() -> int:
    """CPU cores this process may use (its affinity mask, e.g. a SLURM allocation, not the whole node)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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
                # Each probe overlaps the next by len(split_token) - 1 bytes, so a token
                # straddling two probes is still found (whatever the probe size).
                block = handle.read(probe_size + overlap)
                found = block.find(split_token)
                if found >= 0:
                    position += found
                    break
                if len(block) <= overlap:
                    position = size
                    break
                position += len(block) - overlap
                handle.seek(position)
            boundaries.append(position)
    boundaries.append(size)
    return sorted(set(boundaries))


# --- Counting pre-tokens (the "map" half of BPE training) -----------------------------------

PretokenCounts = dict[bytes, int]
# Distinct pre-tokens in Arrow's binary layout: their UTF-8 bytes end to end (uint8), the offsets
# where each starts and ends (one more than there are pre-tokens), and their counts.
PretokenArrays = tuple[np.ndarray, np.ndarray, np.ndarray]


def counts_arrays(counts: PretokenCounts) -> PretokenArrays:
    """``{pre-token bytes: count}`` as :data:`PretokenArrays` (numpy, not a Python loop per pre-token).

    >>> keys, offsets, values = counts_arrays({b"the": 2, b" cat": 1})
    >>> keys.tobytes(), offsets.tolist(), values.tolist()
    (b'the cat', [0, 3, 7], [2, 1])
    """
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, counts), dtype=np.int64, count=len(counts)), out=offsets[1:])
    return (np.frombuffer(b"".join(counts), dtype=np.uint8), offsets,
            np.fromiter(counts.values(), dtype=np.int64, count=len(counts)))


@dataclass
class ChunkCounts:
    """Pre-token counts of one piece of a corpus, with what it cost to get them."""

    counts: PretokenCounts = field(default_factory=dict)
    num_bytes: int = 0
    invalid_utf8: int = 0  # invalid byte sequences replaced by U+FFFD while decoding
    seconds: float = 0.0


def count_pretokens(text: str, special_tokens: Sequence[str]) -> Counter[str]:
    """Count GPT-2 pre-tokens of ``text``; special tokens delimit documents and are not counted.

    >>> dict(count_pretokens("the cat<|endoftext|>the", ["<|endoftext|>"]))
    {'the': 2, ' cat': 1}
    """
    counts: Counter[str] = Counter()
    for piece, is_special in split_on_special_tokens(text, special_tokens):
        if not is_special:
            counts.update(pretokenize(piece))
    return counts


# An ASCII non-space byte followed by an ASCII space byte. No GPT-2 pre-token holds a non-space
# followed by a space, and both bytes are whole characters in UTF-8, so text cut between them
# pre-tokenizes (and encodes) exactly as the whole does (a property test checks it).
_SAFE_CUT = regex.compile(rb"[^\t\n\x0b\x0c\r \x80-\xff][\t\n\x0b\x0c\r ]", flags=regex.REVERSE)


def last_safe_cut(data: bytes | bytearray, special_tokens: Sequence[bytes] = ()) -> int:
    """The last position where ``data`` can be cut without changing its pre-tokens, whatever
    follows it; 0 if none.

    Cuts fall between an ASCII non-space byte and an ASCII space byte, before any tail of
    ``data`` that more bytes could make a special token, and moved back to the start of any
    special token that would straddle them.

    >>> last_safe_cut(b"one two  three"), last_safe_cut(b"nospaces"), last_safe_cut(b"a b <| x", [b"<| x |>"])
    (7, 0, 3)
    """
    found = _SAFE_CUT.search(data, 0, growing_special_start(data, special_tokens))
    return before_straddling_specials(data, found.start() + 1 if found else 0, special_tokens)


def growing_special_start(data: AnyStr, special_tokens: Sequence[AnyStr]) -> int:
    """Where the tail of ``data`` that more text could turn into a special token starts (else its length).

    >>> growing_special_start("ab<|end", ["<|endoftext|>"])
    2
    """
    longest = max(map(len, special_tokens), default=0)
    for start in range(max(0, len(data) - longest + 1), len(data)):
        tail = data[start:]
        if any(len(special) > len(tail) and special.startswith(tail) for special in special_tokens):
            return start
    return len(data)


def before_straddling_specials(data: AnyStr, cut: int, special_tokens: Sequence[AnyStr]) -> int:
    """``cut`` moved back to the start of any special token occurrence that would straddle it."""
    moved = True
    while moved and cut:
        moved = False
        for special in special_tokens:
            at = data.find(special, max(0, cut - len(special) + 1), cut + len(special) - 1)
            if 0 <= at < cut:
                cut, moved = at, True
    return cut


def iter_document_blocks(path: str | os.PathLike, start: int, end: int, split_token: bytes | None,
                         *, block_size: int = 4 << 20, special_tokens: Sequence[bytes] = ()) -> Iterator[bytes]:
    """Stream bytes ``[start, end)`` of ``path`` in blocks of about ``block_size`` that end just
    before a ``split_token`` (so no document is cut). A document longer than ``block_size`` is cut
    where the pre-tokenizer always splits (:func:`last_safe_cut`), so memory stays flat however
    long documents are; ``special_tokens`` (bytes) are never cut through."""
    specials = list(special_tokens) or ([split_token] if split_token else [])
    with open(path, "rb") as handle:
        handle.seek(start)
        remaining, carry = end - start, bytearray()  # bytearray: a huge document grows in O(n)
        while remaining > 0:
            data = handle.read(min(block_size, remaining))
            if not data:
                break
            remaining -= len(data)
            # Search only the new bytes (and a token straddling the old/new border).
            search_from = max(1, len(carry) - len(split_token) + 1) if split_token else 0
            carry += data
            cut = carry.rfind(split_token, search_from) if split_token and remaining > 0 else -1
            if cut <= 0 and remaining > 0 and len(carry) >= block_size:
                cut = last_safe_cut(carry, specials)
            if cut > 0:
                yield bytes(carry[:cut])
                del carry[:cut]
        if carry:
            yield bytes(carry)


PENDING_BYTES = 1 << 20  # text the tally gathers before one call of the compiled counter


class PretokenTally:
    """Pre-token counts of documents (no special tokens in them), by the compiled scanner of
    :mod:`scratchlm.tokenizer.fast_count`; where numba is missing, by the regexes (ASCII documents
    as bytes), several times slower."""

    def __init__(self) -> None:
        try:
            from scratchlm.tokenizer.fast_count import PretokenCounter
        except ImportError:
            self.compiled = None
        else:
            self.compiled = PretokenCounter()
        self.byte_counts: Counter[bytes] = Counter()  # the regex path's ASCII documents
        self.text_counts: Counter[str] = Counter()  # and its others
        self.pending: list[bytes] = []  # valid UTF-8 documents for the compiled counter, counted in batches
        self.pending_bytes = 0
        self.invalid_utf8 = 0

    @classmethod
    def warm_up(cls) -> None:
        """Load the compiled counter now (before forking workers, which then share it)."""
        tally = cls()
        tally.add_document(b"warm up")
        tally.arrays()

    def add_document(self, document: bytes) -> None:
        """Count one document's pre-tokens (invalid UTF-8 becomes U+FFFD, and is counted)."""
        if self.compiled is None:
            if document.isascii():
                self.byte_counts.update(ASCII_PRETOKEN_BYTES_RE.findall(document))
                return
            text, invalid = decode_utf8(document)
            self.invalid_utf8 += invalid
            self.text_counts.update(GPT2_REGEX.findall(text))
            return
        document, invalid = valid_utf8(document)
        self.invalid_utf8 += invalid
        self.pending.append(document)
        self.pending_bytes += len(document)
        if self.pending_bytes >= PENDING_BYTES:
            self._flush()

    def _flush(self) -> None:
        self.compiled.add(self.pending)
        self.pending, self.pending_bytes = [], 0

    def arrays(self) -> PretokenArrays:
        """The distinct pre-tokens counted so far."""
        if self.compiled is not None:
            self._flush()
            return self.compiled.arrays()
        counts = self.byte_counts.copy()
        counts.update({token.encode("utf-8"): count for token, count in self.text_counts.items()})
        return counts_arrays(counts)


def tally_file_range(path: str | os.PathLike, start: int, end: int, special_tokens: Sequence[str],
                     *, block_size: int = 4 << 20) -> tuple[PretokenTally, ChunkCounts]:
    """The pre-tokens of bytes ``[start, end)`` of ``path``, read in blocks cut at documents, and
    the bookkeeping (``counts`` left empty: take them from the tally, e.g. ``shards.arrays_table(tally.arrays())``)."""
    began = time.perf_counter()
    specials = [token.encode("utf-8") for token in special_tokens]
    split_specials = special_tokens_regex(specials)
    tally, result = PretokenTally(), ChunkCounts()
    for block in iter_document_blocks(path, start, end, specials[0] if specials else None, block_size=block_size,
                                      special_tokens=specials):
        result.num_bytes += len(block)
        for document in (split_specials.split(block) if split_specials else [block]):
            tally.add_document(document)
    result.invalid_utf8 = tally.invalid_utf8
    result.seconds = time.perf_counter() - began
    return tally, result
