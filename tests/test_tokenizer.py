"""Tokenizer: ids equal tiktoken's GPT-2 encoding, exact round trips, lazy streaming, safe loading."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import tiktoken_like

from scratchlm.tokenizer import Tokenizer
from scratchlm.tokenizer.pretokenize import GPT2_REGEX
from scratchlm.tokenizer.serialization import save_pickle
from scratchlm.tokenizer.pretokenize import pretokenize
from scratchlm.tokenizer.python_encode import PythonEncoder

EOT = "<|endoftext|>"
FIXTURE_TEXTS = [
    "address.txt",
    "german.txt",
    "tinystories_sample.txt",
    "special_token_double_newlines_non_whitespace.txt",
    "special_token_trailing_newlines.txt",
    "corpus.en",
]
STRINGS = [
    "",
    "s",
    "🙃",
    "Héllò hôw <|endoftext|><|endoftext|> are ü? 🙃",
    "日本語のテキスト、句読点。",
    "tabs\tand\r\nCRLF  \u00a0non-breaking\u3000ideographic  \x1c\x1dseparators ",
    "it's they'll we've I'M 12345 3.14159 $$$ ...!!!",
    "\n\n\n   \n",
]
# Pieces that make streaming hard: fragments of special tokens, whitespace runs, non-ASCII.
PIECES = [EOT, "<|", "endof", "text|>", "<", " ", "  ", "\n", "\n\n", "\xa0", "a", "hello", " world",
          "'s", "é", "🙃", "12", ".", "!?"]


@pytest.fixture(scope="module")
def gpt2(fixtures_dir: Path) -> Tokenizer:
    return Tokenizer.from_files(fixtures_dir / "gpt2_vocab.json", fixtures_dir / "gpt2_merges.txt", [EOT])


@pytest.fixture(scope="module")
def reference(gpt2: Tokenizer) -> tiktoken.Encoding:
    """tiktoken's GPT-2 encoding, built from the fixture vocab since it cannot download."""
    return tiktoken_like(gpt2, "gpt2-fixture")


def _fixture_texts(fixtures_dir: Path) -> list[str]:
    return [(fixtures_dir / name).read_text(encoding="utf-8") for name in FIXTURE_TEXTS]


def test_matches_tiktoken_and_round_trips(gpt2, reference, fixtures_dir):
    for text in _fixture_texts(fixtures_dir) + STRINGS:
        ids = gpt2.encode(text)
        assert ids == reference.encode(text, allowed_special="all"), text[:80]
        assert gpt2.decode(ids) == text


def test_without_specials_the_marker_is_plain_text(fixtures_dir, reference):
    plain = Tokenizer.from_files(fixtures_dir / "gpt2_vocab.json", fixtures_dir / "gpt2_merges.txt")
    text = f"one{EOT}two"
    assert plain.encode(text) == reference.encode_ordinary(text)
    assert len(plain.encode(EOT)) > 1


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_matches_tiktoken(gpt2, reference, text):
    ids = gpt2.encode(text)
    assert ids == reference.encode(text, allowed_special="all")
    assert gpt2.decode(ids) == text


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_pretokenize_agrees_with_gpt2_regex(text):
    assert pretokenize(text) == GPT2_REGEX.findall(text)


@pytest.mark.parametrize("specials", [[EOT, EOT + EOT], [EOT + EOT, EOT]])
def test_overlapping_special_tokens(fixtures_dir, specials):
    tok = Tokenizer.from_files(fixtures_dir / "gpt2_vocab.json", fixtures_dir / "gpt2_merges.txt", specials)
    text = f"Hello, how {EOT}{EOT} are you?{EOT}"
    ids = tok.encode(text)
    assert ids.count(tok.token_id(EOT + EOT)) == 1
    assert ids.count(tok.token_id(EOT)) == 1
    assert tok.decode(ids) == text


def test_missing_specials_are_appended_and_token_id():
    tok = Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|new|>"])
    assert tok.token_id("<|new|>") == tok.token_id(b"<|new|>") == 256
    assert tok.vocab[256] == b"<|new|>"
    assert tok.encode("a<|new|>") == [97, 256]
    with pytest.raises(KeyError, match="absent"):
        tok.token_id("absent")


def test_merges_apply_in_creation_order():
    vocab = {i: bytes([i]) for i in range(256)} | {256: b"bc", 257: b"ab"}
    bc_first = Tokenizer(vocab, [(b"b", b"c"), (b"a", b"b")])
    ab_first = Tokenizer(vocab, [(b"a", b"b"), (b"b", b"c")])
    assert bc_first.encode("abc") == [ord("a"), 256]
    assert ab_first.encode("abc") == [257, ord("c")]


def test_decode_invalid_utf8_and_unknown_ids(gpt2):
    assert gpt2.decode([gpt2.token_id(b"\xff")]) == "\ufffd"
    emoji = gpt2.encode("🙃")
    assert len(emoji) > 1 and gpt2.decode(emoji[:1]) == "\ufffd"
    with pytest.raises(ValueError, match="unknown token id"):
        gpt2.decode([10**9])


def test_bad_vocab_or_merges_are_clear_errors():
    with pytest.raises(ValueError, match="single-byte"):
        Tokenizer({0: b"a"}, [])
    with pytest.raises(ValueError, match="missing from the vocab"):
        Tokenizer({i: bytes([i]) for i in range(256)}, [(b"a", b"b")])


@settings(max_examples=150, deadline=None)
@given(pieces=st.lists(st.sampled_from(PIECES), max_size=60), cuts=st.lists(st.integers(0, 400), max_size=8),
       batch=st.integers(1, 40))
def test_encode_iterable_equals_encode_for_any_chunking(gpt2_overlapping, pieces, cuts, batch):
    text = "".join(pieces)
    bounds = sorted({0, len(text), *(cut for cut in cuts if cut < len(text))})
    chunks = [text[start:end] for start, end in zip(bounds, bounds[1:])]
    assert list(gpt2_overlapping.encode_iterable(chunks, batch_chars=batch)) == gpt2_overlapping.encode(text)


@pytest.fixture(scope="module")
def gpt2_overlapping(fixtures_dir) -> Tokenizer:
    return Tokenizer.from_files(fixtures_dir / "gpt2_vocab.json", fixtures_dir / "gpt2_merges.txt",
                                [EOT, EOT + EOT])


def test_encode_iterable_on_a_file(gpt2, fixtures_dir):
    path = fixtures_dir / "tinystories_sample.txt"
    with open(path, encoding="utf-8") as handle:
        streamed = list(gpt2.encode_iterable(handle, batch_chars=256))
    assert streamed == gpt2.encode(path.read_text(encoding="utf-8"))


def test_encode_iterable_is_lazy(gpt2):
    consumed = 0

    def lines():
        nonlocal consumed
        for _ in range(10_000):
            consumed += 1
            yield "Once upon a time there was a tiny robot.\n"

    stream = gpt2.encode_iterable(lines(), batch_chars=1000)
    first = next(stream)
    assert first == gpt2.encode("Once")[0]
    assert consumed < 100  # ids come out long before the input ends


def test_cache_stays_bounded_and_correct(fixtures_dir, reference):
    tok = Tokenizer.from_files(fixtures_dir / "gpt2_vocab.json", fixtures_dir / "gpt2_merges.txt", [EOT],
                               cache_entries=50)
    text = (fixtures_dir / "corpus.en").read_text(encoding="utf-8")
    for _ in range(2):  # the cache fills up and goes back to the vocab alone many times
        assert tok.encode(text) == reference.encode(text, allowed_special="all")
        used, vocab_entries = tok._compiled.cache[-1]
        assert vocab_entries == len(tok.merges) and vocab_entries < used <= vocab_entries + 50


def test_pickle_files_and_pickling_the_tokenizer(gpt2, tmp_path):
    save_pickle(gpt2.vocab, tmp_path / "vocab.pkl")
    save_pickle(gpt2.merges, tmp_path / "merges.pkl")
    loaded = Tokenizer.from_files(tmp_path / "vocab.pkl", tmp_path / "merges.pkl", [EOT])
    text = "Héllo <|endoftext|> world"
    assert loaded.encode(text) == gpt2.encode(text)
    assert pickle.loads(pickle.dumps(gpt2)).encode(text) == gpt2.encode(text)


class _Exploit:
    """Unpickling this would create a file: what a malicious vocab would do to run code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "vocab.pkl").write_bytes(pickle.dumps({0: _Exploit(marker)}))
    save_pickle([], tmp_path / "merges.pkl")
    with pytest.raises(ValueError, match="vocab.pkl"):
        Tokenizer.from_files(tmp_path / "vocab.pkl", tmp_path / "merges.pkl")
    assert not marker.exists()


def test_pickles_of_the_wrong_shape_and_missing_files(tmp_path):
    save_pickle([1, 2, 3], tmp_path / "vocab.pkl")
    save_pickle([], tmp_path / "merges.pkl")
    with pytest.raises(ValueError, match="vocab.pkl: expected a dict"):
        Tokenizer.from_files(tmp_path / "vocab.pkl", tmp_path / "merges.pkl")
    save_pickle({i: bytes([i]) for i in range(256)}, tmp_path / "vocab.pkl")
    save_pickle([(b"a", 1)], tmp_path / "merges.pkl")
    with pytest.raises(ValueError, match="merges.pkl: expected a list"):
        Tokenizer.from_files(tmp_path / "vocab.pkl", tmp_path / "merges.pkl")
    with pytest.raises(FileNotFoundError, match="nope.pkl"):
        Tokenizer.from_files(tmp_path / "nope.pkl", tmp_path / "merges.pkl")


@pytest.mark.parametrize("name", ["tinystories-10k", "owt-32k"])
def test_merged_tokens_are_their_own_bpe(reference_tokenizers_dir, fixtures_dir, name):
    """Why a pre-token that is a whole merged token may skip the merge loop: the loop agrees."""
    tok = Tokenizer.from_files(reference_tokenizers_dir / f"{name}-vocab.json",
                               reference_tokenizers_dir / f"{name}-merges.txt", [EOT])
    python, checked = PythonEncoder(*tok._tables), 0
    for left, right in tok.merges:
        token = left + right
        try:
            text = token.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if pretokenize(text) == [text]:
            assert python.bpe(token) == [tok.token_id(token)], token
            checked += 1
    assert checked > len(tok.merges) // 2


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([b"=", b"-", b"a", b"b", b"ab", b"th", b"e", b" ", b"\xc3\xa9", b"0", b"\xff"]),
                max_size=300))
def test_long_and_short_merge_loops_agree(gpt2, parts):
    """The merge loops: Python and compiled, short (O(n^2)) and long (heap, rank buckets), on one pre-token."""
    from scratchlm.tokenizer.fast_bpe import SHORT, _bpe_by_rank, bpe_long, bpe_short
    from scratchlm.tokenizer.fast_encode import CompiledEncoder

    data = b"".join(parts)
    python = PythonEncoder(*gpt2._tables)
    ids = [python.byte_ids[byte] for byte in data]
    expected = python.merge_short(list(ids))
    assert python.merge_long(list(ids)) == expected
    tables = CompiledEncoder(*gpt2._tables, cache_entries=1).tables
    array, out = np.frombuffer(data, dtype=np.uint8), np.zeros(len(data) + 1, dtype=np.uint32)
    assert out[:bpe_long(array, 0, len(data), tables, out, 0)].tolist() == expected
    assert out[:_bpe_by_rank(array, 0, len(data), tables, out, 0)].tolist() == expected
    if len(data) <= SHORT:
        assert out[:bpe_short(array, 0, len(data), tables, out, 0)].tolist() == expected


def test_long_runs_encode_in_reasonable_time(gpt2, reference):
    text = "=" * 200_000 + " " + "x" * 100_000
    assert gpt2.encode(text) == reference.encode(text)


def test_a_token_under_two_ids_is_refused(tmp_path):
    """A vocab .pkl holding one token under two ids was accepted (the same defect in vocab.json is not)."""
    from scratchlm.tokenizer.serialization import load_pickle

    vocab = {i: bytes([i]) for i in range(256)} | {256: b"ab", 257: b"ab"}
    path = tmp_path / "vocab.pkl"
    with open(path, "wb") as handle:
        pickle.dump(vocab, handle)
    with pytest.raises(ValueError, match=r"vocab.pkl: token b'ab' has two ids, 256 and 257"):
        load_pickle(path)
    with pytest.raises(ValueError, match="has two ids"):
        Tokenizer(vocab, [(b"a", b"b")])
