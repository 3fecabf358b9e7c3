"""BPE training: the CS336 reference merges, a naive trainer as oracle, and bad input."""

from __future__ import annotations

import json
import logging
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchlm.tokenizer import python_merge, train_bpe
from scratchlm.tokenizer.pretokenize import count_pretokens
from scratchlm.tokenizer.serialization import load_gpt2_format, load_pickle
from scratchlm.tokenizer.shards import num_planned_shards, plan_shards, read_shards, table_counts, write_planned_shard
from scratchlm.tokenizer.bpe import count_file, train_from_counts, train_from_shards
from scratchlm.tokenizer.python_merge import reversed_key

EOT = "<|endoftext|>"


def naive_train(text: str, vocab_size: int, special_tokens: list[str]) -> list[tuple[bytes, bytes]]:
    """The textbook algorithm: recount every pair after every merge (slow, obviously right)."""
    words = {tuple(bytes([b]) for b in token.encode()): count
             for token, count in count_pretokens(text, special_tokens).items()}
    merges = []
    while len(merges) < vocab_size - 256 - len(special_tokens):
        pairs: dict[tuple[bytes, bytes], int] = {}
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] = pairs.get(pair, 0) + count
        if not pairs:
            break
        best = max(pairs, key=lambda pair: (pairs[pair], pair))
        merges.append(best)
        merged_words: dict[tuple[bytes, ...], int] = {}
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if word[i:i + 2] == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged_words[tuple(out)] = merged_words.get(tuple(out), 0) + count
        words = merged_words
    return merges


def test_reproduces_cs336_reference(fixtures_dir):
    vocab, merges = train_bpe(fixtures_dir / "corpus.en", 500, [EOT])
    ref_vocab, ref_merges = load_gpt2_format(fixtures_dir / "train-bpe-reference-vocab.json",
                                             fixtures_dir / "train-bpe-reference-merges.txt", special_tokens=[EOT])
    assert merges == ref_merges
    assert set(vocab.values()) == set(ref_vocab.values())
    assert set(vocab) == set(range(500))


def test_vocab_layout(fixtures_dir):
    specials = [EOT, "<|pad|>"]
    vocab, merges = train_bpe(fixtures_dir / "tinystories_sample.txt", 300, specials)
    assert [vocab[0], vocab[1]] == [s.encode() for s in specials]
    assert all(vocab[2 + b] == bytes([b]) for b in range(256))
    assert [vocab[258 + i] for i in range(len(merges))] == [a + b for a, b in merges]
    assert len(vocab) == 300 and len(set(vocab.values())) == 300
    # Special tokens delimit documents: no learned token reaches into one.
    assert not any(b"<|" in token for token in list(vocab.values())[258:])


_alphabet = st.sampled_from(["a", "b", "c", " a", " b", "ab", "\n", " ", "é", "1", EOT])


ENGINES = ["python", "numba"]


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=150, deadline=None)
@given(pieces=st.lists(_alphabet, min_size=1, max_size=60), extra=st.integers(0, 40))
def test_matches_naive_trainer(engine, pieces, extra):
    # Tiny alphabets make many ties, which must go to the greater pair of bytes.
    text = "".join(pieces)
    counts = {token.encode(): count for token, count in count_pretokens(text, [EOT]).items()}
    vocab, merges = train_from_counts(counts, 257 + extra, [EOT], engine=engine)
    assert merges == naive_train(text, 257 + extra, [EOT])
    assert len(vocab) == 257 + len(merges)


@settings(max_examples=60, deadline=None)
@given(words=st.dictionaries(st.binary(min_size=2, max_size=12).map(lambda b: bytes(x % 4 + 97 for x in b)),
                             st.integers(1, 50), min_size=1, max_size=40),
       extra=st.integers(1, 60))
def test_compiled_loop_equals_the_python_one(words, extra):
    """Ties and repeated pairs (a a a a, A B A B) on a 4-letter alphabet: the engines agree."""
    assert (train_from_counts(words, 256 + extra, [], engine="numba")
            == train_from_counts(words, 256 + extra, [], engine="python"))


def test_compiled_loop_equals_the_python_one_on_a_large_random_case():
    rng = random.Random(7)
    letters = "etaoinshrdlucmfwyp"
    counts = {}
    for _ in range(20_000):  # a Zipf-like vocabulary of words, with and without a leading space
        word = (" " if rng.random() < 0.7 else "") + "".join(rng.choice(letters[:rng.randint(3, len(letters))])
                                                                for _ in range(rng.randint(1, 12)))
        counts[word.encode()] = counts.get(word.encode(), 0) + int(1000 / (1 + rng.random() * 999))
    numba = train_from_counts(counts, 256 + 3000, [], engine="numba")
    assert numba == train_from_counts(counts, 256 + 3000, [], engine="python")
    assert len(numba[1]) == 3000


def test_heap_rebuilds_keep_the_merges(fixtures_dir, monkeypatch):
    # Rebuild the heap whenever it grows 4x, however small: the merges must not change.
    monkeypatch.setattr(python_merge, "MIN_COMPACT", 1)
    chunk = count_file(fixtures_dir / "corpus.en", [EOT], num_workers=1)
    _, merges = train_from_counts(chunk.counts, 500, [EOT], engine="python")
    _, ref_merges = load_gpt2_format(fixtures_dir / "train-bpe-reference-vocab.json",
                                     fixtures_dir / "train-bpe-reference-merges.txt", special_tokens=[EOT])
    assert merges == ref_merges


@pytest.mark.parametrize("engine", ENGINES)
def test_repeated_pairs_inside_a_word(engine):
    # (a,a) is merged left to right: aaaaa -> aa aa a (x3), aaa -> aa a (x1); then (aa,a)
    # occurs 4 times and beats (aa,aa) with 3; then aa+aaa.
    _, merges = train_from_counts({b"aaaaa": 3, b"aaa": 1}, 256 + 3, [], engine=engine)
    assert merges == [(b"a", b"a"), (b"aa", b"a"), (b"aa", b"aaa")]
    assert naive_train(EOT.join(["aaaaa"] * 3 + ["aaa"]), 259 + 1, [EOT]) == merges


@pytest.mark.parametrize("engine", ENGINES)
def test_ties_compare_bytes_not_ids(engine):
    # (b"b", b"a") > (b"a", b"z") as bytes; both pairs occur twice.
    _, merges = train_from_counts({b"ba": 2, b"az": 2}, 257, [], engine=engine)
    assert merges == [(b"b", b"a")]
    assert sorted([b"ab", b"a", b"b", b"\xff"], key=reversed_key) == [b"\xff", b"b", b"ab", b"a"]


def test_stops_when_nothing_left_to_merge(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("ab ab")
    vocab, merges = train_bpe(path, 1000, [EOT])
    assert merges == [(b"a", b"b"), (b" ", b"ab")]
    assert len(vocab) == 257 + 2


def test_parallel_counting_matches_serial(tmp_path):
    rng = random.Random(0)
    words = ["the", "cat", "sat", "on", "mat", "dog", "ran", "!", "42", "\n"]
    docs = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 40))) for _ in range(300)]
    path = tmp_path / "docs.txt"
    path.write_text(EOT.join(docs))
    serial = count_file(path, [EOT], num_workers=1)
    parallel = count_file(path, [EOT], num_workers=2, min_parallel_bytes=0)
    assert parallel.counts == serial.counts
    assert parallel.num_bytes == serial.num_bytes == path.stat().st_size


def test_invalid_utf8_is_replaced_and_counted(tmp_path, caplog):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"hello \xff\xfe world" + EOT.encode() + b"hello \xc3")
    assert count_file(path, [EOT]).invalid_utf8 == 3
    with caplog.at_level(logging.WARNING):
        vocab, merges = train_bpe(path, 270, [EOT])
    assert "3 invalid UTF-8" in caplog.text
    assert "\ufffd".encode() in vocab.values() or (b"\xef", b"\xbf") in merges


def test_empty_file_fails(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.txt.*empty"):
        train_bpe(path, 300, [EOT])


def test_missing_file_fails(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        train_bpe(tmp_path / "nope.txt", 300, [EOT])


def test_vocab_too_small_fails(fixtures_dir):
    with pytest.raises(ValueError, match="vocab_size 256 is too small"):
        train_bpe(fixtures_dir / "corpus.en", 256, [EOT])


def test_shards_map_reduce_equals_direct_training(fixtures_dir, tmp_path):
    source = fixtures_dir / "tinystories_sample.txt"
    plan = plan_shards(source, tmp_path / "plan.json", special_tokens=[EOT], shard_mb=0.001)
    shards = [tmp_path / f"{i}.parquet" for i in range(num_planned_shards(tmp_path / "plan.json"))]
    assert len(shards) == 4 and plan["boundaries"][-1] == source.stat().st_size
    for i, shard in enumerate(shards):
        write_planned_shard(tmp_path / "plan.json", i, shard)
    out = {name: tmp_path / name for name in ("v.pkl", "m.pkl", "v.json", "m.txt", "summary.json")}
    summary = train_from_shards(shards, vocab_size=300, special_tokens=[EOT], vocab_pkl=out["v.pkl"],
                                merges_pkl=out["m.pkl"], vocab_json=out["v.json"], merges_txt=out["m.txt"],
                                summary_json=out["summary.json"])
    vocab, merges = train_bpe(source, 300, [EOT])
    assert load_pickle(out["v.pkl"]) == vocab and load_pickle(out["m.pkl"]) == merges
    assert load_gpt2_format(out["v.json"], out["m.txt"], special_tokens=[EOT]) == (vocab, merges)
    assert json.loads(out["summary.json"].read_text()) == summary
    assert summary["vocab_size"] == 300 and summary["input_bytes"] == source.stat().st_size
    assert summary["shards"] == 4 and len(summary["longest_tokens"]) == 10
    assert set(summary["timing_s"]) == {"pretokenize_total", "reduce_shards", "merge"}
    # Folding shards into the running sum, whenever it happens, gives the same counts as counting at once.
    direct = count_file(source, [EOT], num_workers=1)
    for min_fold_rows in (1, 100, 1 << 20):  # fold after every shard, sometimes, once at the end
        table, reduced = read_shards(shards, min_fold_rows=min_fold_rows)
        assert table_counts(table) == direct.counts and reduced.num_bytes == direct.num_bytes


def test_shard_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.txt.*empty"):
        plan_shards(empty, tmp_path / "plan.json", special_tokens=[EOT], shard_mb=1)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        plan_shards(tmp_path / "missing.txt", tmp_path / "plan.json", special_tokens=[EOT], shard_mb=1)
    not_a_shard = tmp_path / "x.parquet"
    pq.write_table(pa.table({"token": [b"a"], "count": [1]}), not_a_shard)
    with pytest.raises(ValueError, match="x.parquet.*not a scratchlm pre-token shard"):
        read_shards([not_a_shard])
