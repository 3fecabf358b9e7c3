"""Encode stage (parallel, streaming uint16 .npy) and the tokenizer report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import as_in_a_terminal

from scratchlm.cli import main
from scratchlm.layout import Layout
from scratchlm.reports.tokenizer_report import sample_documents, write_tokenizer_report
from scratchlm.settings import EncodeSettings
from scratchlm.tokenizer import Tokenizer
from scratchlm.tokenizer.encode import encode_corpus, encode_file, encoded_in_order, npy_header
from scratchlm.tokenizer.serialization import load_gpt2_format, load_pickle, save_pickle

EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def tinystories_pkl(reference_tokenizers_dir, tmp_path_factory) -> tuple[Path, Path]:
    """The reference TinyStories 10K tokenizer, saved the way the pipeline saves ours."""
    vocab, merges = load_gpt2_format(reference_tokenizers_dir / "tinystories-10k-vocab.json",
                                     reference_tokenizers_dir / "tinystories-10k-merges.txt", special_tokens=[EOT])
    folder = tmp_path_factory.mktemp("tokenizer")
    save_pickle(vocab, folder / "vocab.pkl")
    save_pickle(merges, folder / "merges.pkl")
    return folder / "vocab.pkl", folder / "merges.pkl"


@pytest.fixture(scope="module")
def tokenizer(tinystories_pkl) -> Tokenizer:
    return Tokenizer.from_files(*tinystories_pkl, [EOT])


@pytest.fixture(scope="module")
def corpus(fixtures_dir, tmp_path_factory) -> Path:
    """About 60 KB of documents (English, German, addresses, stories) separated by <|endoftext|>."""
    stories = (fixtures_dir / "tinystories_sample.txt").read_text(encoding="utf-8").split(EOT)
    others = [(fixtures_dir / name).read_text(encoding="utf-8") for name in ("german.txt", "address.txt")]
    documents = (stories + others) * 8
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(EOT.join(documents), encoding="utf-8")
    return path


@pytest.mark.parametrize("workers", [1, 2])
def test_parallel_encode_equals_tokenizer_encode(tokenizer, corpus, tmp_path, workers):
    output = tmp_path / "ids.npy"
    count = encode_file(tokenizer, corpus, output, workers=workers, chunk_bytes=4096, show_progress=False)
    expected = tokenizer.encode(corpus.read_text(encoding="utf-8"))
    ids = np.load(output, mmap_mode="r")
    assert ids.dtype == np.uint16 and ids.shape == (count,)
    assert ids.tolist() == expected
    assert list(tmp_path.iterdir()) == [output]  # no temporary file left behind


def test_header_leaves_room_for_the_final_length():
    assert len(npy_header(0)) == len(npy_header(10**15)) == 128


def test_at_most_two_chunks_per_worker_in_flight(tokenizer, corpus):
    """The memory bound: results wait in the parent only for a window of 2 x workers tasks."""
    size = corpus.stat().st_size
    pulled = 0

    def tasks():
        nonlocal pulled
        for start in range(0, size, 1000):
            pulled += 1
            yield str(corpus), start, start  # empty ranges: only the scheduling is under test

    received = 0
    for ids in encoded_in_order(tokenizer, tasks(), workers=2):
        received += 1
        assert len(ids) == 0 and pulled - received < 2 * 2
    assert received == pulled > 10


def test_cli_encodes_and_reports_errors_in_one_line(tinystories_pkl, corpus, tmp_path, capsys):
    vocab, merges = tinystories_pkl
    output = tmp_path / "out.npy"
    argv = ["encode", str(corpus), str(output), "--vocab", str(vocab), "--merges", str(merges), "--workers", "2"]
    assert main(argv) == 0
    tokenizer = Tokenizer.from_files(vocab, merges, [EOT])
    assert np.load(output).tolist() == tokenizer.encode(corpus.read_text(encoding="utf-8"))
    assert main(["encode", str(tmp_path / "missing.txt"), str(output), "--vocab", str(vocab),
                 "--merges", str(merges)]) == 1
    assert "missing.txt" in capsys.readouterr().err


def test_vocab_too_large_for_uint16_is_refused(tmp_path, corpus):
    vocab = {i: bytes([i]) for i in range(256)} | {70_000: b"ab"}
    save_pickle(vocab, tmp_path / "vocab.pkl")
    save_pickle([(b"a", b"b")], tmp_path / "merges.pkl")
    with pytest.raises(ValueError, match=r"vocab\.pkl: token ids go up to 70001.*uint16"):
        encode_corpus(corpus, tmp_path / "vocab.pkl", tmp_path / "merges.pkl", tmp_path / "out.npy")
    assert not (tmp_path / "out.npy").exists()


def test_sample_documents_is_seeded_and_uniform_without_replacement(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text(EOT.join(f"\ndocument {i}\n" for i in range(100)) + EOT + "\n\n", encoding="utf-8")
    first = sample_documents(path, EOT, 10, seed=1)
    assert first == sample_documents(path, EOT, 10, seed=1) != sample_documents(path, EOT, 10, seed=2)
    assert len(set(first)) == 10 and all(doc.strip().startswith("document ") for doc in first)
    assert len(sample_documents(path, EOT, 1000, seed=1)) == 100


def test_tokenizer_report(tinystories_pkl, fixtures_dir, corpus, tmp_path):
    results = tmp_path / "results"
    layout = Layout(str(results))
    vocab, merges = tinystories_pkl
    gpt2 = Tokenizer.from_files(fixtures_dir / "gpt2_vocab.json", fixtures_dir / "gpt2_merges.txt", [EOT])
    for name, (tok_vocab, tok_merges) in {"ts": (load_pickle(vocab), load_pickle(merges)),
                                          "gpt2": (gpt2.vocab, gpt2.merges)}.items():
        save_pickle(tok_vocab, layout.vocab_pkl(name))
        save_pickle(tok_merges, layout.merges_pkl(name))
        os.makedirs(layout.corpus_dir(name))
    Path(layout.corpus_text("ts", "valid")).write_bytes(corpus.read_bytes())
    english = (fixtures_dir / "corpus.en").read_text(encoding="utf-8")
    Path(layout.corpus_text("gpt2", "valid")).write_text(english.replace("\n\n", f"\n{EOT}\n"), encoding="utf-8")
    encode_corpus(layout.corpus_text("ts", "valid"), layout.vocab_pkl("ts"), layout.merges_pkl("ts"),
                  layout.ids("ts", "valid"))

    markdown, json_path = results / "reports" / "tokenizer.md", results / "reports" / "tokenizer.json"
    stats = write_tokenizer_report(results, {"ts": [EOT], "gpt2": [EOT]}, markdown, json_path,
                                   EncodeSettings(report_documents=5, report_throughput_mb=0.05))
    assert json.loads(json_path.read_text()) == stats
    ts, big = stats["tokenizers"]["ts"], stats["tokenizers"]["gpt2"]
    assert ts["vocab_size"] == 10_000 and big["vocab_size"] == 50_257
    # Each tokenizer compresses its own kind of text best; the web tokenizer wins on web text.
    assert 1 < ts["bytes_per_token"]["gpt2"] < big["bytes_per_token"]["gpt2"]
    assert ts["encoded"]["valid"]["tokens"] == len(np.load(layout.ids("ts", "valid")))
    assert "train" not in ts["encoded"]
    lengths = [token["bytes"] for token in big["longest_tokens"]]
    assert lengths == sorted(lengths, reverse=True) and len(lengths) == 10
    throughput = ts["throughput"]
    assert throughput["warm_mb_s"] > 0
    assert throughput["pile_hours_16_processes"] == pytest.approx(throughput["pile_hours_1_process"] / 16)
    text = markdown.read_text(encoding="utf-8")
    for heading in ("## Compression", "## Throughput", "## Encoded corpora", "## Longest tokens"):
        assert heading in text



def test_long_documents_encode_in_flat_memory_with_the_same_ids(tokenizer, fixtures_dir, tmp_path):
    """Text without separators was once one block (1.9 GB peak for 50 MiB); cuts must not change ids."""
    from scratchlm.tokenizer.encode import encode_range

    text = (fixtures_dir / "tinystories_sample.txt").read_text(encoding="utf-8").replace(EOT, " ")[:50_000]
    text += " <|endo" + "ftext|>" + (fixtures_dir / "german.txt").read_text(encoding="utf-8")[:5000]
    path = tmp_path / "long.txt"
    path.write_text(text, encoding="utf-8")
    ids = encode_range(tokenizer, path, 0, path.stat().st_size, block_size=256)
    assert ids.tolist() == tokenizer.encode(text)
    assert ids.dtype == np.uint16


def test_corpus_that_is_a_directory_is_named_as_such(tinystories_pkl, tmp_path, capsys):
    vocab, merges = tinystories_pkl
    args = ["encode", str(tmp_path), str(tmp_path / "out.npy"), "--vocab", str(vocab), "--merges", str(merges)]
    assert main(args) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"scratchlm encode: error: {tmp_path}: is a directory, not a corpus file"]


def test_encoding_as_a_map_over_shards_equals_one_process(tinystories_pkl, corpus, tokenizer, tmp_path):
    """What the pipeline does for a Pile-sized corpus: one job per shard, then a streaming concat."""
    from scratchlm.tokenizer.encode import concatenate_ids, encode_planned_shard
    from scratchlm.tokenizer.shards import num_planned_shards, plan_shards

    vocab, merges = tinystories_pkl
    plan_shards(corpus, tmp_path / "plan.json", special_tokens=[EOT], shard_mb=0.002)
    parts = [tmp_path / f"{shard}.npy" for shard in range(num_planned_shards(tmp_path / "plan.json"))]
    assert len(parts) >= 4
    for shard, part in enumerate(parts):
        encode_planned_shard(tmp_path / "plan.json", shard, vocab, merges, part, special_tokens=[EOT])
    count = concatenate_ids(parts, tmp_path / "all.npy", chunk=1000)
    ids = np.load(tmp_path / "all.npy")
    assert count == len(ids) and ids.tolist() == tokenizer.encode(corpus.read_text(encoding="utf-8"))


@pytest.mark.parametrize("command", ["encode", "count"])
def test_ctrl_c_while_the_workers_fork_is_not_lost(tmp_path, fixtures_dir, command):
    """Once (1 run of the full suite in ~30): a SIGINT that arrived while the pool forked was raised in
    fork's at-fork hook, where Python drops it ("Exception ignored in: _releaseLock"): the stage ran
    to the end and exited 0. Here the SIGINT is sent from that hook, every time."""
    import subprocess
    import sys

    text = tmp_path / "text.txt"
    text.write_text(f"some words here{EOT}" * 20000)
    stage = (f"encode_file(Tokenizer.from_files({str(fixtures_dir / 'gpt2_vocab.json')!r}, "
             f"{str(fixtures_dir / 'gpt2_merges.txt')!r}, [{EOT!r}]), {str(text)!r}, {str(tmp_path / 'ids.npy')!r}, "
             f"workers=2, chunk_bytes=4096, show_progress=False)" if command == "encode" else
             f"count_file_table({str(text)!r}, [{EOT!r}], num_workers=2, min_parallel_bytes=0)")
    script = f"""
import os, signal
from scratchlm.tokenizer import Tokenizer
from scratchlm.tokenizer.encode import encode_file
from scratchlm.tokenizer.bpe import count_file_table
sent = []
def interrupt():
    if not sent:
        sent.append(1)
        os.kill(os.getpid(), signal.SIGINT)
os.register_at_fork(after_in_parent=interrupt)
try:
    {stage}
except KeyboardInterrupt:
    raise SystemExit(130)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            preexec_fn=as_in_a_terminal)
    assert result.returncode == 130, result.stderr
    assert not (tmp_path / "ids.npy").exists()


def test_ctrl_c_during_a_pooled_encode_exits_130_leaving_no_worker_and_no_file(tmp_path, fixtures_dir):
    """Once: a KeyboardInterrupt traceback, and in 1 of 32 tries a hang with zombie workers."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    rng = np.random.default_rng(0)  # random words: every pre-token new, so encoding takes a few seconds
    alphabet = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz      ", dtype=np.uint8)
    letters = alphabet[rng.integers(0, len(alphabet), size=2 << 20)].tobytes().decode("ascii")
    text = tmp_path / "big.txt"
    text.write_text("".join(f"{letters[i:i + 4096]}\n{EOT}\n" for i in range(0, len(letters), 4096)))
    for attempt in range(3):
        output = tmp_path / f"ids{attempt}.npy"
        command = [sys.executable, "-m", "scratchlm.cli", "encode", str(text), str(output), "--workers", "2",
                   "--chunk-mb", "0.25", "--vocab", str(fixtures_dir / "gpt2_vocab.json"),
                   "--merges", str(fixtures_dir / "gpt2_merges.txt")]
        process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True,
                                   preexec_fn=as_in_a_terminal)
        deadline = time.monotonic() + 60
        while len(psutil.Process(process.pid).children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = psutil.Process(process.pid).children()
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
        _, err = process.communicate(timeout=30)
        assert process.returncode == 130 and err.strip().splitlines()[-1] == "scratchlm encode: interrupted", err
        assert "Traceback" not in err
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive and not output.exists()
