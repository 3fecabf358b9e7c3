"""The reference BPE merge loop in pure Python: the semantics ``fast_merge`` (numba) must equal.

Each distinct pre-token becomes a *word*: a list of token ids weighted by its count. The loop keeps

* ``pair_counts``: adjacent pair -> summed count over all words,
* ``pair_words``: adjacent pair -> ids of the words that contain it (may hold stale ids
  and repeats, skipped when visited),
* a heap of ``(-count, reversed bytes key, pair)`` with lazy invalidation (an entry whose
  count went down is re-pushed when it reaches the top; the heap is rebuilt from the live
  counts once it has grown 4x, so stale entries cannot pile up),

so each merge only touches the words that contain the merged pair.
"""

from __future__ import annotations

import heapq
from typing import Any

from scratchlm.tokenizer.pretokenize import PretokenCounts

Pair = tuple[int, int]
# The heap is never rebuilt below this size (rebuilding a small heap buys nothing).
MIN_COMPACT = 1 << 16


def merge_in_python(counts: PretokenCounts, num_merges: int, progress: Any) -> list[tuple[int, int]]:
    """The reference merge loop: (left, right) ids of each merge, as ``fast_merge.train_merges``."""
    tokens: list[bytes] = [bytes([b]) for b in range(256)]
    merger = Merger(counts)
    pairs: list[tuple[int, int]] = []
    for _ in range(num_merges):
        pair = merger.best_pair()
        if pair is None:
            break  # every pre-token is a single token: nothing left to merge
        pairs.append(pair)
        tokens.append(tokens[pair[0]] + tokens[pair[1]])
        merger.merge(pair, len(tokens) - 1, tokens)
        progress.update(1)
    return pairs


def reversed_key(token: bytes) -> str:
    """A string that sorts in the *opposite* order of ``token``'s bytes.

    Each byte b becomes chr(255 - b) and a terminator chr(256) follows, so a proper prefix
    (smaller as bytes) sorts after its extensions.

    >>> reversed_key(b"b") < reversed_key(b"a") and reversed_key(b"ab") < reversed_key(b"a")
    True
    """
    return "".join(chr(255 - b) for b in token) + chr(256)


class Merger:
    """Words, the pair index and the lazy max-heap of pairs for the merge loop."""

    def __init__(self, counts: PretokenCounts) -> None:
        # Single-byte pre-tokens have no pairs and never change: leave them out.
        self.words: list[list[int]] = [list(token) for token in counts if len(token) > 1]
        self.counts: list[int] = [count for token, count in counts.items() if len(token) > 1]
        self.pair_counts: dict[Pair, int] = {}
        self.pair_words: dict[Pair, list[int]] = {}
        for index, (word, count) in enumerate(zip(self.words, self.counts)):
            for pair in zip(word, word[1:]):
                self.pair_counts[pair] = self.pair_counts.get(pair, 0) + count
                indices = self.pair_words.setdefault(pair, [])
                if not indices or indices[-1] != index:
                    indices.append(index)
        self.keys: list[str] = [reversed_key(bytes([b])) for b in range(256)]
        self.heap: list[tuple] = []
        self.compact_at = 0
        self._compact()

    def _compact(self) -> None:
        """Drop dead pairs (count 0) from the index and rebuild the heap from live counts.

        Stale heap entries and the index of dead pairs only cost memory, so this runs when
        three in four heap entries are stale: amortised O(1) per push.
        """
        self.pair_counts = {pair: count for pair, count in self.pair_counts.items() if count > 0}
        self.pair_words = {pair: words for pair, words in self.pair_words.items() if pair in self.pair_counts}
        self.heap = [self._entry(pair, count) for pair, count in self.pair_counts.items()]
        heapq.heapify(self.heap)
        self.compact_at = max(4 * len(self.heap), MIN_COMPACT)

    def _entry(self, pair: Pair, count: int) -> tuple:
        # Max count first; among equal counts the greater (bytes_a, bytes_b) first.
        return (-count, self.keys[pair[0]], self.keys[pair[1]], pair)

    def best_pair(self) -> Pair | None:
        """Pop the most frequent pair; stale heap entries are fixed up or dropped on the way."""
        heap, pair_counts = self.heap, self.pair_counts
        while heap:
            neg_count, _, _, pair = heap[0]
            actual = pair_counts.get(pair, 0)
            if actual == -neg_count:
                heapq.heappop(heap)
                return pair
            # Counts only ever *decrease* for existing pairs, so an outdated entry sits too
            # high: replace it by the current count (or drop it) and look again.
            if actual > 0:
                heapq.heapreplace(heap, self._entry(pair, actual))
            else:
                heapq.heappop(heap)
        return None

    def merge(self, pair: Pair, new_id: int, tokens: list[bytes]) -> None:
        """Replace ``pair`` by ``new_id`` in every word containing it, updating only the pairs
        next to each occurrence: ``x A B y`` loses (x,A), (B,y) and gains (x,N), (N,y).

        This is the hot loop of training, hence one function with everything in locals.
        """
        self.keys.append(reversed_key(tokens[new_id]))
        first, second = pair
        words, counts, pair_counts, pair_words = self.words, self.counts, self.pair_counts, self.pair_words
        gained: dict[Pair, int] = {}  # new pairs (all contain new_id) -> count
        for index in pair_words.pop(pair):
            word, count = words[index], counts[index]
            added: list[Pair] = []
            if word.count(first) == 1:  # the common case: one occurrence, merged in place
                i = word.index(first)
                if i + 1 == len(word) or word[i + 1] != second:
                    continue  # stale index entry: an earlier merge consumed the pair here
                if i:
                    pair_counts[(word[i - 1], first)] -= count
                    added.append((word[i - 1], new_id))
                if i + 2 < len(word):
                    pair_counts[(second, word[i + 2])] -= count
                    added.append((new_id, word[i + 2]))
                word[i:i + 2] = (new_id,)
            elif not _merge_all(word, pair, new_id, count, pair_counts, added):
                continue
            for new in added:
                gained[new] = gained.get(new, 0) + count
                # A word may be listed twice for one pair (A B x A B); the second visit finds
                # nothing to merge and is skipped above, which is cheaper than a set.
                pair_words.setdefault(new, []).append(index)
        # Deleted only now: with first == second (a a a) the loop decrements `pair` itself.
        del pair_counts[pair]
        keys, heap = self.keys, self.heap
        for new, count in gained.items():
            pair_counts[new] = count  # pairs with new_id did not exist before this merge
            heapq.heappush(heap, (-count, keys[new[0]], keys[new[1]], new))
        if len(heap) > self.compact_at:
            self._compact()


def _merge_all(word: list[int], pair: Pair, new_id: int, count: int, pair_counts: dict[Pair, int],
               added: list[Pair]) -> bool:
    """Merge every non-overlapping ``pair`` in ``word`` in place, left to right; False if none.

    Lost neighbour pairs are decremented in ``pair_counts``; gained ones go to ``added``.
    """
    first, second = pair
    merged: list[int] = []
    n, done, i = len(word), 0, -1  # word[done:] is not copied to `merged` yet
    for _ in range(word.count(first)):  # visit every `first` once
        i = word.index(first, i + 1)
        if i < done or i + 1 == n or word[i + 1] != second:
            continue  # (i < done: the right half of an (A, A) just merged)
        if done and i > done:  # the previous occurrence's right neighbour is a plain token
            added.append((new_id, word[done]))
        merged.extend(word[done:i])
        if i:
            if i != done:  # back to back (A B A B): (B, A) went as the previous right pair
                pair_counts[(word[i - 1], first)] -= count
            added.append((merged[-1], new_id))
        if i + 2 < n:
            pair_counts[(second, word[i + 2])] -= count
        merged.append(new_id)
        done = i + 2
    if not done:
        return False
    if done < n:
        added.append((new_id, word[done]))
        merged.extend(word[done:])
    word[:] = merged
    return True
