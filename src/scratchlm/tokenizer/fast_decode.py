"""Decoding compiled with numba: the bytes of many ids gathered from one arena in two passes
(sizes, then copies), with no Python object per id."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from numba import njit

_CHUNK = 16  # bytes copied at once for each token at most this long (most tokens)


@njit(cache=True)
def _gather(ids, starts, ends, arena):
    """The bytes of ``ids`` end to end, and -1; or an empty array and the index of the first id
    that has no token."""
    total = 0
    for index in range(len(ids)):
        token_id = ids[index]
        if token_id < 0 or token_id >= len(starts) or starts[token_id] < 0:
            return np.empty(0, dtype=np.uint8), index
        total += ends[token_id] - starts[token_id]
    out = np.empty(total + _CHUNK, dtype=np.uint8)
    at = 0
    for index in range(len(ids)):
        start, end = starts[ids[index]], ends[ids[index]]
        if end - start <= _CHUNK:
            for k in range(_CHUNK):  # a fixed size: one vector move (the arena has room after its end)
                out[at + k] = arena[start + k]
        else:
            for k in range(end - start):
                out[at + k] = arena[start + k]
        at += end - start
    return out[:total], -1


class CompiledDecoder:
    """The bytes of id sequences, from a vocab (id -> bytes) laid out as one arena."""

    def __init__(self, vocab: Mapping[int, bytes]) -> None:
        size = max(vocab, default=-1) + 1
        self.starts = np.full(size, -1, dtype=np.int64)  # -1: no token has this id
        self.ends = np.zeros(size, dtype=np.int64)
        ids = np.fromiter(vocab.keys(), dtype=np.int64, count=len(vocab))
        lengths = np.fromiter(map(len, vocab.values()), dtype=np.int64, count=len(vocab))
        self.ends[ids] = np.cumsum(lengths)
        self.starts[ids] = self.ends[ids] - lengths
        self.arena = np.frombuffer(b"".join(vocab.values()) + bytes(_CHUNK), dtype=np.uint8)

    def decode_bytes(self, ids: Sequence[int] | np.ndarray) -> memoryview:
        """The bytes of ``ids``; ``KeyError`` naming the first unknown id."""
        if not isinstance(ids, np.ndarray):
            ids = np.fromiter(ids, dtype=np.int64, count=len(ids))
        data, bad = _gather(ids, self.starts, self.ends, self.arena)
        if bad >= 0:
            raise KeyError(int(ids[bad]))
        return memoryview(data)
