"""The reference encoder in pure Python: the semantics ``fast_encode`` (numba) must equal.

Text is cut into GPT-2 pre-tokens by the regex; a pre-token that is a token made by a merge
becomes that token (as in tiktoken), any other is merged pair by pair: the pair whose merge
came first in training, the leftmost of equals, until no pair has a merge.
"""

from __future__ import annotations

import heapq
from itertools import repeat
from typing import Mapping, Sequence

from scratchlm.tokenizer.pretokenize import pretokenize

Pair = tuple[int, int]
_NO_MERGE = 1 << 62  # rank of a pair that has no merge
_LONG_PRETOKEN = 128  # bytes from which the O(n log n) loop is used


class PythonEncoder:
    """Encoding with the merge tables as Python dicts and lists (see ``CompiledEncoder``)."""

    def __init__(self, byte_ids: Sequence[int], pairs: Sequence[Pair], merged: Sequence[int],
                 merged_tokens: Mapping[bytes, int]) -> None:
        self.byte_ids, self.merged, self.merged_tokens = list(byte_ids), list(merged), merged_tokens
        self.ranks: dict[Pair, int] = {}
        for rank, pair in enumerate(pairs):
            self.ranks.setdefault(pair, rank)

    def encode(self, texts: Sequence[str], separators: Sequence[int] = ()) -> list[int]:
        """Ids of ``texts[0]``, id ``separators[0]``, ``texts[1]``, ... (one separator fewer than texts;
        the texts hold no special tokens and no lone surrogates)."""
        ids: list[int] = []
        for index, text in enumerate(texts):
            for pretoken in pretokenize(text):
                data = pretoken.encode("utf-8")
                whole = self.merged_tokens.get(data)
                ids.extend((whole,) if whole is not None else self.bpe(data))
            ids.extend(separators[index:index + 1])
        return ids

    def bpe(self, data: bytes) -> list[int]:
        """Ids of one pre-token by the merges alone."""
        ids = list(map(self.byte_ids.__getitem__, data))
        return self.merge_long(ids) if len(ids) > _LONG_PRETOKEN else self.merge_short(ids)

    def merge_short(self, ids: list[int]) -> list[int]:
        """The merge loop with every step in C: O(n^2), fastest for the usual short pre-token."""
        rank_of = self.ranks.get
        # pair_ranks[i] is the rank of (ids[i], ids[i + 1]); a merge only changes its neighbours.
        pair_ranks = list(map(rank_of, zip(ids, ids[1:]), repeat(_NO_MERGE)))
        while pair_ranks:
            best = min(pair_ranks)
            if best == _NO_MERGE:
                break
            at = pair_ranks.index(best)
            new_id = ids[at] = self.merged[best]
            del ids[at + 1], pair_ranks[at]
            if at < len(pair_ranks):
                pair_ranks[at] = rank_of((new_id, ids[at + 1]), _NO_MERGE)
            if at:
                pair_ranks[at - 1] = rank_of((ids[at - 1], new_id), _NO_MERGE)
        return ids

    def merge_long(self, ids: list[int]) -> list[int]:
        """The same merges in O(n log n), for long pre-tokens (symbol runs, base64 blobs): a heap of
        (rank, position) over a linked list; entries whose pair has changed since are skipped."""
        rank_of, end = self.ranks.get, len(ids)
        after, before = list(range(1, end + 1)), list(range(-1, end - 1))
        heap = [(rank, at) for at, pair in enumerate(zip(ids, ids[1:])) if (rank := rank_of(pair)) is not None]
        heapq.heapify(heap)
        while heap:
            rank, at = heapq.heappop(heap)
            right = after[at]
            if ids[at] is None or right == end or rank_of((ids[at], ids[right])) != rank:
                continue  # stale: a neighbouring merge came first
            ids[at], ids[right] = self.merged[rank], None
            after[at] = after[right]
            if after[at] != end:
                before[after[at]] = at
                if (new_rank := rank_of((ids[at], ids[after[at]]))) is not None:
                    heapq.heappush(heap, (new_rank, at))
            if before[at] >= 0 and (new_rank := rank_of((ids[before[at]], ids[at]))) is not None:
                heapq.heappush(heap, (new_rank, before[at]))
        return [token_id for token_id in ids if token_id is not None]
