"""An open-addressing hash table of byte strings for compiled code (numba): the pre-token table
of the counter (``fast_count``) and the pre-token cache of the encoder (``fast_encode``).

Entries are numbered in insertion order; entry ``e``'s key is ``arena[offsets[e]:offsets[e + 1]]``
and ``hashes[e]`` its hash. ``slots`` (uint64, a power of two, at most half full) holds 0 for a
free slot, else ``e + 1`` in its low 32 bits and the high 32 bits of the key's hash in its high
ones, so that a lookup compares hashes without reading another array (the low bits of the hash
pick the slot). A new table is ``np.zeros``: its pages cost no memory until they are used. What
an entry maps to lives in arrays of the caller's, indexed by entry.
"""

from __future__ import annotations

import numpy as np
from scratchlm.tokenizer.compiled import njit

_LOW = np.uint64(0xFFFFFFFF)
_HIGH = ~_LOW


@njit(cache=True, inline="always")
def hash_bytes(data, start, end):
    """FNV-1a of ``data[start:end]``, its high bits folded into the low ones that pick the slot
    (FNV's low bits mix poorly: its lowest is the parity of the bytes' lowest bits)."""
    h = np.uint64(14695981039346656037)
    for at in range(start, end):
        h = (h ^ np.uint64(data[at])) * np.uint64(1099511628211)
    return h ^ (h >> np.uint64(29)) ^ (h >> np.uint64(47))


@njit(cache=True, inline="always")
def entry_at(slots, slot):
    """The entry in ``slot``, or -1 if it is free."""
    return np.int64(slots[slot] & _LOW) - 1


@njit(cache=True, inline="always")
def occupy(slots, slot, h, entry):
    """Put ``entry`` (whose key hashes to ``h``) in the free ``slot``."""
    slots[slot] = (h & _HIGH) | np.uint64(entry + 1)


@njit(cache=True)
def find_slot(data, start, end, h, slots, offsets, arena):
    """The slot holding key ``data[start:end]`` (hash ``h``), or the free slot where it would go."""
    length = end - start
    mask = np.uint64(len(slots) - 1)
    at = h & mask
    tag = h & _HIGH
    while True:
        held = slots[at]
        if held == 0:
            return at
        entry = np.int64(held & _LOW) - 1
        if held & _HIGH == tag and offsets[entry + 1] - offsets[entry] == length:
            stored, same = offsets[entry], True
            for k in range(length):
                if arena[stored + k] != data[start + k]:
                    same = False
                    break
            if same:
                return at
        at = (at + np.uint64(1)) & mask


@njit(cache=True)
def rehash_into(slots, hashes, used):
    """Make ``slots`` hold the first ``used`` entries and nothing else."""
    slots[:] = 0
    mask = np.uint64(len(slots) - 1)
    for entry in range(used):
        at = hashes[entry] & mask
        while slots[at] != 0:
            at = (at + np.uint64(1)) & mask
        occupy(slots, at, hashes[entry], entry)


@njit(cache=True, exports=[(("i8",), "u8[:]")])
def new_slots(entries):
    """Free slots for up to ``entries`` entries (at most half full)."""
    size = 16
    while size < 2 * entries:
        size *= 2
    return np.zeros(size, dtype=np.uint64)
