"""Byte-level BPE encoder/decoder, id-for-id compatible with GPT-2 / tiktoken given the same vocab.

Encoding is: split off special tokens (longest first), cut the rest into GPT-2 pre-tokens, and
turn each pre-token into ids by applying the merges in creation order. Text repeats its
pre-tokens (Zipf), so pre-token -> ids is cached and a cache hit costs one dict lookup, done
in C by ``map``; the Python BPE loop only runs on new pre-tokens.
"""

from __future__ import annotations

import os
import re
from itertools import chain, repeat
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import regex

from scratchlm.tokenizer.pretokenize import GPT2_REGEX, special_tokens_regex
from scratchlm.tokenizer.serialization import Merges, Vocab, load_gpt2_format, load_pickle

# GPT2_PATTERN specialised to ASCII text for the stdlib `re` engine, about twice as fast as
# `regex` on it. Whitespace is spelled out because `re`'s \s also matches \x1c-\x1f, which are
# not Unicode White_Space (and so are not \s for `regex` and tiktoken).
_ASCII_WS = r"\t\n\x0b\x0c\r "
ASCII_PRETOKEN_RE = re.compile(
    rf"'(?:[sdmt]|ll|ve|re)| ?[A-Za-z]+| ?[0-9]+| ?[^{_ASCII_WS}A-Za-z0-9]+|[{_ASCII_WS}]+(?![^{_ASCII_WS}])|[{_ASCII_WS}]+"
)
# Unicode White_Space, i.e. what \s means to `regex` (and so to GPT2_PATTERN).
WHITESPACE = _ASCII_WS + "\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# No GPT-2 pre-token contains a non-space followed by a space, so text cut at every such step
# pre-tokenizes exactly as the whole does. The pieces between the cuts ("segments": a run of
# spaces then a run of non-spaces, like " world." or "\n\nThe") are the cache keys of `encode`:
# about half as many as pre-tokens, and this `re` pattern finds them 2-3x faster than GPT-2's.
SEGMENT_RE = re.compile(f"[{WHITESPACE}]*[^{WHITESPACE}]+|[{WHITESPACE}]+")
_LAST_CUT = regex.compile(r"\S\s", flags=regex.REVERSE)

_NO_MERGE = 1 << 62  # rank of a pair that has no merge
_MAX_CACHED_CHARS = 64  # longer segments (base64, long runs of symbols) are rare: not worth memory


def pretokenize(text: str) -> list[str]:
    """GPT-2 pre-tokens of ``text`` (which holds no special tokens).

    >>> pretokenize("Hello, wörld!  ok")
    ['Hello', ',', ' wörld', '!', ' ', ' ok']
    """
    return ASCII_PRETOKEN_RE.findall(text) if text.isascii() else GPT2_REGEX.findall(text)


class _Cache(dict):
    """text -> tuple of ids; a missing key is computed, and kept unless it is long."""

    def __init__(self, compute: Callable[[str], tuple[int, ...]]) -> None:
        super().__init__()
        self._compute = compute

    def __missing__(self, key: str) -> tuple[int, ...]:
        ids = self._compute(key)
        if len(key) <= _MAX_CACHED_CHARS:
            self[key] = ids
        return ids


class Tokenizer:
    """Byte-level BPE tokenizer over a ``vocab`` (id -> bytes) and ordered ``merges``.

    >>> tok = Tokenizer({i: bytes([i]) for i in range(256)} | {256: b"ab"}, [(b"a", b"b")], ["<|eot|>"])
    >>> tok.encode("abc<|eot|>")
    [256, 99, 257]
    >>> tok.decode([256, 99, 257])
    'abc<|eot|>'
    """

    def __init__(self, vocab: Vocab, merges: Merges, special_tokens: Sequence[str] | None = None,
                 *, cache_entries: int = 1 << 19) -> None:
        self.vocab: Vocab = dict(vocab)
        self.merges: Merges = list(merges)
        self.special_tokens: list[str] = list(dict.fromkeys(special_tokens or ()))
        self._ids: dict[bytes, int] = {}
        for token_id, token in sorted(self.vocab.items()):
            self._ids.setdefault(token, token_id)  # a duplicated token encodes as its lowest id
        for special in self.special_tokens:  # specials missing from the vocab are appended
            if special.encode("utf-8") not in self._ids:
                new_id = max(self.vocab, default=-1) + 1
                self.vocab[new_id] = special.encode("utf-8")
                self._ids[special.encode("utf-8")] = new_id
        self._special_ids = {special: self._ids[special.encode("utf-8")] for special in self.special_tokens}
        pattern = special_tokens_regex(self.special_tokens)
        # A capturing group makes split() return [text, special, text, special, ..., text].
        self._special_split = regex.compile(f"({pattern.pattern})") if pattern else None
        self._byte_ids, self._ranks, self._merged = self._merge_tables()
        self.cache_entries = cache_entries
        self._pretokens = _Cache(self._encode_pretoken)
        self._segments = _Cache(self._encode_segment)

    def __reduce__(self):
        # Sent to worker processes as its definition; each rebuilds its tables and caches.
        return type(self), (self.vocab, self.merges, self.special_tokens), {"cache_entries": self.cache_entries}

    def _merge_tables(self) -> tuple[list[int], dict[tuple[int, int], int], list[int]]:
        """Ids of the 256 bytes, (left id, right id) -> merge rank, and rank -> merged id."""
        missing = [byte for byte in range(256) if bytes([byte]) not in self._ids]
        if missing:
            raise ValueError(f"vocab lacks {len(missing)} single-byte tokens (e.g. byte {missing[0]})")
        byte_ids = [self._ids[bytes([byte])] for byte in range(256)]
        ranks: dict[tuple[int, int], int] = {}
        merged: list[int] = []
        for rank, (left, right) in enumerate(self.merges):
            try:
                pair = (self._ids[left], self._ids[right])
                merged.append(self._ids[left + right])
            except KeyError as error:
                raise ValueError(f"merge {rank} ({left!r}, {right!r}) uses a token missing from the vocab: "
                                 f"{error.args[0]!r}") from None
            ranks.setdefault(pair, rank)
        return byte_ids, ranks, merged

    @classmethod
    def from_files(cls, vocab_path: str | os.PathLike, merges_path: str | os.PathLike,
                   special_tokens: Sequence[str] | None = None, **kwargs) -> "Tokenizer":
        """Load our ``.pkl`` pair (restricted unpickler) or GPT-2 ``vocab.json`` + ``merges.txt``."""
        for path in (vocab_path, merges_path):
            if not Path(path).is_file():
                raise FileNotFoundError(f"tokenizer file not found: {path}")
        if Path(vocab_path).suffix == ".pkl":
            vocab, merges = load_pickle(vocab_path), load_pickle(merges_path)
            _check_pickled(vocab, merges, vocab_path, merges_path)
        else:
            vocab, merges = load_gpt2_format(vocab_path, merges_path, special_tokens=special_tokens or ())
        return cls(vocab, merges, special_tokens, **kwargs)

    def token_id(self, token: str | bytes) -> int:
        """Id of one token given as text or bytes; ``KeyError`` if it is not in the vocab."""
        key = token.encode("utf-8") if isinstance(token, str) else token
        try:
            return self._ids[key]
        except KeyError:
            raise KeyError(f"token {token!r} is not in the vocabulary") from None

    def _bpe(self, data: bytes) -> tuple[int, ...]:
        """Ids of one pre-token: repeatedly merge the adjacent pair that was merged first in training."""
        ids = list(map(self._byte_ids.__getitem__, data))
        rank_of = self._ranks.get
        # pair_ranks[i] is the rank of (ids[i], ids[i + 1]); a merge only changes its neighbours.
        pair_ranks = list(map(rank_of, zip(ids, ids[1:]), repeat(_NO_MERGE)))
        while pair_ranks:
            best = min(pair_ranks)
            if best == _NO_MERGE:
                break
            at = pair_ranks.index(best)  # leftmost first, as tiktoken does
            new_id = self._merged[best]
            ids[at:at + 2] = (new_id,)
            del pair_ranks[at]
            if at < len(pair_ranks):
                pair_ranks[at] = rank_of((new_id, ids[at + 1]), _NO_MERGE)
            if at:
                pair_ranks[at - 1] = rank_of((ids[at - 1], new_id), _NO_MERGE)
        return tuple(ids)

    def _encode_pretoken(self, pretoken: str) -> tuple[int, ...]:
        return self._bpe(pretoken.encode("utf-8"))

    def _encode_segment(self, segment: str) -> tuple[int, ...]:
        return tuple(chain.from_iterable(map(self._pretokens.__getitem__, pretokenize(segment))))

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; special tokens in it become their single ids."""
        ids: list[int] = []
        lookup = self._segments.__getitem__
        parts = self._special_split.split(text) if self._special_split else [text]
        for index, part in enumerate(parts):
            if index % 2:
                ids.append(self._special_ids[part])
            elif part:
                ids += chain.from_iterable(map(lookup, SEGMENT_RE.findall(part)))
        for cache in (self._segments, self._pretokens):
            if len(cache) > self.cache_entries:
                cache.clear()  # bounded memory; frequent entries come straight back
        return ids

    def encode_iterable(self, iterable: Iterable[str], *, batch_chars: int = 1 << 16) -> Iterator[int]:
        """Lazily encode a stream of text (e.g. an open file): same ids as ``encode("".join(...))``.

        Text is encoded whenever ``batch_chars`` more characters have arrived, up to the last
        point where what follows cannot change the ids; the rest waits for more text.
        """
        pending: list[str] = []  # joined once per batch: `str +=` per line would be quadratic
        size, threshold = 0, batch_chars
        for chunk in iterable:
            pending.append(chunk)
            size += len(chunk)
            if size < threshold:
                continue
            buffer = "".join(pending)
            cut = self._safe_cut(buffer)
            yield from self.encode(buffer[:cut])
            pending, size = [buffer[cut:]], len(buffer) - cut
            # Wait for twice the held-back text before retrying, so text without a single
            # safe cut (no spaces at all) is joined O(log n) times, not once per chunk.
            threshold = max(batch_chars, 2 * size)
        yield from self.encode("".join(pending))

    def _safe_cut(self, text: str) -> int:
        """A position where ``text`` can be cut without changing its encoding, whatever follows.

        It is the last non-space -> space step before any tail that may grow into a special
        token, moved back to the start of a special token that would straddle it.
        """
        limit = len(text)
        longest = max(map(len, self.special_tokens), default=0)
        for start in range(max(0, len(text) - longest + 1), len(text)):
            tail = text[start:]
            if any(len(special) > len(tail) and special.startswith(tail) for special in self.special_tokens):
                limit = start
                break
        found = _LAST_CUT.search(text, 0, limit)
        cut = found.start() + 1 if found else 0
        moved = True
        while moved and cut:
            moved = False
            for special in self.special_tokens:
                at = text.find(special, max(0, cut - len(special) + 1), cut + len(special) - 1)
                if 0 <= at < cut:
                    cut, moved = at, True
        return cut

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; byte sequences that are not valid UTF-8 become U+FFFD."""
        try:
            data = b"".join(map(self.vocab.__getitem__, ids))
        except KeyError as error:
            raise ValueError(f"unknown token id {error.args[0]!r} (vocab has {len(self.vocab)} ids)") from None
        return data.decode("utf-8", errors="replace")


def _check_pickled(vocab: object, merges: object, vocab_path: str | os.PathLike,
                   merges_path: str | os.PathLike) -> None:
    """Clear errors for pickles that hold plain data of the wrong shape."""
    if not isinstance(vocab, dict) or not all(
            isinstance(key, int) and isinstance(value, bytes) for key, value in vocab.items()):
        raise ValueError(f"{vocab_path}: expected a dict of int id -> bytes token")
    if not isinstance(merges, list) or not all(
            isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(part, bytes) for part in pair)
            for pair in merges):
        raise ValueError(f"{merges_path}: expected a list of (bytes, bytes) merges")
