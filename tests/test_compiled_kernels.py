"""Where the tokenizer's machine code comes from (tokenizer/compiled.py): the ahead-of-time module,
which lets encoding and decoding run without numba, and numba's JIT, which must give the same ids
and take every call the module was not built for."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

from scratchlm.tokenizer import compiled
from scratchlm.tokenizer.compiled import AOT_ENV, matches

# Encodes and decodes every way a user does and prints the ids, the text decoded and which of
# numba and llvmlite the process loaded.
_USER = """
import json, sys
from scratchlm.tokenizer import Tokenizer
vocab, merges, corpus = sys.argv[1:4]
tokenizer = Tokenizer.from_files(vocab, merges, ["<|endoftext|>"])
data = open(corpus, "rb").read() + b"<|endoftext|> caf\\xc3\\xa9 \\xff\\xfe broken"
ids = tokenizer.encode_utf8(data)
text = data.decode("utf-8", errors="replace")
assert tokenizer.encode(text) == ids.tolist() == list(tokenizer.encode_iterable(text.splitlines(keepends=True)))
decoded = [tokenizer.decode(ids), tokenizer.decode(ids.tolist()), tokenizer.decode(ids.astype("uint16"))]
print(json.dumps({"ids": ids.tolist(), "decoded": decoded, "text": text,
                  "loaded": sorted({name.split(".")[0] for name in sys.modules} & {"numba", "llvmlite"})}))
"""


def _run_as_user(fixtures_dir, **env: str) -> dict:
    files = [fixtures_dir / name for name in ("gpt2_vocab.json", "gpt2_merges.txt", "corpus.en")]
    done = subprocess.run([sys.executable, "-c", _USER, *map(str, files)], capture_output=True, text=True, check=True,
                          env={**os.environ, **env})
    return json.loads(done.stdout)


def _no_c_compiler() -> bool:
    return shutil.which((sysconfig.get_config_var("CC") or "cc").split()[0]) is None


def test_encoding_and_decoding_load_neither_numba_nor_llvm_and_the_jit_gives_the_same_ids(fixtures_dir):
    ahead = _run_as_user(fixtures_dir)
    if ahead["loaded"] and _no_c_compiler():
        pytest.skip("no C compiler to build the ahead-of-time module with: numba's JIT serves every call")
    assert ahead["loaded"] == []  # ~150 MiB and ~0.5 s of numba and LLVM not paid
    jit = _run_as_user(fixtures_dir, **{AOT_ENV: "0"})
    assert jit["loaded"] == ["llvmlite", "numba"]
    assert jit["ids"] == ahead["ids"] and len(ahead["ids"]) > 30_000
    assert ahead["decoded"] == jit["decoded"] == [ahead["text"]] * 3


def test_only_arguments_of_the_exact_exported_types_go_to_the_module():
    """The module trusts its callers' types (a wrong dtype reads the wrong memory, a crash at best):
    anything else must go to numba, which checks them."""
    ids, tables = np.arange(4, dtype=np.uint32), (np.zeros(3, np.uint32), np.zeros((4, 2), np.uint64))
    assert matches((ids, 3), ("u4[:]", "i8")) and matches(tables, ("u4[:]", "u8[:,:]!"))
    assert not matches((ids.astype(np.uint16), 3), ("u4[:]", "i8"))  # dtype
    assert not matches((ids[::2], 3), ("u4[:]", "i8"))  # not contiguous
    assert not matches((ids.reshape(2, 2), 3), ("u4[:]", "i8"))  # dimensions
    assert not matches((ids, True), ("u4[:]", "i8")) and not matches((ids, 1 << 63), ("u4[:]", "i8"))
    assert not matches(tables[:1], ("u4[:]", "u8[:,:]!"))  # a shorter tuple
    readonly = np.frombuffer(bytes(8), dtype=np.uint8)
    assert matches(readonly, "u1[:]") and not matches(readonly, "u1[:]!")  # read: fine; written: refused


def test_a_call_the_module_was_not_built_for_is_compiled_by_numba():
    from numba.core.errors import TypingError

    from scratchlm.tokenizer.fast_bpe import _fill_pairs
    from scratchlm.tokenizer.fast_decode import _gather

    spans, arena = np.array([(0 << 3) | 1, (1 << 3) | 2]), np.frombuffer(b"xyz" + bytes(16), dtype=np.uint8)
    for ids in (np.array([1, 0], np.uint16), np.array([1, 7, 0, 7], np.int64)[::2], np.array([1, 0], np.uint32)):
        data, bad = _gather(ids, spans, 3, arena)
        assert (bytes(data), bad) == (b"yzx", -1)
    lefts = np.zeros(1, np.uint64)
    with pytest.raises(TypingError, match="readonly"):  # refused, where the module would have written into it
        _fill_pairs(lefts, lefts, np.frombuffer(bytes(64), dtype=np.uint64).reshape(4, 2))


def test_a_failed_build_leaves_its_reason_and_is_not_retried_by_every_process(tmp_path, monkeypatch, caplog):
    builds = []

    def failing_build(command, **kwargs):
        builds.append(command)
        return subprocess.CompletedProcess(command, 1, "", "CompileError: command 'gcc' failed: No such file\n")

    monkeypatch.setattr(compiled.subprocess, "run", failing_build)
    build = compiled.ahead_of_time_module.__wrapped__
    with caplog.at_level(logging.WARNING, logger=compiled.__name__):
        assert build(tmp_path) is None
    failed = compiled.module_path(tmp_path).with_name(compiled.module_path(tmp_path).name + ".failed")
    assert failed.read_text() == "CompileError: command 'gcc' failed: No such file\n"
    assert "CompileError: command 'gcc' failed" in caplog.text and str(failed) in caplog.text
    assert build(tmp_path) is None and len(builds) == 1  # the next process reads the reason
    failed.unlink()
    assert build(tmp_path) is None and len(builds) == 2  # deleted: tried again


def test_an_interrupted_build_is_tried_again_and_nowhere_to_write_means_numba(tmp_path, monkeypatch):
    builds = []
    monkeypatch.setattr(compiled.subprocess, "run", lambda command, **kwargs: builds.append(command)
                        or subprocess.CompletedProcess(command, -2, "", "KeyboardInterrupt\n"))
    build = compiled.ahead_of_time_module.__wrapped__
    assert build(tmp_path) is None and build(tmp_path) is None and len(builds) == 2
    assert [path.name for path in tmp_path.iterdir()] == ["kernels.lock"]
    (tmp_path / "file").write_text("")
    assert build(tmp_path / "file" / "cache") is None and len(builds) == 2  # cannot be written: not built
    monkeypatch.setenv(AOT_ENV, "0")
    assert build(tmp_path) is None and len(builds) == 2


def test_compile_command_builds_every_kernel_and_says_so(capsys):
    """`scratchlm compile` (make install runs it) reports each step; the pipeline's first stages
    then find the kernels built (they compiled them in silence for a minute or more)."""
    from scratchlm.cli import main

    assert main(["compile"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("compiling the tokenizer's kernels")
    assert lines[1].startswith("  encoder and decoder, ahead of time: ") and lines[2].startswith("  counting, merging")
