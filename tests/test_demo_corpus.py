"""The offline demo corpus: deterministic, sized as asked, varied, and learnable."""

from __future__ import annotations

import collections
import math
import re

import pytest

from scratchlm.cli import main
from scratchlm.data.demo import iter_stories, write_demo_corpus

EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "demo_train.txt"
    write_demo_corpus(path, seed=7, split="train", size_mb=0.5)
    return path.read_text(encoding="utf-8")


def test_deterministic_per_seed_and_split(tmp_path):
    paths = {}
    for name, seed, split in [("a", 1, "train"), ("b", 1, "train"), ("c", 2, "train"), ("d", 1, "valid")]:
        paths[name] = tmp_path / f"{name}.txt"
        write_demo_corpus(paths[name], seed=seed, split=split, size_mb=0.02)
    data = {name: path.read_bytes() for name, path in paths.items()}
    assert data["a"] == data["b"]
    assert data["a"] != data["c"] and data["a"] != data["d"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "c.txt", "d.txt"]  # no temp files


def test_size_and_document_format(corpus):
    size = len(corpus.encode("utf-8"))
    assert 0.5 * 2**20 <= size < 0.5 * 2**20 + 5000  # stops after the document that reaches the size
    assert corpus.endswith(f"\n{EOT}\n")
    documents = corpus.split(f"\n{EOT}\n")[:-1]
    assert len(documents) > 500
    assert all(doc.strip() and EOT not in doc for doc in documents)
    assert all(doc[0].isupper() and doc.rstrip()[-1] in '.!"' for doc in documents)


def test_varied_vocabulary_dialogue_and_non_ascii(corpus):
    words = collections.Counter(re.findall(r"\w+", corpus))
    assert len(words) > 1000  # many names, objects, places: BPE has real merges to learn
    assert corpus.count('"') > 2000 and corpus.count('"') % 2 == 0  # dialogue, quotes balanced
    assert any(ord(ch) > 127 for ch in corpus)  # accented names, café, crêpe...
    assert sum(count for word, count in words.items() if not word.isascii()) > 100


def _entropy(counts: collections.Counter) -> float:
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values())


def test_text_has_learnable_structure(corpus):
    """The next word is far more predictable from the previous one than on its own."""
    words = re.findall(r"\w+|[^\w\s]", corpus)
    unigram = _entropy(collections.Counter(words))
    pairs = collections.Counter(zip(words, words[1:]))
    conditional = _entropy(pairs) - _entropy(collections.Counter(words[:-1]))  # H(next | previous)
    assert conditional < 0.5 * unigram


def test_stories_are_an_endless_stream():
    stories = iter_stories(seed=3)
    assert len({next(stories) for _ in range(200)}) == 200


def test_rejects_non_positive_size(tmp_path):
    with pytest.raises(ValueError, match="size_mb must be positive"):
        write_demo_corpus(tmp_path / "x.txt", seed=1, split="train", size_mb=0)


def test_cli_matches_library(tmp_path):
    write_demo_corpus(tmp_path / "lib.txt", seed=5, split="valid", size_mb=0.01, special_token="<|doc|>")
    argv = ["demo-corpus", str(tmp_path / "cli.txt"), "--seed", "5", "--split", "valid", "--size-mb", "0.01",
            "--special-token", "<|doc|>"]
    assert main(argv) == 0
    assert (tmp_path / "cli.txt").read_bytes() == (tmp_path / "lib.txt").read_bytes()
    assert "<|doc|>" in (tmp_path / "cli.txt").read_text(encoding="utf-8")
