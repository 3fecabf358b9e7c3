"""The BPE of one pre-token, compiled with numba: the merge tables as arrays, and the two merge
loops of ``python_encode`` (its executable reference) over them.

Both loops apply, until none is left, the merge of lowest rank among adjacent pairs, the
leftmost of equals (tiktoken's rule). The short loop rescans a small array (fastest for the
usual pre-token of a few bytes); the long one keeps an indexed heap of pair positions ordered
by (rank, position) over a linked list, so a pre-token of n bytes takes O(n log n) time and
24 bytes per byte, however it merges (a 10 MiB run of one letter is one pre-token).
"""

from __future__ import annotations

import numpy as np
from scratchlm.tokenizer.compiled import njit

NO_MERGE = np.int64(1 << 40)  # rank of a pair without a merge
_EMPTY_PAIR = np.uint64(0xFFFFFFFFFFFFFFFF)  # no pair of ids below 2**32 has this key
SHORT = 64  # bytes up to which the short loop is used
BUCKETED = 4096  # bytes from which the long loop goes by rank buckets


@njit(cache=True, inline="always")
def _pair_slot(key, mask):
    h = key * np.uint64(0x9E3779B97F4A7C15)
    return (h ^ (h >> np.uint64(31))) & mask


def pair_table(lefts: np.ndarray, rights: np.ndarray) -> np.ndarray:
    """An open-addressing table from the pair (left id, right id) to the rank of its first merge,
    for merges given as id arrays in rank order: rows (key, rank), so a lookup reads one line."""
    table = np.zeros((1 << max(4, int(2 * len(lefts)).bit_length()), 2), dtype=np.uint64)
    table[:, 0] = _EMPTY_PAIR
    _fill_pairs(lefts.astype(np.uint64), rights.astype(np.uint64), table)
    return table


@njit(cache=True, exports=[(("u8[:]", "u8[:]", "u8[:,:]!"), None)])
def _fill_pairs(lefts, rights, table):
    mask = np.uint64(len(table) - 1)
    for rank in range(len(lefts)):
        key = (lefts[rank] << np.uint64(32)) | rights[rank]
        at = _pair_slot(key, mask)
        while table[at, 0] != _EMPTY_PAIR and table[at, 0] != key:
            at = (at + np.uint64(1)) & mask
        if table[at, 0] == _EMPTY_PAIR:  # a repeated merge keeps its first rank
            table[at, 0], table[at, 1] = key, rank


@njit(cache=True, inline="always")
def rank_of(left, right, pairs):
    """Rank of the merge of ids (left, right), or NO_MERGE (``pairs``: a ``pair_table``)."""
    key = (np.uint64(left) << np.uint64(32)) | np.uint64(right)
    mask = np.uint64(len(pairs) - 1)
    at = _pair_slot(key, mask)
    while True:
        found = pairs[at, 0]
        if found == key:
            return np.int64(pairs[at, 1])
        if found == _EMPTY_PAIR:
            return NO_MERGE
        at = (at + np.uint64(1)) & mask


@njit(cache=True)
def bpe_short(data, start, end, tables, out, n_out):
    """Write the ids of pre-token ``data[start:end]`` (at most SHORT bytes) at ``out[n_out:]``;
    returns the new end of ``out``. ``tables``: (byte ids, ``pair_table``, merged ids)."""
    byte_ids, pairs, merged = tables
    size = end - start
    ids = np.empty(SHORT, dtype=np.int64)
    pair_ranks = np.empty(SHORT, dtype=np.int64)  # pair_ranks[k]: rank of (ids[k], ids[k + 1])
    for k in range(size):
        ids[k] = byte_ids[data[start + k]]
    for k in range(size - 1):
        pair_ranks[k] = rank_of(ids[k], ids[k + 1], pairs)
    while size > 1:
        best, at = NO_MERGE, -1
        for k in range(size - 1):
            if pair_ranks[k] < best:
                best, at = pair_ranks[k], k
        if at < 0:
            break
        ids[at] = merged[best]
        size -= 1
        for k in range(at + 1, size):  # close the gap
            ids[k] = ids[k + 1]
        for k in range(at, size - 1):
            pair_ranks[k] = pair_ranks[k + 1]
        if at < size - 1:
            pair_ranks[at] = rank_of(ids[at], ids[at + 1], pairs)
        if at > 0:
            pair_ranks[at - 1] = rank_of(ids[at - 1], ids[at], pairs)
    out[n_out:n_out + size] = ids[:size]
    return n_out + size


@njit(cache=True, inline="always")
def _before(rank, a, b):
    return rank[a] < rank[b] or (rank[a] == rank[b] and a < b)


@njit(cache=True)
def _sift_up(heap, where, rank, i):
    moving = heap[i]
    while i > 0:
        parent = (i - 1) >> 1
        if not _before(rank, moving, heap[parent]):
            break
        heap[i] = heap[parent]
        where[heap[i]] = i
        i = parent
    heap[i] = moving
    where[moving] = i


@njit(cache=True)
def _sift_down(heap, where, rank, i, size):
    moving = heap[i]
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and _before(rank, heap[child + 1], heap[child]):
            child += 1
        if not _before(rank, heap[child], moving):
            break
        heap[i] = heap[child]
        where[heap[i]] = i
        i = child
    heap[i] = moving
    where[moving] = i


@njit(cache=True)
def _set_rank(heap, where, rank, size, position, new_rank):
    """Give the pair at ``position`` rank ``new_rank`` (NO_MERGE: take it out); returns the heap size."""
    i = where[position]
    if i < 0:
        if new_rank == NO_MERGE:
            return size
        rank[position], heap[size] = new_rank, position
        _sift_up(heap, where, rank, size)
        return size + 1
    if new_rank != NO_MERGE:
        old, rank[position] = rank[position], new_rank
        if new_rank < old:
            _sift_up(heap, where, rank, i)
        else:
            _sift_down(heap, where, rank, i, size)
        return size
    where[position], size = -1, size - 1
    if i < size:  # the last entry fills the hole, then moves up or down to its place
        moved = heap[i] = heap[size]
        _sift_up(heap, where, rank, i)
        _sift_down(heap, where, rank, where[moved], size)
    return size


@njit(cache=True)
def _linked_ids(data, start, end, byte_ids):
    """The byte ids of ``data[start:end]`` as a doubly linked list: (ids, next, previous)."""
    size = end - start
    ids = np.empty(size, dtype=np.int32)
    for k in range(size):
        ids[k] = byte_ids[data[start + k]]
    return ids, np.arange(1, size + 1, dtype=np.int32), np.arange(-1, size - 1, dtype=np.int32)


@njit(cache=True)
def _write_linked(ids, after, out, n_out):
    """Write the ids still linked from position 0 at ``out[n_out:]``; returns the new end."""
    at = 0
    while at < len(ids):
        out[n_out] = ids[at]
        n_out += 1
        at = after[at]
    return n_out


@njit(cache=True)
def _bpe_by_rank(data, start, end, tables, out, n_out):
    """``bpe_long`` by rank buckets, for merge lists where a merge only builds on earlier ones (as
    BPE training makes them): a new pair then always has a higher rank than the merge that made
    it, so the ranks can be taken in increasing order, each bucket's positions left to right.
    Linear but for sorting the buckets, with good locality. Returns -1 if a merge makes a pair of
    lower rank (a hand-made merge list): the caller uses the heap instead."""
    byte_ids, pairs, merged = tables
    size = end - start
    ids, after, before = _linked_ids(data, start, end, byte_ids)
    head = np.full(len(merged), -1, dtype=np.int32)  # first entry of each rank's bucket
    positions, links = np.empty(3 * size, dtype=np.int32), np.empty(3 * size, dtype=np.int32)
    entries = 0
    for k in range(size - 1):
        pair_rank = rank_of(ids[k], ids[k + 1], pairs)
        if pair_rank != NO_MERGE:
            positions[entries], links[entries], head[pair_rank] = k, head[pair_rank], entries
            entries += 1
    batch = np.empty(size, dtype=np.int32)
    for current in range(len(merged)):
        count, entry = 0, head[current]
        while entry >= 0:
            batch[count], entry = positions[entry], links[entry]
            count += 1
        for left in np.sort(batch[:count]):
            right = after[left]
            if ids[left] < 0 or right >= size or rank_of(ids[left], ids[right], pairs) != current:
                continue  # merged away, or its pair changed since
            ids[left], ids[right] = merged[current], -1
            after[left] = after[right]
            for first in (left, before[left]):
                if first < 0 or after[first] >= size:
                    continue
                new_rank = rank_of(ids[first], ids[after[first]], pairs)
                if new_rank != NO_MERGE:
                    if new_rank <= current:
                        return -1
                    positions[entries], links[entries], head[new_rank] = first, head[new_rank], entries
                    entries += 1
            if after[left] < size:
                before[after[left]] = left
    return _write_linked(ids, after, out, n_out)


@njit(cache=True)
def bpe_long(data, start, end, tables, out, n_out):
    """``bpe_short`` for a pre-token of any length, in O(n log n): by rank buckets from
    ``BUCKETED`` bytes (scanning the ranks costs about as much as the heap saves below that),
    else (or for a hand-made merge list) by an indexed heap of pair positions."""
    if end - start >= BUCKETED:
        done = _bpe_by_rank(data, start, end, tables, out, n_out)
        if done >= 0:
            return done
    byte_ids, pairs, merged = tables
    size = end - start
    ids, after, before = _linked_ids(data, start, end, byte_ids)
    rank = np.full(size, NO_MERGE, dtype=np.int64)  # rank of the pair that starts at each position
    heap, where = np.empty(size, dtype=np.int32), np.full(size, -1, dtype=np.int32)
    count = 0
    for k in range(size - 1):
        pair_rank = rank_of(ids[k], ids[k + 1], pairs)
        if pair_rank != NO_MERGE:
            count = _set_rank(heap, where, rank, count, k, pair_rank)
    while count:
        left = heap[0]
        right = after[left]
        ids[left] = merged[rank[left]]
        count = _set_rank(heap, where, rank, count, right, NO_MERGE)
        after[left] = after[right]
        if after[left] < size:
            before[after[left]] = left
            count = _set_rank(heap, where, rank, count, left, rank_of(ids[left], ids[after[left]], pairs))
        else:
            count = _set_rank(heap, where, rank, count, left, NO_MERGE)
        if before[left] >= 0:
            previous = before[left]
            count = _set_rank(heap, where, rank, count, previous, rank_of(ids[previous], ids[left], pairs))
    return _write_linked(ids, after, out, n_out)
