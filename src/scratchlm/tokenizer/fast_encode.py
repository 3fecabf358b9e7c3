"""The encoder compiled with numba: scanner -> pre-token cache -> BPE of the misses -> ids written
into one preallocated array, for a whole batch of text in one call.

The cache is a :mod:`scratchlm.tokenizer.byte_table` from pre-token bytes to ids, first filled
with every token made by a merge (a pre-token that is such a token encodes as that one token,
as in tiktoken; for a vocab trained by BPE it is what the merges give anyway). Pre-tokens of at
most ``MAX_CACHED`` bytes are added as they are met; when the cache is full it goes back to
the vocab alone (frequent pre-tokens come straight back), so memory is bounded. Ids are the
same as ``python_encode``'s, the executable reference, on every test input.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from scratchlm.tokenizer.compiled import njit

from scratchlm.tokenizer.byte_table import entry_at, find_slot, hash_bytes, new_slots, occupy, rehash_into
from scratchlm.tokenizer.fast_bpe import SHORT, bpe_long, bpe_short, pair_table
from scratchlm.tokenizer.scan import code_point_classes, token_end

MAX_CACHED = 256  # longer pre-tokens (base64, long rules of symbols) are rare: not worth the memory
# Arena room per cached pre-token, on average: generous, since the cache empties when either arena
# is full, and junk (hex dumps, base64) would otherwise empty it of the frequent words. Pages are
# only used as they fill.
_KEY_BYTES, _IDS = 32, 8
# Types of the kernels' arguments for the ahead-of-time module (see ``compiled``): the merge tables
# (byte ids, ``pair_table``, merged ids) and the cache (slots, hashes, key offsets, key arena, id
# offsets, id arena, counters), as ``CompiledEncoder`` makes them.
_TABLE_TYPES = ("u4[:]", "u8[:,:]", "u4[:]")
_CACHE_TYPES = ("u8[:]!", "u8[:]!", "i8[:]!", "u1[:]!", "i8[:]!", "u4[:]!", "i8[:]!")


@njit(cache=True)
def _add(cache, data, start, end, slot, h, ids, first, last):
    """Enter key ``data[start:end]`` (free ``slot``, hash ``h``) -> ``ids[first:last]``; False if full."""
    slots, hashes, key_offsets, key_arena, id_offsets, id_arena, counters = cache
    used = counters[0]
    key_at, id_at = key_offsets[used], id_offsets[used]
    if used >= len(hashes) or key_at + end - start > len(key_arena) or id_at + last - first > len(id_arena):
        return False
    key_arena[key_at:key_at + end - start] = data[start:end]
    id_arena[id_at:id_at + last - first] = ids[first:last]
    hashes[used], key_offsets[used + 1], id_offsets[used + 1] = h, key_at + end - start, id_at + last - first
    occupy(slots, slot, h, used)
    counters[0] = used + 1
    return True


@njit(cache=True, exports=[((_CACHE_TYPES, "u1[:]", "i8[:]", "u4[:]"), None)])
def _fill(cache, tokens, offsets, ids):
    """Enter each token ``tokens[offsets[k]:offsets[k + 1]]`` -> ``ids[k]`` (the first of repeats)."""
    slots, key_offsets, key_arena = cache[0], cache[2], cache[3]
    for k in range(len(ids)):
        h = hash_bytes(tokens, offsets[k], offsets[k + 1])
        slot = find_slot(tokens, offsets[k], offsets[k + 1], h, slots, key_offsets, key_arena)
        if entry_at(slots, slot) < 0:
            _add(cache, tokens, offsets[k], offsets[k + 1], slot, h, ids, k, k + 1)
    cache[6][1] = cache[6][0]  # these entries stay when the cache is emptied


@njit(cache=True)
def _encode_new(data, start, end, slot, h, byte_ids, pairs, merged, slots, hashes, key_offsets,
                key_arena, id_offsets, id_arena, counters, out, n_out):
    """Write the ids of pre-token ``data[start:end]``, which is not in the cache (``slot``: where it
    goes, ``h``: its hash), at ``out[n_out:]`` and cache them; returns the new end of ``out``."""
    tables = (byte_ids, pairs, merged)
    if end - start <= SHORT:
        new_end = bpe_short(data, start, end, tables, out, n_out)
    else:
        new_end = bpe_long(data, start, end, tables, out, n_out)
    if end - start > MAX_CACHED:
        return new_end
    cache = (slots, hashes, key_offsets, key_arena, id_offsets, id_arena, counters)
    if not _add(cache, data, start, end, slot, h, out, n_out, new_end):
        counters[0] = counters[1]  # full: back to the vocab alone
        rehash_into(slots, hashes, counters[0])
        slot = find_slot(data, start, end, h, slots, key_offsets, key_arena)
        _add(cache, data, start, end, slot, h, out, n_out, new_end)
    return new_end


@njit(cache=True)
def _encode_into(data, starts, ends, separators, piece, at, classes, byte_ids, pairs, merged,
                 slots, hashes, key_offsets, key_arena, id_offsets, id_arena, counters, out, n_out):
    """Encode from byte ``at`` of piece ``piece`` on, until done or until ``out`` may be too short
    for the next pre-token; returns where it stopped and the end of ``out``. (Arrays come one by
    one, not in tuples: a loop that passes a tuple of arrays on runs at half the speed, as numba
    counts references to them at every step.)"""
    while piece < len(starts):
        end = ends[piece]
        while at < end:
            stop = token_end(data, at, end, classes)
            if n_out + stop - at + 1 > len(out):  # a pre-token has at most one id a byte
                return piece, at, n_out
            if stop - at == 1:
                out[n_out] = byte_ids[data[at]]
                n_out += 1
                at = stop
                continue
            h = hash_bytes(data, at, stop)
            slot = find_slot(data, at, stop, h, slots, key_offsets, key_arena)
            entry = entry_at(slots, slot)
            if entry < 0:
                n_out = _encode_new(data, at, stop, slot, h, byte_ids, pairs, merged, slots, hashes,
                                    key_offsets, key_arena, id_offsets, id_arena, counters, out, n_out)
            else:
                for k in range(id_offsets[entry], id_offsets[entry + 1]):
                    out[n_out] = id_arena[k]
                    n_out += 1
            at = stop
        if n_out + 1 > len(out):
            return piece, at, n_out
        if separators[piece] >= 0:
            out[n_out] = separators[piece]
            n_out += 1
        piece += 1
        if piece < len(starts):
            at = starts[piece]
    return piece, at, n_out


@njit(cache=True, exports=[(("u1[:]", "i8[:]", "i8[:]", "i8[:]", "u1[:]", _TABLE_TYPES, _CACHE_TYPES, "u4[:]!"),
                            ("u4[:]", "i8"))])
def _encode(data, starts, ends, separators, classes, tables, cache, out):
    """Ids of the pieces ``data[starts[k]:ends[k]]`` (valid UTF-8), each followed by id
    ``separators[k]`` where that is not -1: ``out``, or a longer array when it was too short,
    and their number."""
    byte_ids, pairs, merged = tables
    slots, hashes, key_offsets, key_arena, id_offsets, id_arena, counters = cache
    piece, at, n_out = 0, starts[0], 0
    while True:
        piece, at, n_out = _encode_into(data, starts, ends, separators, piece, at, classes, byte_ids, pairs,
                                        merged, slots, hashes, key_offsets, key_arena, id_offsets,
                                        id_arena, counters, out, n_out)
        if piece == len(starts):
            return out, n_out
        longer = np.empty(2 * len(out) + ends[piece] - at + 1, dtype=out.dtype)  # room for this piece
        longer[:n_out] = out[:n_out]
        out = longer


class CompiledEncoder:
    """Byte-level BPE encoding of text batches by compiled code, from the tokenizer's tables.

    ``pairs[rank]`` holds the ids merged by merge ``rank`` and ``merged[rank]`` the id it makes;
    ``merged_tokens`` maps the bytes of each token made by a merge to its id.
    """

    def __init__(self, byte_ids: Sequence[int], pairs: Sequence[tuple[int, int]], merged: Sequence[int],
                 merged_tokens: Mapping[bytes, int], *, cache_entries: int) -> None:
        pair_ids = np.array(pairs, dtype=np.int64).reshape(-1, 2)
        self.tables = (np.array(byte_ids, dtype=np.uint32), pair_table(pair_ids[:, 0], pair_ids[:, 1]),
                       np.array(merged, dtype=np.uint32))
        self.classes = code_point_classes()
        entries = len(merged_tokens) + cache_entries
        key_bytes = sum(map(len, merged_tokens)) + _KEY_BYTES * cache_entries
        self.cache = (new_slots(entries), np.empty(entries, dtype=np.uint64),
                      np.zeros(entries + 1, dtype=np.int64), np.empty(key_bytes, dtype=np.uint8),
                      np.zeros(entries + 1, dtype=np.int64), np.empty(entries * _IDS, dtype=np.uint32),
                      np.zeros(2, dtype=np.int64))
        tokens = list(merged_tokens)
        offsets = np.zeros(len(tokens) + 1, dtype=np.int64)
        np.cumsum([len(token) for token in tokens], out=offsets[1:])
        token_bytes = np.frombuffer(b"".join(tokens) or b"\0", dtype=np.uint8)
        _fill(self.cache, token_bytes, offsets, np.array(list(merged_tokens.values()), dtype=np.uint32))

    def encode(self, data: bytes, starts: Sequence[int], ends: Sequence[int], separators: Sequence[int]) -> np.ndarray:
        """Ids (uint32) of the pieces ``data[starts[k]:ends[k]]`` of valid UTF-8, each followed by id
        ``separators[k]`` unless that is -1; the pieces hold no special tokens."""
        # About 4 bytes a token in English, fewer in other scripts: it grows if needed.
        out = np.empty(len(data) // 3 + len(separators) + 16, dtype=np.uint32)
        array = np.frombuffer(data or b"\0", dtype=np.uint8)
        out, count = _encode(array, np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64),
                             np.array(separators, dtype=np.int64), self.classes, self.tables, self.cache, out)
        return out[:count] if count == len(out) else out[:count].copy()
