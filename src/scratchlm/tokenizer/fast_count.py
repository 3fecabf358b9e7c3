"""Counting GPT-2 pre-tokens compiled with numba: the same counts as ``Counter(GPT2_REGEX.findall(text))``
without a Python object per pre-token.

GPT-2's pattern tries its alternatives in order at each position; over code points classed as
letter (``\\p{L}``), number (``\\p{N}``), whitespace (``\\s``) or other, it is a small scanner:

* ``'`` followed by ``s d m t`` or ``ll ve re``: a contraction;
* a space followed by a letter, number or other, or such a code point: a run of that class,
  with the space in front;
* whitespace: the whole run at the end of the text, else all of it but its last code point when
  it has two or more, else that one (a space before a non-space went with the run after it).

The classes come from the ``regex`` module itself (the engine GPT2_REGEX uses), once per process.
Distinct pre-tokens go to an open-addressing hash table whose keys (code points) are copied into
one arena; at the end they are encoded to UTF-8 in the same layout Arrow uses for binary arrays
(bytes end to end, offsets), so a shard's counts never become Python objects. Hypothesis tests
check the scanner against the regex, on ASCII and on Unicode text.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
import regex
from numba import njit

OTHER, LETTER, NUMBER, SPACE = 0, 1, 2, 3
EMPTY = -1


@functools.lru_cache(maxsize=1)
def code_point_classes() -> np.ndarray:
    """The class of every code point (uint8, 0x110000 entries), by the ``regex`` module's ``\\p{L}``,
    ``\\p{N}`` and ``\\s`` (about 0.3 s)."""
    classes = np.zeros(0x110000, dtype=np.uint8)
    code_points = np.concatenate([np.arange(0xD800), np.arange(0xE000, 0x110000)])  # no surrogates
    every = "".join(map(chr, code_points.tolist()))
    for kind, pattern in ((LETTER, r"\p{L}+"), (NUMBER, r"\p{N}+"), (SPACE, r"\s+")):
        for match in regex.finditer(pattern, every):
            classes[code_points[match.start():match.end()]] = kind
    return classes


@njit(cache=True, inline="always")
def _run_end(text, at, n, classes, kind):
    while at < n and classes[text[at]] == kind:
        at += 1
    return at


@njit(cache=True)
def _token_end(text, i, n, classes):
    """Where the pre-token starting at ``i`` ends (``text``: code points, ``n``: end of the piece)."""
    c = text[i]
    if c == 39 and i + 1 < n:  # ' : contractions first, as in the pattern
        d = text[i + 1]
        if d == 115 or d == 100 or d == 109 or d == 116:  # s d m t
            return i + 2
        if i + 2 < n:
            e = text[i + 2]
            if (d == 108 and e == 108) or (d == 118 and e == 101) or (d == 114 and e == 101):  # ll ve re
                return i + 3
    kind = classes[c]
    if c == 32 and i + 1 < n and classes[text[i + 1]] != SPACE:
        return _run_end(text, i + 1, n, classes, classes[text[i + 1]])
    if kind != SPACE:
        return _run_end(text, i, n, classes, kind)
    end = _run_end(text, i, n, classes, SPACE)
    if end == n or end - i == 1:
        return end
    return end - 1


@njit(cache=True, inline="always")
def _hash(text, start, end):
    h = np.uint64(14695981039346656037)  # FNV-1a over code points
    for at in range(start, end):
        h = (h ^ np.uint64(text[at])) * np.uint64(1099511628211)
    return h


@njit(cache=True)
def _grow_table(slots, hashes, used):
    size = 2 * len(slots)
    new_slots = np.full(size, EMPTY, dtype=np.int64)
    mask = np.uint64(size - 1)
    for entry in range(used):
        at = hashes[entry] & mask
        while new_slots[at] != EMPTY:
            at = (at + np.uint64(1)) & mask
        new_slots[at] = entry
    return new_slots


@njit(cache=True)
def _grown(array, needed):
    if needed <= len(array):
        return array
    bigger = np.empty(max(needed, 2 * len(array)), dtype=array.dtype)
    bigger[:len(array)] = array
    return bigger


@njit(cache=True)
def _find(text, start, end, h, slots, hashes, offsets, arena):
    """The slot where pre-token ``text[start:end]`` is, or the empty slot where it goes."""
    length = end - start
    mask = np.uint64(len(slots) - 1)
    at = h & mask
    while True:
        entry = slots[at]
        if entry == EMPTY:
            return at
        if hashes[entry] == h and offsets[entry + 1] - offsets[entry] == length:
            stored, same = offsets[entry], True
            for k in range(length):
                if arena[stored + k] != text[start + k]:
                    same = False
                    break
            if same:
                return at
        at = (at + np.uint64(1)) & mask


@njit(cache=True)
def _count(text, bounds, state, classes):
    """Add the pre-tokens of the pieces ``text[bounds[k]:bounds[k + 1]]`` (code points; no pre-token
    crosses from one piece to the next) to the table ``state``; returns the new state."""
    slots, hashes, offsets, counts, arena, used, arena_used = state
    piece, i = 0, 0
    while i < len(text):
        while bounds[piece + 1] <= i:
            piece += 1
        end = _token_end(text, i, bounds[piece + 1], classes)
        h = _hash(text, i, end)
        at = _find(text, i, end, h, slots, hashes, offsets, arena)
        if slots[at] != EMPTY:
            counts[slots[at]] += 1
        else:
            length = end - i
            hashes, counts = _grown(hashes, used + 1), _grown(counts, used + 1)
            offsets, arena = _grown(offsets, used + 2), _grown(arena, arena_used + length)
            arena[arena_used:arena_used + length] = text[i:end]
            arena_used += length
            hashes[used], counts[used], offsets[used + 1] = h, 1, arena_used
            slots[at] = used
            used += 1
            if 2 * used > len(slots):
                slots = _grow_table(slots, hashes, used)
        i = end
    return slots, hashes, offsets, counts, arena, used, arena_used


@njit(cache=True)
def _utf8(arena, offsets, used):
    """The keys (code points) encoded to UTF-8 end to end, and their byte offsets."""
    size = 0
    for at in range(offsets[used]):
        c = arena[at]
        size += 1 if c < 0x80 else 2 if c < 0x800 else 3 if c < 0x10000 else 4
    out = np.empty(size, dtype=np.uint8)
    byte_offsets = np.empty(used + 1, dtype=np.int64)
    byte_offsets[0], pos, entry = 0, 0, 0
    for at in range(offsets[used]):
        while offsets[entry + 1] <= at:
            entry += 1
            byte_offsets[entry] = pos
        c = arena[at]
        if c < 0x80:
            out[pos] = c
            pos += 1
        elif c < 0x800:
            out[pos], out[pos + 1] = 0xC0 | (c >> 6), 0x80 | (c & 0x3F)
            pos += 2
        elif c < 0x10000:
            out[pos], out[pos + 1], out[pos + 2] = 0xE0 | (c >> 12), 0x80 | ((c >> 6) & 0x3F), 0x80 | (c & 0x3F)
            pos += 3
        else:
            out[pos], out[pos + 1] = 0xF0 | (c >> 18), 0x80 | ((c >> 12) & 0x3F)
            out[pos + 2], out[pos + 3] = 0x80 | ((c >> 6) & 0x3F), 0x80 | (c & 0x3F)
            pos += 4
    for rest in range(entry + 1, used + 1):
        byte_offsets[rest] = pos
    return out, byte_offsets


class PretokenCounter:
    """Pre-token counts of text given in any number of pieces (documents, or pieces of them cut
    where pre-tokens always split)."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        self.classes = code_point_classes()
        self.state = (np.full(2 * capacity, EMPTY, dtype=np.int64), np.empty(capacity, dtype=np.uint64),
                      np.zeros(capacity + 1, dtype=np.int64), np.empty(capacity, dtype=np.int64),
                      np.empty(8 * capacity, dtype=np.uint32), 0, 0)

    def add(self, pieces: Sequence[str]) -> None:
        """Count the pre-tokens of each of ``pieces``, in one call: calling compiled code costs
        microseconds, and a corpus comes in many small documents."""
        bounds = np.zeros(len(pieces) + 1, dtype=np.int64)
        np.cumsum([len(piece) for piece in pieces], out=bounds[1:])
        if bounds[-1]:
            text = np.frombuffer("".join(pieces).encode("utf-32-le"), dtype=np.uint32)
            self.state = _count(text, bounds, self.state, self.classes)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The distinct pre-tokens so far as (UTF-8 bytes end to end, byte offsets, counts), in
        first-seen order.

        >>> counter = PretokenCounter()
        >>> counter.add(["it's the café's", " hat"]); counter.add([" the end"])
        >>> keys, offsets, counts = counter.arrays()
        >>> [(keys[a:b].tobytes().decode(), int(n)) for a, b, n in zip(offsets, offsets[1:], counts)]
        [('it', 1), ("'s", 2), (' the', 2), (' café', 1), (' hat', 1), (' end', 1)]
        """
        _, _, offsets, counts, arena, used, _ = self.state
        keys, byte_offsets = _utf8(arena, offsets, used)
        return keys, byte_offsets, counts[:used]
