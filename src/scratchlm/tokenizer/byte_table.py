"""An open-addressing hash table of byte strings for compiled code (numba): the pre-token table
of the counter (``fast_count``) and the pre-token cache of the encoder (``fast_encode``).

Entries are numbered in insertion order; entry ``e``'s key is ``arena[offsets[e]:offsets[e + 1]]``
and ``hashes[e]`` its hash. ``slots`` (a power of two, at most half full) holds ``e + 1`` per
used slot and 0 for a free one, so a new table is ``np.zeros``: its pages cost no memory until
they are used. What an entry maps to lives in arrays of the caller's, indexed by entry.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def hash_bytes(data, start, end):
    """FNV-1a of ``data[start:end]``, its high bits folded into the low ones that pick the slot
    (FNV's low bits mix poorly: its lowest is the parity of the bytes' lowest bits)."""
    h = np.uint64(14695981039346656037)
    for at in range(start, end):
        h = (h ^ np.uint64(data[at])) * np.uint64(1099511628211)
    return h ^ (h >> np.uint64(29)) ^ (h >> np.uint64(47))


@njit(cache=True)
def find_slot(data, start, end, h, slots, hashes, offsets, arena):
    """The slot holding key ``data[start:end]`` (hash ``h``), or the free slot where it would go."""
    length = end - start
    mask = np.uint64(len(slots) - 1)
    at = h & mask
    while True:
        entry = slots[at] - 1
        if entry < 0:
            return at
        if hashes[entry] == h and offsets[entry + 1] - offsets[entry] == length:
            stored, same = offsets[entry], True
            for k in range(length):
                if arena[stored + k] != data[start + k]:
                    same = False
                    break
            if same:
                return at
        at = (at + np.uint64(1)) & mask


@njit(cache=True)
def rehashed(hashes, used, size):
    """New ``slots`` of ``size`` (a power of two) for the first ``used`` entries."""
    slots = np.zeros(size, dtype=np.int64)
    mask = np.uint64(size - 1)
    for entry in range(used):
        at = hashes[entry] & mask
        while slots[at] != 0:
            at = (at + np.uint64(1)) & mask
        slots[at] = entry + 1
    return slots
