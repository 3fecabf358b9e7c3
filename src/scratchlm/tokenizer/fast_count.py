"""Counting the GPT-2 pre-tokens of ASCII text, compiled with numba: the same counts as
``Counter(ASCII_PRETOKEN_BYTES_RE.findall(text))``, without a Python object per pre-token.

The regex walks GPT-2's alternatives in order at each position; on ASCII bytes they reduce to a
small scanner over byte classes (letter, digit, whitespace, other):

* ``'`` followed by ``s d m t`` or ``ll ve re``: a contraction;
* a space followed by a letter, digit or other byte, or such a byte: a run of that class,
  with the space in front;
* whitespace: the whole run at the end of the text, else all of it but its last byte when
  it has two or more, else that one byte (a space before a non-space went with the run after it).

Distinct pre-tokens go to an open-addressing hash table whose keys are copied into one byte
arena, so a shard's counts come out as three arrays (arena, offsets, counts) in any number of
calls. A hypothesis test checks the scanner against the regex.
"""

from __future__ import annotations

import numpy as np
from numba import njit

OTHER, LETTER, DIGIT, SPACE = 0, 1, 2, 3
BYTE_CLASS = np.zeros(256, dtype=np.uint8)
BYTE_CLASS[ord("a"):ord("z") + 1] = LETTER
BYTE_CLASS[ord("A"):ord("Z") + 1] = LETTER
BYTE_CLASS[ord("0"):ord("9") + 1] = DIGIT
BYTE_CLASS[[9, 10, 11, 12, 13, 32]] = SPACE  # \x1c-\x1f are not Unicode White_Space: OTHER, as in `regex`
EMPTY = -1


@njit(cache=True, inline="always")
def _run_end(data, at, n, byte_class, kind):
    while at < n and byte_class[data[at]] == kind:
        at += 1
    return at


@njit(cache=True)
def _token_end(data, i, n, byte_class):
    """Where the pre-token starting at ``i`` ends."""
    c = data[i]
    if c == 39 and i + 1 < n:  # ' : contractions first, as in the pattern
        d = data[i + 1]
        if d == 115 or d == 100 or d == 109 or d == 116:  # s d m t
            return i + 2
        if i + 2 < n:
            e = data[i + 2]
            if (d == 108 and e == 108) or (d == 118 and e == 101) or (d == 114 and e == 101):  # ll ve re
                return i + 3
    kind = byte_class[c]
    if c == 32 and i + 1 < n and byte_class[data[i + 1]] != SPACE:
        return _run_end(data, i + 1, n, byte_class, byte_class[data[i + 1]])
    if kind != SPACE:
        return _run_end(data, i, n, byte_class, kind)
    end = _run_end(data, i, n, byte_class, SPACE)
    if end == n or end - i == 1:
        return end
    return end - 1


@njit(cache=True, inline="always")
def _hash(data, start, end):
    h = np.uint64(14695981039346656037)  # FNV-1a
    for at in range(start, end):
        h = (h ^ np.uint64(data[at])) * np.uint64(1099511628211)
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
def _count(data, state, byte_class):
    """Add the pre-tokens of ``data`` (ASCII bytes) to the table ``state``; returns the new state."""
    slots, hashes, offsets, counts, arena, used, arena_used = state
    n, i = len(data), 0
    while i < n:
        end = _token_end(data, i, n, byte_class)
        length = end - i
        h = _hash(data, i, end)
        mask = np.uint64(len(slots) - 1)
        at = h & mask
        while True:
            entry = slots[at]
            if entry == EMPTY:
                break
            if hashes[entry] == h and offsets[entry + 1] - offsets[entry] == length:
                start, same = offsets[entry], True
                for k in range(length):
                    if arena[start + k] != data[i + k]:
                        same = False
                        break
                if same:
                    break
            at = (at + np.uint64(1)) & mask
        if entry != EMPTY:
            counts[entry] += 1
        else:
            hashes, counts = _grown(hashes, used + 1), _grown(counts, used + 1)
            offsets, arena = _grown(offsets, used + 2), _grown(arena, arena_used + length)
            arena[arena_used:arena_used + length] = data[i:end]
            arena_used += length
            hashes[used], counts[used], offsets[used + 1] = h, 1, arena_used
            slots[at] = used
            used += 1
            if 2 * used > len(slots):
                slots = _grow_table(slots, hashes, used)
        i = end
    return slots, hashes, offsets, counts, arena, used, arena_used


class AsciiPretokenCounter:
    """Pre-token counts of ASCII text given in any number of pieces (each cut at a safe cut)."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        self.state = (np.full(2 * capacity, EMPTY, dtype=np.int64), np.empty(capacity, dtype=np.uint64),
                      np.zeros(capacity + 1, dtype=np.int64), np.empty(capacity, dtype=np.int64),
                      np.empty(16 * capacity, dtype=np.uint8), 0, 0)

    def add(self, data: bytes) -> None:
        """Count the pre-tokens of ``data`` (ASCII bytes)."""
        if data:
            self.state = _count(np.frombuffer(data, dtype=np.uint8), self.state, BYTE_CLASS)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The distinct pre-tokens so far as (key bytes, key offsets, counts), in first-seen order.

        >>> counter = AsciiPretokenCounter()
        >>> counter.add(b"it's the cat's hat"); counter.add(b" the end")
        >>> keys, offsets, counts = counter.arrays()
        >>> [(keys[a:b].tobytes(), int(n)) for a, b, n in zip(offsets, offsets[1:], counts)]
        [(b'it', 1), (b"'s", 2), (b' the', 2), (b' cat', 1), (b' hat', 1), (b' end', 1)]
        """
        _, _, offsets, counts, arena, used, arena_used = self.state
        return arena[:arena_used], offsets[:used + 1], counts[:used]
