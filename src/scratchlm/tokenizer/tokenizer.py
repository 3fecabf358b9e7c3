"""Byte-level BPE encoder/decoder, id-for-id compatible with GPT-2 / tiktoken given the same vocab.

Encoding is: split off special tokens (longest first), cut the rest into GPT-2 pre-tokens, and
turn each pre-token into ids by applying the merges in creation order. Text repeats itself
(Zipf), so ids are cached per "segment" (see ``SEGMENT_RE``) and per pre-token, as packed
uint32 bytes: encoding a stretch of text whose segments are all cached is one regex pass and
one ``b"".join`` over cache lookups, all in C. New segments are also encoded in bulk (one
regex pass over all of them), so Python-level work happens only per new pre-token (BPE).
"""

from __future__ import annotations

import heapq
import os
import re
from array import array
from itertools import repeat
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import regex

from scratchlm.fileio import require_file
from scratchlm.tokenizer.pretokenize import (
    ASCII_PRETOKEN_RE,
    ASCII_WHITESPACE,
    GPT2_REGEX,
    before_straddling_specials,
    growing_special_start,
    pretokenize,
    special_tokens_regex,
)
from scratchlm.tokenizer.serialization import Merges, Vocab, check_vocab, load_gpt2_format, load_pickle

# Unicode White_Space, i.e. what \s means to `regex` (and so to GPT2_PATTERN).
WHITESPACE = ASCII_WHITESPACE + "\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# No GPT-2 pre-token contains a non-space followed by a space, so text cut at every such step
# pre-tokenizes exactly as the whole does. The pieces between the cuts ("segments": a run of
# spaces then a run of non-spaces, like " world." or "\n\nThe") are the cache keys of `encode`:
# about half as many as pre-tokens, and this `re` pattern finds them 2-3x faster than GPT-2's.
SEGMENT_RE = re.compile(f"[{WHITESPACE}]*[^{WHITESPACE}]+|[{WHITESPACE}]+")
_LAST_CUT = regex.compile(r"\S\s", flags=regex.REVERSE)

_NO_MERGE = 1 << 62  # rank of a pair that has no merge
_LONG_PRETOKEN = 128  # bytes from which BPE uses the O(n log n) merge loop
_MAX_CACHED_CHARS = 64  # longer segments (base64, long runs of symbols) are rare: not worth memory
_IDS = "I"  # array typecode of packed ids (uint32, native byte order)
_SENTINEL = b"\xff" * 4  # packed value that no id < MAX_TOKEN_ID (2**24) can produce, even straddling two ids
# New segments are encoded together: joined by "\x00", which these patterns always match alone
# (and which is then looked up as _SENTINEL). A segment ends with a non-space, so no pre-token
# of it would run into the separator, and none starts before it: each segment pre-tokenizes as
# it would alone. Segments that contain "\x00" or end with a space are encoded one by one.
_BATCH_ASCII_RE = re.compile("\x00|" + ASCII_PRETOKEN_RE.pattern.replace("A-Za-z0-9]", "A-Za-z0-9\x00]"))
_BATCH_RE = regex.compile("\x00|" + GPT2_REGEX.pattern.replace(r"\p{N}]", r"\p{N}\x00]"))
assert array(_IDS).itemsize == 4


def _pack(ids: Iterable[int]) -> bytes:
    return array(_IDS, ids).tobytes()


class _PretokenCache(dict):
    """pre-token -> packed ids; a missing pre-token is BPE-encoded and kept.

    A pre-token that is itself a token made by a merge comes out as that one token, without
    running the merge loop (tiktoken does the same). For a vocab trained by BPE this is what
    the merges give anyway: the token was built from these bytes by merges inside a pre-token,
    which replay identically on the pre-token alone (a test checks it on every reference vocab).
    """

    def __init__(self, bpe: Callable[[bytes], tuple[int, ...]], merged_ids: dict[bytes, int]) -> None:
        super().__init__()
        self._bpe = bpe
        self._merged_ids = merged_ids
        self.clear()

    def clear(self) -> None:
        super().clear()
        self["\x00"] = _SENTINEL  # the batch separator, see _BATCH_RE

    def __missing__(self, pretoken: str) -> bytes:
        data = pretoken.encode("utf-8")
        whole = self._merged_ids.get(data)
        packed = self[pretoken] = _pack((whole,) if whole is not None else self._bpe(data))
        return packed


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
        check_vocab(vocab.items(), "tokenizer vocab")
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
        self._special_ids = {special: _pack([self._ids[special.encode("utf-8")]]) for special in self.special_tokens}
        pattern = special_tokens_regex(self.special_tokens)
        # A capturing group makes split() return [text, special, text, special, ..., text].
        self._special_split = regex.compile(f"({pattern.pattern})") if pattern else None
        self._byte_ids, self._ranks, self._merged = self._merge_tables()
        self.cache_entries = cache_entries
        merged_ids = {self.vocab[token_id]: token_id for token_id in self._merged}
        self._pretokens = _PretokenCache(self._bpe, merged_ids)
        self._segments: dict[str, bytes] = {}  # segment -> packed ids

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
    def from_files(cls, vocab_filepath: str | os.PathLike, merges_filepath: str | os.PathLike,
                   special_tokens: Sequence[str] | None = None, **kwargs) -> "Tokenizer":
        """Load our ``.pkl`` pair (restricted unpickler) or GPT-2 ``vocab.json`` + ``merges.txt``
        (the CS336 handout's signature; ``kwargs`` go to the constructor)."""
        for path in (vocab_filepath, merges_filepath):
            require_file(path, "tokenizer file")
        if Path(vocab_filepath).suffix == ".pkl":
            vocab, merges = load_pickle(vocab_filepath, expect=dict), load_pickle(merges_filepath, expect=list)
        else:
            vocab, merges = load_gpt2_format(vocab_filepath, merges_filepath, special_tokens=special_tokens or ())
        try:
            return cls(vocab, merges, special_tokens, **kwargs)
        except ValueError as error:  # the files disagree (a merge of tokens the vocab lacks): name them
            raise ValueError(f"{vocab_filepath} and {merges_filepath}: {error}") from None

    @property
    def eot_token(self) -> int | None:
        """Id of the document separator (the first special token, e.g. ``<|endoftext|>``), as tiktoken's.

        >>> Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|eot|>"]).eot_token
        256
        """
        return self.token_id(self.special_tokens[0]) if self.special_tokens else None

    @property
    def separator(self) -> str | None:
        """Text of the document separator (the first special token), or None without special tokens."""
        return self.special_tokens[0] if self.special_tokens else None

    def token_id(self, token: str | bytes) -> int:
        """Id of one token given as text or bytes; ``KeyError`` if it is not in the vocab."""
        key = token.encode("utf-8") if isinstance(token, str) else token
        try:
            return self._ids[key]
        except KeyError:
            raise KeyError(f"token {token!r} is not in the vocabulary") from None

    def _bpe(self, data: bytes) -> tuple[int, ...]:
        """Ids of one pre-token: repeatedly merge the adjacent pair that was merged first in training
        (the leftmost of equals, as tiktoken does)."""
        ids = list(map(self._byte_ids.__getitem__, data))
        return tuple(self._merge_long(ids) if len(ids) > _LONG_PRETOKEN else self._merge_short(ids))

    def _merge_short(self, ids: list[int]) -> list[int]:
        """The merge loop with every step in C: O(n^2), fastest for the usual short pre-token."""
        rank_of = self._ranks.get
        # pair_ranks[i] is the rank of (ids[i], ids[i + 1]); a merge only changes its neighbours.
        pair_ranks = list(map(rank_of, zip(ids, ids[1:]), repeat(_NO_MERGE)))
        while pair_ranks:
            best = min(pair_ranks)
            if best == _NO_MERGE:
                break
            at = pair_ranks.index(best)
            new_id = ids[at] = self._merged[best]
            del ids[at + 1], pair_ranks[at]
            if at < len(pair_ranks):
                pair_ranks[at] = rank_of((new_id, ids[at + 1]), _NO_MERGE)
            if at:
                pair_ranks[at - 1] = rank_of((ids[at - 1], new_id), _NO_MERGE)
        return ids

    def _merge_long(self, ids: list[int]) -> list[int]:
        """The same merges in O(n log n), for long pre-tokens (symbol runs, base64 blobs): a heap of
        (rank, position) over a linked list; entries whose pair has changed since are skipped."""
        rank_of, end = self._ranks.get, len(ids)
        after, before = list(range(1, end + 1)), list(range(-1, end - 1))
        heap = [(rank, at) for at, pair in enumerate(zip(ids, ids[1:])) if (rank := rank_of(pair)) is not None]
        heapq.heapify(heap)
        while heap:
            rank, at = heapq.heappop(heap)
            right = after[at]
            if ids[at] is None or right == end or rank_of((ids[at], ids[right])) != rank:
                continue  # stale: a neighbouring merge came first
            ids[at], ids[right] = self._merged[rank], None
            after[at] = after[right]
            if after[at] != end:
                before[after[at]] = at
                if (new_rank := rank_of((ids[at], ids[after[at]]))) is not None:
                    heapq.heappush(heap, (new_rank, at))
            if before[at] >= 0 and (new_rank := rank_of((ids[before[at]], ids[at]))) is not None:
                heapq.heappush(heap, (new_rank, before[at]))
        return [token_id for token_id in ids if token_id is not None]

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; special tokens in it become their single ids."""
        return array(_IDS, self._encode_packed(text)).tolist()

    def encode_array(self, text: str) -> np.ndarray:
        """``encode(text)`` as a uint32 array, without making a Python int per id."""
        return np.frombuffer(self._encode_packed(text), dtype=np.uint32)

    def _encode_packed(self, text: str) -> bytes:
        parts = self._special_split.split(text) if self._special_split else [text]
        packed = [self._special_ids[part] if index % 2 else self._encode_ordinary(part)
                  for index, part in enumerate(parts)]
        for cache in (self._segments, self._pretokens):
            if len(cache) > self.cache_entries:
                cache.clear()  # bounded memory; frequent entries come straight back
        return b"".join(packed)

    def _encode_ordinary(self, text: str) -> bytes:
        """Packed ids of text without special tokens."""
        segments = SEGMENT_RE.findall(text)
        try:
            return b"".join(map(self._segments.__getitem__, segments))
        except KeyError:
            pass
        new = set(segments).difference(self._segments)
        # Only the last segment can end with a space; a "\x00" in the text is not the separator.
        if "\x00" in text:
            self._add_segments(set(), odd=new)
        elif segments[-1][-1].isspace() and segments[-1] in new:
            self._add_segments(new - {segments[-1]}, odd={segments[-1]})
        else:
            self._add_segments(new, odd=set())
        packed = b"".join(map(self._segments.__getitem__, segments))
        if max(map(len, new)) > _MAX_CACHED_CHARS:
            for segment in new:
                if len(segment) > _MAX_CACHED_CHARS:
                    del self._segments[segment]
        return packed

    def _add_segments(self, plain: set[str], *, odd: set[str]) -> None:
        """Cache the ids of new segments: ``plain`` ones in one regex pass per script, ``odd`` ones
        (ending with a space, or holding "\x00") one by one."""
        for batch, pattern in (([s for s in plain if s.isascii()], _BATCH_ASCII_RE),
                               ([s for s in plain if not s.isascii()], _BATCH_RE)):
            if batch:
                pieces = pattern.findall("\x00".join(batch) + "\x00")
                groups = b"".join(map(self._pretokens.__getitem__, pieces)).split(_SENTINEL)
                self._segments.update(zip(batch, groups))
        for segment in odd:  # "\x00" here is text, not the separator
            self._segments[segment] = b"".join(
                _pack(self._bpe(b"\x00")) if piece == "\x00" else self._pretokens[piece]
                for piece in pretokenize(segment))

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
        found = _LAST_CUT.search(text, 0, growing_special_start(text, self.special_tokens))
        return before_straddling_specials(text, found.start() + 1 if found else 0, self.special_tokens)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; byte sequences that are not valid UTF-8 become U+FFFD."""
        try:
            data = b"".join(map(self.vocab.__getitem__, ids))
        except KeyError as error:
            raise ValueError(f"unknown token id {error.args[0]!r} (vocab has {len(self.vocab)} ids)") from None
        return data.decode("utf-8", errors="replace")
