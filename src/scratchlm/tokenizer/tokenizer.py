"""Byte-level BPE encoder/decoder, id-for-id compatible with GPT-2 / tiktoken given the same vocab.

Encoding is: split off special tokens (longest first), cut the rest into GPT-2 pre-tokens, and
turn each pre-token into ids by applying the merges in creation order. The work is compiled
(:mod:`scratchlm.tokenizer.fast_encode`: one call per batch of text, a pre-token cache, ids
written into one array); :mod:`scratchlm.tokenizer.python_encode` is the same in plain Python,
the reference the tests hold it to.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, NamedTuple, Sequence, Sized

import numpy as np
import regex

from scratchlm.fileio import require_file
from scratchlm.tokenizer.pretokenize import (
    before_straddling_specials,
    growing_special_start,
    special_tokens_regex,
)
from scratchlm.tokenizer.serialization import Merges, Vocab, check_vocab, load_gpt2_format, load_pickle
from scratchlm.tokenizer.utf8 import utf8_of, valid_utf8

if TYPE_CHECKING:
    from scratchlm.tokenizer.fast_decode import CompiledDecoder
    from scratchlm.tokenizer.fast_encode import CompiledEncoder

_LAST_CUT = regex.compile(r"\S\s", flags=regex.REVERSE)
DEFAULT_CACHE_ENTRIES = 1 << 18  # pre-tokens the encoder keeps beyond the vocab's own tokens
# From this many ids, decoding is compiled (a list of Python ints costs a pass to convert, and the
# first compiled call of a process a fraction of a second: not worth it for a short sample).
COMPILED_DECODE_IDS = 1 << 14


class MergeTables(NamedTuple):
    """What both encoders work from (see ``CompiledEncoder`` and ``PythonEncoder``)."""

    byte_ids: list[int]  # id of each byte value
    pairs: list[tuple[int, int]]  # ids joined by each merge, in rank order
    merged: list[int]  # id each merge makes
    merged_tokens: dict[bytes, int]  # bytes -> id of every token made by a merge


class Tokenizer:
    """Byte-level BPE tokenizer over a ``vocab`` (id -> bytes) and ordered ``merges``.

    >>> tok = Tokenizer({i: bytes([i]) for i in range(256)} | {256: b"ab"}, [(b"a", b"b")], ["<|eot|>"])
    >>> tok.encode("abc<|eot|>")
    [256, 99, 257]
    >>> tok.decode([256, 99, 257])
    'abc<|eot|>'
    """

    def __init__(self, vocab: Vocab, merges: Merges, special_tokens: Sequence[str] | None = None,
                 *, cache_entries: int = DEFAULT_CACHE_ENTRIES) -> None:
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
        self._special_bytes = special_tokens_regex([special.encode("utf-8") for special in self.special_tokens])
        self._tables = self._merge_tables()
        self.cache_entries = cache_entries
        self._compiled: CompiledEncoder | None = None  # made at the first encode (the compiled kernels load then)
        self._decoder: CompiledDecoder | None = None  # made at the first long decode

    def __reduce__(self):
        # Sent to worker processes as its definition; each rebuilds its tables and caches.
        return type(self), (self.vocab, self.merges, self.special_tokens), {"cache_entries": self.cache_entries}

    def _merge_tables(self) -> MergeTables:
        """Ids of the 256 bytes, the pair of ids each merge joins and the id it makes (by rank), and
        the bytes -> id of every token made by a merge."""
        missing = [byte for byte in range(256) if bytes([byte]) not in self._ids]
        if missing:
            raise ValueError(f"vocab lacks {len(missing)} single-byte tokens (e.g. byte {missing[0]})")
        pairs, merged = [], []
        for rank, (left, right) in enumerate(self.merges):
            try:
                pairs.append((self._ids[left], self._ids[right]))
                merged.append(self._ids[left + right])
            except KeyError as error:
                raise ValueError(f"merge {rank} ({left!r}, {right!r}) uses a token missing from the vocab: "
                                 f"{error.args[0]!r}") from None
        merged_tokens = {self.vocab[token_id]: token_id for token_id in merged}
        return MergeTables([self._ids[bytes([byte])] for byte in range(256)], pairs, merged, merged_tokens)

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
            tokenizer = cls(vocab, merges, special_tokens, **kwargs)
            tokenizer._check_every_token_is_made()
        except ValueError as error:  # the files disagree (a merge of tokens the vocab lacks): name them
            raise ValueError(f"{vocab_filepath} and {merges_filepath}: {error}") from None
        return tokenizer

    def _check_every_token_is_made(self) -> None:
        """ValueError if the vocab holds tokens that only a merge missing from the merges could make
        (two vocab tokens joined, made by no merge): a merges file cut short at a line end looks
        like this, and would encode differently. A token that is no such join (a marker such as
        ``<|endoftext|>`` loaded as plain text) is left alone: no encoding makes it either way."""
        made = {*self._tables.byte_ids, *self._tables.merged, *map(self.token_id, self.special_tokens)}
        unmade = [token for token_id, token in self.vocab.items() if token_id not in made
                  and any(token[:cut] in self._ids and token[cut:] in self._ids for cut in range(1, len(token)))]
        if unmade:
            raise ValueError(f"{len(unmade)} vocab tokens join two others but no merge makes them (e.g. "
                             f"{unmade[0]!r}): the merges ({len(self.merges)}) look cut short, or belong to "
                             f"another vocab")

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

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; special tokens in it become their single ids."""
        return self.encode_array(text).tolist()

    def encode_array(self, text: str) -> np.ndarray:
        """``encode(text)`` as a uint32 array, without making a Python int per id."""
        return self.encode_valid_utf8(utf8_of(text))

    def encode_utf8(self, data: bytes) -> np.ndarray:
        """Ids (uint32) of UTF-8 ``data``, e.g. read from a file, without decoding it: the same as
        ``encode_array(data.decode("utf-8", errors="replace"))``."""
        return self.encode_valid_utf8(valid_utf8(data)[0])

    def encode_valid_utf8(self, data: bytes) -> np.ndarray:
        """``encode_utf8`` of ``data`` that is known to be valid UTF-8 (``utf8.valid_utf8``'s output):
        the compiled encoder on the pieces between special tokens, without checking it again."""
        if self._compiled is None:
            from scratchlm.tokenizer.fast_encode import CompiledEncoder

            self._compiled = CompiledEncoder(*self._tables, cache_entries=self.cache_entries)
        return self._compiled.encode(data, *self._pieces(data))

    def _pieces(self, data: bytes) -> tuple[list[int], list[int], list[int]]:
        """Where the text between special tokens starts and ends in valid UTF-8 ``data``, and the id
        of the special token after each piece (-1 after the last)."""
        starts, ends, separators = [0], [], []
        for special in self._special_bytes.finditer(data) if self._special_bytes else ():
            ends.append(special.start())
            separators.append(self._ids[special.group()])
            starts.append(special.end())
        ends.append(len(data))
        separators.append(-1)
        return starts, ends, separators

    def encode_in_python(self, text: str) -> list[int]:
        """``encode(text)`` by the pure-Python reference (:mod:`scratchlm.tokenizer.python_encode`)."""
        from scratchlm.tokenizer.python_encode import PythonEncoder

        data = utf8_of(text)
        starts, ends, separators = self._pieces(data)
        texts = [data[start:end].decode("utf-8") for start, end in zip(starts, ends)]
        return PythonEncoder(*self._tables).encode(texts, separators[:-1])

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
            if isinstance(ids, np.ndarray) or (isinstance(ids, Sized) and len(ids) >= COMPILED_DECODE_IDS):
                data = self._compiled_decoder().decode_bytes(ids)
            else:
                data = b"".join(map(self.vocab.__getitem__, ids))
        except KeyError as error:
            raise ValueError(f"unknown token id {error.args[0]!r} (vocab has {len(self.vocab)} ids)") from None
        return str(data, "utf-8", errors="replace")

    def _compiled_decoder(self) -> CompiledDecoder:
        if self._decoder is None:
            from scratchlm.tokenizer.fast_decode import CompiledDecoder

            self._decoder = CompiledDecoder(self.vocab)
        return self._decoder
