"""Counting GPT-2 pre-tokens compiled with numba: the same counts as ``Counter(GPT2_REGEX.findall(text))``
without a Python object per pre-token.

Documents go in as UTF-8 bytes, as read from the corpus (no str is made when they are valid),
through the scanner of :mod:`scratchlm.tokenizer.scan`. Distinct pre-tokens go to a
:mod:`scratchlm.tokenizer.byte_table` whose keys (bytes) are copied into one arena: the arena
and its offsets are already the layout Arrow uses for binary arrays, so a shard's counts never
become Python objects. Hypothesis tests check the counts against the regex.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scratchlm.tokenizer.compiled import njit

from scratchlm.tokenizer.byte_table import entry_at, find_slot, hash_bytes, new_slots, occupy, rehash_into
from scratchlm.tokenizer.scan import code_point_classes, token_end


@njit(cache=True)
def _grown(array, needed):
    if needed <= len(array):
        return array
    bigger = np.empty(max(needed, 2 * len(array)), dtype=array.dtype)
    bigger[:len(array)] = array
    return bigger


@njit(cache=True)
def _count_until_full(data, bounds, piece, at, classes, slots, hashes, offsets, counts, arena, used):
    """Count pre-tokens from byte ``at`` of piece ``piece`` on, until done or until a new key does
    not fit the arrays; returns where it stopped and the number of entries. (No array is
    reassigned in this loop: numba would count references to it at every step, which costs
    more than the rest of the loop.)"""
    while piece < len(bounds) - 1:
        end = bounds[piece + 1]
        while at < end:
            stop = token_end(data, at, end, classes)
            h = hash_bytes(data, at, stop)
            slot = find_slot(data, at, stop, h, slots, offsets, arena)
            entry = entry_at(slots, slot)
            if entry >= 0:
                counts[entry] += 1
            else:
                key_start = offsets[used]
                if used >= len(hashes) or key_start + stop - at > len(arena) or 2 * (used + 1) > len(slots):
                    return piece, at, used
                arena[key_start:key_start + stop - at] = data[at:stop]
                hashes[used], counts[used], offsets[used + 1] = h, 1, key_start + stop - at
                occupy(slots, slot, h, used)
                used += 1
            at = stop
        piece += 1
        if piece < len(bounds) - 1:
            at = bounds[piece]
    return piece, at, used


@njit(cache=True)
def _count(data, bounds, state, classes):
    """Add the pre-tokens of the pieces ``data[bounds[k]:bounds[k + 1]]`` (UTF-8; no pre-token
    crosses from one piece to the next) to the table ``state``; returns the new state."""
    slots, hashes, offsets, counts, arena, used = state
    piece, at = 0, bounds[0]
    while True:
        piece, at, used = _count_until_full(data, bounds, piece, at, classes, slots, hashes, offsets, counts,
                                            arena, used)
        if piece == len(bounds) - 1:
            return slots, hashes, offsets, counts, arena, used
        # The next key did not fit: double what is short (the key is at most what is left).
        hashes, counts = _grown(hashes, used + 1), _grown(counts, used + 1)
        offsets = _grown(offsets, len(hashes) + 1)  # so that entry len(hashes) - 1 has an end
        arena = _grown(arena, offsets[used] + bounds[piece + 1] - at)
        if 2 * (used + 1) > len(slots):
            slots = new_slots(len(slots))
            rehash_into(slots, hashes, used)


class PretokenCounter:
    """Pre-token counts of text given in any number of pieces (documents, or pieces of them cut
    where pre-tokens always split), as valid UTF-8 bytes."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        self.classes = code_point_classes()
        self.state = (new_slots(capacity), np.empty(capacity, dtype=np.uint64),
                      np.zeros(capacity + 1, dtype=np.int64), np.empty(capacity, dtype=np.int64),
                      np.empty(8 * capacity, dtype=np.uint8), 0)

    def add(self, pieces: Sequence[bytes]) -> None:
        """Count the pre-tokens of each of ``pieces`` (valid UTF-8), in one call: calling compiled
        code costs microseconds, and a corpus comes in many small documents."""
        bounds = np.zeros(len(pieces) + 1, dtype=np.int64)
        np.cumsum([len(piece) for piece in pieces], out=bounds[1:])
        if bounds[-1]:
            data = np.frombuffer(b"".join(pieces), dtype=np.uint8)
            self.state = _count(data, bounds, self.state, self.classes)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The distinct pre-tokens so far as (UTF-8 bytes end to end, byte offsets, counts), in
        first-seen order.

        >>> counter = PretokenCounter()
        >>> counter.add(["it's the café's".encode(), b" hat"]); counter.add([b" the end"])
        >>> keys, offsets, counts = counter.arrays()
        >>> [(keys[a:b].tobytes().decode(), int(n)) for a, b, n in zip(offsets, offsets[1:], counts)]
        [('it', 1), ("'s", 2), (' the', 2), (' café', 1), (' hat', 1), (' end', 1)]
        """
        _, _, offsets, counts, arena, used = self.state
        return arena[:offsets[used]], offsets[:used + 1], counts[:used]
