"""Pre-tokenization: special-token splitting, chunk boundaries, streaming blocks, counting."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchlm.tokenizer.pretokenize import (
    GPT2_REGEX,
    count_pretokens,
    find_chunk_boundaries,
    iter_document_blocks,
    split_on_special_tokens,
    tally_file_range,
)
from scratchlm.tokenizer.utf8 import decode_utf8, valid_utf8

EOT = "<|endoftext|>"


def test_gpt2_regex_pieces():
    assert GPT2_REGEX.findall("Hello, world! It's 2024  ok\n") == [
        "Hello", ",", " world", "!", " It", "'s", " 2024", " ", " ok", "\n"]


def test_split_prefers_longest_special():
    pieces = list(split_on_special_tokens(f"a{EOT}{EOT}b{EOT}", [EOT, EOT + EOT]))
    assert pieces == [("a", False), (EOT + EOT, True), ("b", False), (EOT, True)]


def test_count_pretokens_skips_specials_and_never_crosses_them():
    counts = count_pretokens(f"the cat{EOT} the{EOT}cat", [EOT])
    assert counts == {"the": 1, " cat": 1, " the": 1, "cat": 1}


def _corpus(tmp_path, docs: int = 200):
    text = EOT.join(f"document {i} says hello{' again' * (i % 7)}\n" for i in range(docs))
    path = tmp_path / "corpus.txt"
    path.write_text(text)
    return path, text


def test_chunk_boundaries_start_at_special_tokens(tmp_path):
    path, _ = _corpus(tmp_path)
    data = path.read_bytes()
    # A tiny probe makes the search step across a token that straddles two probes.
    bounds = find_chunk_boundaries(path, 7, EOT.encode(), probe_size=5)
    assert bounds[0] == 0 and bounds[-1] == len(data) and bounds == sorted(set(bounds))
    assert len(bounds) == 8
    assert all(data.startswith(EOT.encode(), cut) for cut in bounds[1:-1])


def test_chunk_boundaries_without_documents(tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("no special token here")
    assert find_chunk_boundaries(path, 4, EOT.encode()) == [0, path.stat().st_size]
    with pytest.raises(ValueError):
        find_chunk_boundaries(path, 0, EOT.encode())


def test_document_blocks_cover_the_range_and_end_before_specials(tmp_path):
    path, _ = _corpus(tmp_path)
    data = path.read_bytes()
    start, end = 100, len(data) - 50
    blocks = list(iter_document_blocks(path, start, end, EOT.encode(), block_size=64))
    assert b"".join(blocks) == data[start:end]
    assert len(blocks) > 10
    # Each block starts a document, or continues a long one after a space (a safe cut).
    assert all(block.startswith(EOT.encode()) or (block[:1].isspace() and not previous[-1:].isspace())
               for previous, block in zip(blocks, blocks[1:]))


def test_a_long_document_is_cut_where_pretokens_always_split(tmp_path):
    """A corpus without separators once made one block of the whole file (1 GB peak for 50 MiB)."""
    path = tmp_path / "long.txt"
    text = f"short{EOT}" + "long words, déjà vu 42 " * 500 + f"{EOT}tail"
    path.write_text(text)
    blocks = list(iter_document_blocks(path, 0, path.stat().st_size, EOT.encode(), block_size=64))
    assert b"".join(blocks) == text.encode() and max(map(len, blocks)) < 3 * 64
    pieces = [pretoken for block in blocks for pretoken in count_in_order(block.decode(), [EOT])]
    assert pieces == count_in_order(text, [EOT])


_TEXT = st.lists(st.sampled_from(list("ab1 \t\n'.,é€\u3000\xa0\x85") + ["'s", "<|", "|>", "<|x y|>", EOT]),
                 max_size=30).map("".join)


@settings(max_examples=400, deadline=None)
@given(_TEXT, st.sampled_from([[], ["<|x y|>"], [EOT]]))
def test_safe_cuts_never_change_pretokens(text, specials):
    """The property behind cutting long documents: pre-tokens of the whole = those of the pieces."""
    from scratchlm.tokenizer.pretokenize import last_safe_cut

    data = text.encode()
    for end in range(len(data) + 1):
        cut = last_safe_cut(data[:end], [s.encode() for s in specials])
        if cut:
            left, right = data[:cut].decode(), data[cut:].decode()
            assert count_in_order(left, specials) + count_in_order(right, specials) == count_in_order(text, specials)


def count_in_order(text: str, specials: list[str]) -> list[str]:
    return [token for piece, special in split_on_special_tokens(text, specials)
            for token in ([piece] if special else GPT2_REGEX.findall(piece))]


def test_tally_file_range_streams_like_whole_text(tmp_path):
    from scratchlm.tokenizer.shards import arrays_table, table_counts

    path, text = _corpus(tmp_path)
    tally, chunk = tally_file_range(path, 0, path.stat().st_size, [EOT], block_size=100)
    expected = {token.encode(): count for token, count in count_pretokens(text, [EOT]).items()}
    assert table_counts(arrays_table(tally.arrays())) == expected
    assert chunk.num_bytes == path.stat().st_size and chunk.invalid_utf8 == 0


def test_decode_utf8_counts_replacements():
    assert decode_utf8("héllo \ufffd".encode()) == ("héllo \ufffd", 0)  # a real U+FFFD is not an error
    for data in (b"a\xffb\xc3", "héllo \ufffd".encode(), b"plain"):  # and valid_utf8 agrees with it
        text, invalid = decode_utf8(data)
        assert valid_utf8(data) == (text.encode(), invalid)
    assert decode_utf8(b"a\xffb\xc3") == ("a\ufffdb\ufffd", 2)


def _decode_one_error_at_a_time(data: bytes) -> tuple[str, int]:
    """The reference semantics: each invalid sequence the decoder reports becomes one U+FFFD."""
    parts, invalid, start = [], 0, 0
    while True:
        try:
            parts.append(data[start:].decode("utf-8"))
            return "".join(parts), invalid
        except UnicodeDecodeError as error:
            parts += [data[start:start + error.start].decode("utf-8"), "\ufffd"]
            invalid, start = invalid + 1, start + error.end


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=6), st.sampled_from([b"\xef\xbf\xbd", b"\xe2", "é€😀".encode()])),
                max_size=20).map(b"".join))
def test_decode_utf8_equals_one_error_at_a_time(data):
    assert decode_utf8(data) == _decode_one_error_at_a_time(data)


def test_decode_utf8_is_linear_in_errors():
    """1 MiB of Latin-1 (an error every other byte) took 5 s when each error re-sliced the rest."""
    import time

    data = "café déjà vu ".encode("latin-1") * (1 << 16)
    started = time.perf_counter()
    text, invalid = decode_utf8(data)
    assert invalid == 3 * (1 << 16) and len(text) == len(data)
    assert time.perf_counter() - started < 1.0  # linear: ~10 ms here


# Each class of the GPT-2 pattern, ASCII and not: letters (Latin, Greek, CJK), numbers (digits,
# Arabic-Indic, fractions, Roman numerals), whitespace (tab, NBSP, NEL, ideographic space, line
# separator), others (punctuation, controls, a combining accent, emoji outside the BMP).
_TEXT_PIECE = st.lists(st.sampled_from(list("ab1 \t\n\r'.,!_\x00\x1c\x7fAZéΩ中٣½Ⅻ\xa0\x85\u3000\u2028\u0301€😀")
                                       + ["'s", "'ll", "'ve", "'re", "  ", "9"]), max_size=50).map("".join)


@settings(max_examples=500, deadline=None)
@given(st.lists(_TEXT_PIECE, max_size=4))
def test_compiled_counter_equals_the_regex(pieces):
    """fast_count's scanner gives GPT2_REGEX's pre-tokens, over any number of added pieces."""
    from scratchlm.tokenizer.fast_count import PretokenCounter

    counter = PretokenCounter(capacity=4)  # small: the table and the arena grow
    counter.add([piece.encode() for piece in pieces[:2]])  # a batch of pieces in one call, then one at a time
    for piece in pieces[2:]:
        counter.add([piece.encode()])
    expected = Counter(token.encode() for piece in pieces for token in GPT2_REGEX.findall(piece))
    keys, offsets, counts = counter.arrays()
    assert {keys[a:b].tobytes(): n for a, b, n in zip(offsets, offsets[1:], counts.tolist())} == dict(expected)


def test_code_point_classes_follow_the_regex_module():
    from scratchlm.tokenizer.scan import LETTER, NUMBER, OTHER, SPACE, code_point_classes

    classes = code_point_classes()
    for char, kind in {"a": LETTER, "中": LETTER, "٣": NUMBER, "Ⅻ": NUMBER, " ": SPACE, "\u3000": SPACE,
                       "\x1c": OTHER, "\u0301": OTHER, "😀": OTHER, "\U0010fffd": OTHER}.items():
        assert classes[ord(char)] == kind, repr(char)
    assert classes[0xD800:0xE000].max() == OTHER  # surrogates never occur in decoded text


def test_code_point_classes_are_kept_per_regex_version(tmp_path, monkeypatch):
    """Made once, read back after (a new process pays a file read, not a pass over every code point)."""
    from scratchlm.tokenizer import scan

    monkeypatch.setattr(scan, "_CACHE_DIR", tmp_path)
    scan.code_point_classes.cache_clear()
    try:
        made = scan.code_point_classes()
        assert [path.name for path in tmp_path.iterdir()] == [f"code_point_classes.regex-{regex.__version__}.npy"]
        scan.code_point_classes.cache_clear()
        monkeypatch.setattr(scan, "_classes_from_regex", None)  # reading must not recompute
        assert np.array_equal(scan.code_point_classes(), made)
    finally:
        scan.code_point_classes.cache_clear()


def test_tally_without_numba_and_as_arrow_table_agree(fixtures_dir):
    """The regex fallback (numba missing) and the Arrow form give the compiled tally's counts."""
    from scratchlm.tokenizer.pretokenize import PretokenTally
    from scratchlm.tokenizer.shards import arrays_table, table_counts

    documents = (fixtures_dir / "tinystories_sample.txt").read_bytes().split(EOT.encode())
    documents += [b"caf\xc3\xa9 au lait, \xff bad bytes", "naïve  café\n".encode()]
    compiled, fallback = PretokenTally(), PretokenTally()
    fallback.compiled = None
    for document in documents:
        compiled.add_document(document)
        fallback.add_document(document)
    expected = {token.encode(): n for token, n in Counter(
        token for document in documents for token in GPT2_REGEX.findall(document.decode("utf-8", "replace"))).items()}
    counts = [table_counts(arrays_table(tally.arrays())) for tally in (compiled, fallback)]
    assert counts[0] == counts[1] == expected
    assert compiled.invalid_utf8 == fallback.invalid_utf8 == 1
