"""Damaged or foreign files where the pipeline expects its own: one error naming the file and what is
wrong, never a traceback (TypeError, KeyError, EOFError, Arrow's errors) nor numpy's advice to load a
file unsafely. Each case failed before its fix (a fault-injection run over every artefact, #26)."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest

from scratchlm import cli
from scratchlm import fileio
from scratchlm.fileio import atomic_open, write_json
from scratchlm.layout import RunFiles

NOT_JSON_OBJECTS = {"array": "[1, 2]", "null": "null", "string": '"x"'}


def run_cli(argv: list[str], capsys) -> str:
    """Run ``scratchlm ARGV``, which must fail with one line: that line."""
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("kind", NOT_JSON_OBJECTS)
def test_a_json_file_that_is_no_object_is_named(tmp_path, kind):
    path = tmp_path / "plan.json"
    path.write_text(NOT_JSON_OBJECTS[kind])
    with pytest.raises(ValueError, match=rf"plan.json: expected a JSON object, got a JSON {kind} \(not a shard plan\)"):
        fileio.read_json_object(path, what="shard plan")


def test_a_json_file_that_is_not_utf8_or_lacks_a_key_is_named(tmp_path):
    path = tmp_path / "model.json"
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(ValueError, match=r"model.json: not a UTF-8 text file, so not JSON"):
        fileio.read_json_object(path)
    path.write_text("{}")
    with pytest.raises(ValueError, match=r"model.json: no 'model' key \(not a model.json\)"):
        fileio.read_json_object(path, keys=("model",), what="model.json")


@pytest.mark.parametrize("text", [*NOT_JSON_OBJECTS.values(), "{}"])
def test_pretokenize_names_a_plan_that_is_not_one(tmp_path, capsys, text):
    """Once: TypeError or KeyError('boundaries') tracebacks."""
    (tmp_path / "plan.json").write_text(text)
    err = run_cli(["pretokenize", str(tmp_path / "plan.json"), "0", str(tmp_path / "s.parquet")], capsys)
    assert "plan.json: " in err and "shard plan" in err


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "foreign parquet"])
def test_train_bpe_names_a_damaged_shard(tmp_path, capsys, damage):
    """Once: Arrow's "Parquet magic bytes not found" without the file's name."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from scratchlm.tokenizer.shards import write_shard

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat " * 50)
    shard = tmp_path / "shard.parquet"
    write_shard(corpus, shard, start=0, end=corpus.stat().st_size, special_tokens=[])
    data = shard.read_bytes()
    if damage == "foreign parquet":
        pq.write_table(pa.table({"x": [1]}), shard)
    else:
        shard.write_bytes({"empty": b"", "truncated": data[:len(data) // 2], "garbage": b"\x07" * 999}[damage])
    err = run_cli(["train-bpe", "--name", "x", "--vocab-size", "300", "--results", str(tmp_path / "out"),
                   str(shard)], capsys)
    assert f"{shard}: not a" in err


@pytest.mark.parametrize("content", ["[1]", '{"model": [1]}', '{"model": {"d_model": "wide"}}'])
def test_generate_names_a_model_json_that_is_not_one(tmp_path, capsys, content):
    """Once: TypeError/KeyError('model') tracebacks, or pydantic's message without the file."""
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    RunFiles(run_dir).meta.write_text(content)
    err = run_cli(["generate", "--run-dir", str(run_dir), "--output", str(tmp_path / "s.md")], capsys)
    assert f"{RunFiles(run_dir).meta}: " in err


def finished_run(results, name="r", summary=None, settings=None, metrics='{"step": 1, "train_loss": 2.0}\n'):
    """A run folder that looks finished to the reports: summary, config and metrics."""
    files = RunFiles(results / "runs" / name)
    files.folder.mkdir(parents=True)
    files.summary.write_text(summary if summary is not None else '{"run": "%s", "final_val_loss": 2.0}' % name)
    write_json(files.config, {"settings": settings if settings is not None else {"optimizer": {"lr": 0.1}}})
    files.metrics.write_text(metrics)
    return files


@pytest.mark.parametrize("summary", NOT_JSON_OBJECTS.values())
def test_reports_name_a_summary_that_is_not_one(tmp_path, capsys, summary):
    """Once: AttributeError("'list' object has no attribute 'get'") in compare, index and training."""
    files = finished_run(tmp_path, summary=summary)
    finished_run(tmp_path, "s")
    for argv in (["compare", "--out", str(tmp_path / "cmp"), "--results", str(tmp_path), "r", "s"],
                 ["report", "index", "--results", str(tmp_path), "--markdown", str(tmp_path / "i.md")],
                 ["report", "training", "--results", str(tmp_path), "--markdown", str(tmp_path / "t.md"),
                  "--plot", str(tmp_path / "t.png")]):
        assert f"{files.summary}: expected a JSON object" in run_cli(argv, capsys)


@pytest.mark.parametrize("metrics, problem", [
    ("[1]\n", ":1: not a JSON object"), ('{"step": 1}\n7\n', ":2: not a JSON object"),
    (b"\xff\xfe{}\n", ": not a UTF-8 text file"),
])
def test_compare_names_a_metrics_line_that_is_not_one(tmp_path, capsys, metrics, problem):
    files = finished_run(tmp_path)
    (files.metrics.write_bytes if isinstance(metrics, bytes) else files.metrics.write_text)(metrics)
    finished_run(tmp_path, "s")
    err = run_cli(["compare", "--out", str(tmp_path / "cmp"), "--results", str(tmp_path), "r", "s"], capsys)
    assert f"{files.metrics}{problem}" in err


def test_compare_names_a_run_config_whose_settings_are_not_a_mapping(tmp_path, capsys):
    files = finished_run(tmp_path, settings=[1, 2])
    finished_run(tmp_path, "s")
    err = run_cli(["compare", "--out", str(tmp_path / "cmp"), "--results", str(tmp_path), "r", "s"], capsys)
    assert f"{files.config}: 'settings' is not a JSON object" in err


@pytest.mark.parametrize("content", [b"", b"\x93NUMPY\x01\x00v\x00{'descr': '<u2', 'fortran_order'", "pickled"])
def test_a_damaged_token_array_is_named_without_advice_to_unpickle(tmp_path, content):
    """Once: EOFError's traceback for an empty file; for a pickle, numpy's advice to load it unsafely."""
    from scratchlm.tokenizer.encode import open_ids

    path = tmp_path / "train.npy"
    if content == "pickled":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=r"train.npy: corrupt, or not a .npy array of token ids") as error:
        open_ids(path)
    assert "unsafe" not in str(error.value) and "allow_pickle" not in str(error.value)


def test_a_config_file_that_is_not_utf8_is_named(tmp_path, capsys):
    (tmp_path / "config.yaml").write_bytes(b"\xff\xfe runs: {}")
    err = run_cli(["config", "show", "--config", str(tmp_path / "config.yaml")], capsys)
    assert "config.yaml: not a UTF-8 text file" in err


def test_an_output_path_that_is_a_folder_is_named_not_the_temporary(tmp_path):
    """Once: "/.../.config.json.vm.20670.bmlb1ogp.tmp: Is a directory"."""
    (tmp_path / "config.json").mkdir()
    with pytest.raises(OSError, match=r"config.json: is a directory, cannot write the output there") as error:
        with atomic_open(tmp_path / "config.json") as handle:
            handle.write("{}")
    assert ".tmp" not in str(error.value)
    assert list(tmp_path.iterdir()) == [tmp_path / "config.json"]


def test_a_merges_file_cut_at_a_line_end_is_refused(tmp_path, fixtures_dir):
    """Once: loaded silently, and encoded differently from the tokenizer the files came from."""
    from scratchlm.tokenizer import Tokenizer

    lines = (fixtures_dir / "gpt2_merges.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    (tmp_path / "merges.txt").write_text("".join(lines[:len(lines) // 2]), encoding="utf-8")
    with pytest.raises(ValueError, match=r"gpt2_vocab.json and .*merges.txt: 25000 vocab tokens join two others "
                                         r"but no merge makes them .*look cut short"):
        Tokenizer.from_files(fixtures_dir / "gpt2_vocab.json", tmp_path / "merges.txt", ["<|endoftext|>"])
    (tmp_path / "merges.txt").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match=r"50000 vocab tokens join two others"):
        Tokenizer.from_files(fixtures_dir / "gpt2_vocab.json", tmp_path / "merges.txt", ["<|endoftext|>"])
    whole = Tokenizer.from_files(fixtures_dir / "gpt2_vocab.json", fixtures_dir / "gpt2_merges.txt")
    assert whole.encode("<|endoftext|>") != [50256]  # the marker without being special: plain text, still loads


def test_a_pickled_merge_list_cut_short_is_refused(tmp_path):
    from scratchlm.tokenizer import Tokenizer

    vocab = {i: bytes([i]) for i in range(256)} | {256: b"ab", 257: b"abc"}
    (tmp_path / "v.pkl").write_bytes(pickle.dumps(vocab))
    (tmp_path / "m.pkl").write_bytes(pickle.dumps([(b"a", b"b")]))
    with pytest.raises(ValueError, match=r"v.pkl and .*m.pkl: 1 vocab tokens join two others .*b'abc'"):
        Tokenizer.from_files(tmp_path / "v.pkl", tmp_path / "m.pkl")


def test_a_garbage_pickle_is_named_in_one_short_line(tmp_path):
    """Once: the unpickler's message quoted the garbage, newlines included, over several lines."""
    from scratchlm.tokenizer.serialization import load_pickle

    rng = random.Random(82)  # bytes whose first opcode is "persistent id": a two-line message
    (tmp_path / "vocab.pkl").write_bytes(bytes(rng.randrange(256) for _ in range(4096)))
    with pytest.raises(ValueError, match=r"vocab.pkl: ") as error:
        load_pickle(tmp_path / "vocab.pkl")
    assert "\n" not in str(error.value) and len(str(error.value)) < 250
