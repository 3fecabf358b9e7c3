"""The compiled encoder and decoder: ids equal the Python reference's and tiktoken's on any text,
with any of the tokenizers users load; pathological inputs; bounded cache; decoding."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiktoken_like
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchlm.tokenizer import Tokenizer

EOT = "<|endoftext|>"
# Every kind of character the pre-tokenizer tells apart, from every plane: letters of several
# scripts, combining marks, digits and numbers of other scripts, each kind of whitespace,
# punctuation, controls, symbols and emoji, private use, unassigned code points, and pieces of
# the special token.
_CHARS = st.characters(codec="utf-8")
_PIECES = st.sampled_from([EOT, "<|", "endoftext", "|>", " ", "  ", "\n", "\r\n", "\t", "\xa0", "\u2028", "\u3000",
                           "'s", "'ll", "' ", "٣٤", "Ⅻ", "½", "e\u0301", "👩\u200d💻", "\U000e0001", "\x00",
                           "\U0010fffd", "\U00030000", "000", " x", "=" * 70])
_TEXT = st.lists(st.one_of(st.text(_CHARS, max_size=12), _PIECES), max_size=40).map("".join)


@pytest.fixture(scope="module", params=["gpt2", "owt-32k", "tinystories-10k"])
def pair(request, fixtures_dir, reference_tokenizers_dir) -> tuple[Tokenizer, object]:
    """Each tokenizer users load (GPT-2's own files, and the two reference tokenizers), with tiktoken over it."""
    if request.param == "gpt2":
        files = fixtures_dir / "gpt2_vocab.json", fixtures_dir / "gpt2_merges.txt"
    else:
        files = (reference_tokenizers_dir / f"{request.param}-vocab.json",
                 reference_tokenizers_dir / f"{request.param}-merges.txt")
    tokenizer = Tokenizer.from_files(*files, [EOT])
    return tokenizer, tiktoken_like(tokenizer, request.param)


@settings(max_examples=150, deadline=None)
@given(text=_TEXT)
def test_compiled_equals_python_and_tiktoken(pair, text):
    tokenizer, reference = pair
    ids = tokenizer.encode(text)
    assert ids == tokenizer.encode_in_python(text)
    assert ids == reference.encode(text, allowed_special="all")
    assert tokenizer.decode(ids) == text


def test_fixture_corpora(pair, fixtures_dir):
    tokenizer, reference = pair
    for name in ("corpus.en", "tinystories_sample.txt", "german.txt", "address.txt",
                 "special_token_double_newlines_non_whitespace.txt", "special_token_trailing_newlines.txt"):
        text = (fixtures_dir / name).read_text(encoding="utf-8")
        assert tokenizer.encode_array(text).tolist() == reference.encode(text, allowed_special="all"), name


@pytest.mark.parametrize("text", [
    "a" * 300_000,                      # one letter: a single pre-token that merges into itself
    " " * 300_000 + "x",                # spaces
    "🙃" * 100_000,                     # one emoji (4 bytes, its own class run)
    "7" * 300_000,                      # digits
    "".join(chr(0x21 + i % 15) for i in range(300_000)),  # symbols without a separator
    "x" * 5 + "é" * 100_000 + "\u0301" * 50_000,           # letters then combining marks
])
def test_pathological_inputs_are_exact(pair, text):
    """One pre-token of hundreds of KB goes through the O(n log n) loop (not cached), exactly."""
    tokenizer, reference = pair
    assert tokenizer.encode_array(text).tolist() == reference.encode(text, allowed_special="all")


def test_a_merge_list_that_builds_on_later_merges_is_exact_in_long_pre_tokens():
    """Rank 0 joins "ab" and "c", but "ab" is made by rank 1: a merge then makes a pair of lower rank,
    which the rank buckets cannot order; the long loop falls back to its heap."""
    vocab = {i: bytes([i]) for i in range(256)} | {256: b"abc", 257: b"ab"}
    tokenizer = Tokenizer(vocab, [(b"ab", b"c"), (b"a", b"b")])
    for text in ("abc" * 30, "abc" * 3000, "ab" * 2500 + "c"):  # the short loop, and the long one
        assert tokenizer.encode(text) == tokenizer.encode_in_python(text), len(text)
    assert set(tokenizer.encode("abc" * 3000)) == {256}


def test_lone_surrogates_become_replacement_characters(pair):
    tokenizer, reference = pair
    text = "a\ud800b \udfff"
    assert tokenizer.encode(text) == reference.encode(text) == tokenizer.encode("a\ufffdb \ufffd")


def test_cache_goes_back_to_the_vocab_when_full(fixtures_dir):
    text = (fixtures_dir / "corpus.en").read_text(encoding="utf-8")
    full = Tokenizer.from_files(fixtures_dir / "gpt2_vocab.json", fixtures_dir / "gpt2_merges.txt", [EOT])
    small = Tokenizer.from_files(fixtures_dir / "gpt2_vocab.json", fixtures_dir / "gpt2_merges.txt", [EOT],
                                 cache_entries=8)
    assert small.encode(text) == full.encode(text)
    used, vocab_entries = small._compiled.cache[-1]
    assert vocab_entries < used <= vocab_entries + 8


def test_empty_texts_and_specials_only(pair):
    tokenizer, reference = pair
    for text in ("", EOT, EOT * 3, f"{EOT}x{EOT}", " "):
        assert tokenizer.encode(text) == reference.encode(text, allowed_special="all"), repr(text)
    assert tokenizer.encode_array("").dtype == np.uint32


def test_compiled_decode_equals_python_decode(pair, fixtures_dir):
    tokenizer, reference = pair
    text = (fixtures_dir / "corpus.en").read_text(encoding="utf-8")
    ids = tokenizer.encode_array(text)
    assert len(ids) > 1 << 14  # long enough for the compiled path from a list too
    assert tokenizer.decode(ids) == tokenizer.decode(ids.tolist()) == text
    for dtype in (np.uint16, np.int32, np.int64, np.uint64):  # .npy ids, and arrays of any integer type
        assert tokenizer.decode(ids.astype(dtype)) == text
    short = ids[:100].tolist()
    assert tokenizer.decode(short) == reference.decode(short)
    broken = [tokenizer.token_id(b"\xff")] * 3 + ids[:5].tolist()
    assert tokenizer.decode(np.array(broken)) == tokenizer.decode(broken) == "\ufffd" * 3 + text[:len(
        tokenizer.decode(ids[:5]))]


@pytest.mark.parametrize("bad", [-1, 10**9, 2**40])
def test_unknown_ids_are_named_by_both_decoders(pair, bad):
    tokenizer, _ = pair
    for ids in ([1, 2, bad], [1, 2, bad] * (1 << 13), np.array([1, 2, bad] * (1 << 13))):  # Python, list, array
        with pytest.raises(ValueError, match=f"unknown token id {bad}"):
            tokenizer.decode(ids)


# Valid UTF-8 of every length with stray bytes between: continuation bytes, overlong leads
# (C0, E0 80), surrogates (ED A0), past U+10FFFF (F4 90, F5), and truncated sequences.
_BYTES = st.lists(st.one_of(st.text(_CHARS, max_size=6).map(str.encode), st.binary(max_size=3),
                            st.sampled_from([b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                                             b"\xf5", b"\xe2\x82", b"\xf0\x9f\x99"])), max_size=12).map(b"".join)


@settings(max_examples=500, deadline=None)
@given(data=_BYTES)
def test_utf8_validation_follows_pythons_decoder(data):
    from scratchlm.tokenizer.scan import first_invalid_utf8

    try:
        data.decode("utf-8")
        expected = -1
    except UnicodeDecodeError as error:
        expected = error.start
    assert first_invalid_utf8(np.frombuffer(data, dtype=np.uint8)) == expected


@settings(max_examples=150, deadline=None)
@given(data=_BYTES, special=st.booleans())
def test_encoding_bytes_equals_encoding_their_decoded_text(pair, data, special):
    tokenizer, _ = pair
    if special:
        data = data + EOT.encode() + data
    assert tokenizer.encode_utf8(data).tolist() == tokenizer.encode(data.decode("utf-8", errors="replace"))


def test_cached_machine_code_is_dropped_when_any_compiled_source_changes(tmp_path):
    """numba checks only a function's own file; a change to a module it inlines must drop the cache too."""
    from scratchlm.tokenizer import compiled

    stale = [tmp_path / "fast_encode._encode-120.py311.nbi", tmp_path / "scan.token_end-80.py311.1.nbc"]
    kept = [tmp_path / "other_module.f-1.py311.nbi", tmp_path / "code_point_classes.regex-1.npy"]
    for path in stale + kept:
        path.write_bytes(b"x")
    assert compiled.drop_stale_cache(tmp_path)
    assert [path.exists() for path in stale + kept] == [False, False, True, True]
    stale[0].write_bytes(b"x")  # built from the current sources: kept
    assert not compiled.drop_stale_cache(tmp_path) and stale[0].exists()
    (tmp_path / "compiled-sources.sha256").write_text("an older fingerprint")
    assert compiled.drop_stale_cache(tmp_path) and not stale[0].exists()
