"""Shared plumbing: atomic files, progress lines, process-tree profiling, stage(), serialization."""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from scratchlm.fileio import atomic_open, atomic_path
from scratchlm.pipeline import profile_path, stage
from scratchlm.progress import format_bytes, format_duration, progress_bar
from scratchlm.tokenizer.serialization import (
    load_gpt2_format,
    load_pickle,
    save_gpt2_format,
    save_pickle,
)

# ---------------------------------------------------------------- fileio


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half-written")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_open_replaces_on_success_and_makes_parents(tmp_path):
    target = tmp_path / "sub" / "dir" / "out.bin"
    with atomic_open(target, "wb") as handle:
        handle.write(b"new")
        assert not target.exists()  # nothing under the final name until the block ends
    assert target.read_bytes() == b"new"
    with pytest.raises(ValueError, match="for writing"):
        with atomic_open(target, "r"):
            pass


# ---------------------------------------------------------------- progress


def test_format_helpers():
    assert format_bytes(100) == "100B"
    assert format_bytes(1536) == "1.50kB"
    assert format_bytes(3 * 2**30) == "3.00GB"
    assert format_duration(65) == "01:05"
    assert format_duration(3725) == "1:02:05"


def test_progress_bar_is_tqdm_with_our_units():
    """tqdm draws on terminals only, so job logs stay clean; bytes show as sizes, items as counts."""
    import tqdm

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    with progress_bar("download x", total=2048, file=screen) as bar:
        drawing = not bar.disable
        bar.update(1024)
        bar.set_postfix_str("attempt 1")
    assert isinstance(bar, tqdm.tqdm) and drawing
    assert "download x" in screen.getvalue() and "2.00k" in screen.getvalue() and "attempt 1" in screen.getvalue()
    with progress_bar("docs", total=3, unit="docs", file=Terminal()) as bar:
        bar.update(3)
    assert bar.n == 3 and bar.unit == " docs"
    assert progress_bar("quiet", file=Terminal(), quiet=True).disable
    assert progress_bar("log file", file=io.StringIO()).disable


def test_a_log_line_while_a_bar_draws_is_printed_above_it(monkeypatch):
    """In a terminal, an evaluation log line landed in the middle of the training bar ("...it/s]run x:
    step 40 ..."); it now goes through tqdm.write, which clears the bar, prints the line, redraws."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    # The console handler alone, as configure_logging leaves a command (other tests' handlers aside).
    monkeypatch.setattr(logging.root, "handlers", [logging.StreamHandler(sys.stderr)])
    with progress_bar("train x", total=10, unit="steps") as bar:
        bar.update(3)
        bar.refresh()
        logging.getLogger("scratchlm.test").warning("EVAL LINE")
        bar.update(3)
    logging.getLogger("scratchlm.test").warning("AFTER")
    text = screen.getvalue()
    before = text[:text.index("EVAL LINE")].rstrip(" ")
    assert "train x" in before and before.endswith("\r"), repr(text[-300:])  # the bar cleared first
    assert "EVAL LINE\n" in text and "AFTER\n" in text  # the console handler is back after the bar
    assert text.index("AFTER") > text.rindex("train x")


# ---------------------------------------------------------------- profiling

CHILD_RSS_SCRIPT = textwrap.dedent(
    """
    import json, subprocess, sys
    from scratchlm.profiling import ProcessTreeMonitor
    child = "b = bytearray(200 * 2**20); sum(range(10**7))"  # 200 MiB, then a fixed amount of CPU work
    with ProcessTreeMonitor("t", interval=0.02) as monitor:
        subprocess.run([sys.executable, "-c", child], check=True)
    p = monitor.profile
    print(json.dumps({"tree": p.peak_rss_bytes, "main": p.peak_rss_main_bytes,
                      "procs": p.peak_processes, "cpu": p.cpu_s, "wall": p.wall_s}))
    """
)


@pytest.mark.slow
def test_process_tree_monitor_counts_children():
    # A fresh interpreter, so ru_maxrss of this test process cannot mask the measurement.
    out = subprocess.run([sys.executable, "-c", CHILD_RSS_SCRIPT], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    prof = json.loads(out)
    assert prof["procs"] >= 2
    assert prof["tree"] >= 200 * 2**20  # the child's 200 MiB buffer is counted (this interpreter: ~20 MiB)
    assert prof["cpu"] >= 0.15  # CPU time of the exited child is included


# ---------------------------------------------------------------- pipeline.stage


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:], _ = saved[0], root.setLevel(saved[1])


def test_stage_logs_and_profiles(tmp_path, monkeypatch, restore_logging):
    monkeypatch.chdir(tmp_path)
    smk = SimpleNamespace(rule="demo_rule", log=["results/logs/demo_rule/demo_train.log"],
                          wildcards={"corpus": "demo", "split": "train"}, threads=3)
    with stage(smk):
        print("printed to stdout")
        print("written to stderr", file=sys.stderr)
        logging.getLogger("scratchlm.test").info("a log record")
    log_text = Path(smk.log[0]).read_text()
    for expected in ("printed to stdout", "written to stderr", "a log record", "stage demo_rule done"):
        assert expected in log_text
    record = json.loads((tmp_path / "results/profiles/demo_rule/demo_train.json").read_text())
    assert record["stage"] == "demo_rule"
    assert record["extra"] == {"wildcards": {"corpus": "demo", "split": "train"}, "threads": 3}
    assert record["wall_s"] >= 0 and record["peak_rss_bytes"] > 0
    assert record["peak_rss_mb"] == pytest.approx(record["peak_rss_bytes"] / 2**20, abs=0.1)


def test_profile_path_without_wildcards():
    assert profile_path("index", {}) == Path("results/profiles/index/all.json")


def test_stage_bug_logs_its_traceback_then_one_line_and_writes_no_profile(tmp_path, monkeypatch, restore_logging):
    monkeypatch.chdir(tmp_path)
    smk = SimpleNamespace(rule="boom", log=["boom.log"], wildcards={}, threads=1)
    with pytest.raises(SystemExit) as stop:
        with stage(smk):
            raise RuntimeError("failed")
    assert stop.value.code == 1
    log = (tmp_path / "boom.log").read_text().splitlines()
    assert "Traceback (most recent call last):" in log and log[-1].endswith("boom: error: RuntimeError: failed")
    assert not (tmp_path / "results/profiles/boom/all.json").exists()


def test_stage_stopped_by_a_signal_ends_its_log_in_one_line(tmp_path, monkeypatch, restore_logging):
    """A SIGTERM'd train job (SLURM preemption) once ended its log in a traceback."""
    from scratchlm.training.session import TrainingInterrupted

    monkeypatch.chdir(tmp_path)
    smk = SimpleNamespace(rule="train", log=["train.log"], wildcards={"run": "demo"}, threads=1)
    with pytest.raises(SystemExit) as stop:
        with stage(smk):
            raise TrainingInterrupted("run 'demo' stopped by signal 15 at step 7; checkpoint saved", 15)
    log = (tmp_path / "train.log").read_text()
    assert stop.value.code == 143 and "Traceback" not in log
    assert log.splitlines()[-1].endswith("train: stopped: run 'demo' stopped by signal 15 at step 7; checkpoint saved")


# ---------------------------------------------------------------- serialization


@pytest.fixture(scope="module")
def gpt2(fixtures_dir):
    return load_gpt2_format(fixtures_dir / "gpt2_vocab.json", fixtures_dir / "gpt2_merges.txt",
                            special_tokens=["<|endoftext|>"])


def test_load_gpt2_tokenizer(gpt2):
    vocab, merges = gpt2
    assert len(vocab) == 50257 and len(merges) == 50000
    assert vocab[50256] == b"<|endoftext|>"
    assert {vocab[i] for i in range(256)} >= {bytes([b]) for b in range(33, 127)}
    assert set(vocab.values()) >= {bytes([b]) for b in range(256)}  # every single byte is a token
    assert merges[0] == (b" ", b"t")
    tokens = set(vocab.values())
    assert all(left + right in tokens for left, right in merges)  # each merge makes a vocab entry


def test_gpt2_format_round_trip(gpt2, fixtures_dir, tmp_path):
    vocab, merges = gpt2
    save_gpt2_format(vocab, merges, tmp_path / "v.json", tmp_path / "m.txt", special_tokens=["<|endoftext|>"])
    original = json.loads((fixtures_dir / "gpt2_vocab.json").read_text(encoding="utf-8"))
    assert json.loads((tmp_path / "v.json").read_text(encoding="utf-8")) == original
    assert load_gpt2_format(tmp_path / "v.json", tmp_path / "m.txt", special_tokens=["<|endoftext|>"]) == gpt2


def test_tokenizer_files_that_disagree_or_are_swapped_are_named(fixtures_dir, tmp_path):
    """A merge of tokens missing from the vocab, and a .pkl given as merges.txt, once said only what was wrong."""
    from scratchlm.tokenizer import Tokenizer

    (tmp_path / "m.txt").write_text("#version: 0.2\nzz qq\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"gpt2_vocab.json and .*m.txt: merge 0 \(b'zz', b'qq'\) uses a token missing"):
        Tokenizer.from_files(fixtures_dir / "gpt2_vocab.json", tmp_path / "m.txt")
    save_pickle([(b"a", b"b")], tmp_path / "merges.pkl")
    with pytest.raises(ValueError, match=r"merges.pkl: not a UTF-8 text file, so not a GPT-2 merges.txt"):
        Tokenizer.from_files(fixtures_dir / "gpt2_vocab.json", tmp_path / "merges.pkl")


def test_bad_merges_line_names_the_file(fixtures_dir, tmp_path):
    (tmp_path / "m.txt").write_text("#version: 0.2\nĠ t\nonly-one-token\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"m.txt:3: expected two tokens"):
        load_gpt2_format(fixtures_dir / "gpt2_vocab.json", tmp_path / "m.txt")


def test_pickle_round_trip(tmp_path):
    vocab = {0: b"\x00", 1: b" the", 2: b"<|endoftext|>"}
    merges = [(b" ", b"t"), (b"h", b"e")]
    save_pickle(vocab, tmp_path / "vocab.pkl")
    save_pickle(merges, tmp_path / "merges.pkl")
    assert load_pickle(tmp_path / "vocab.pkl") == vocab
    assert load_pickle(tmp_path / "merges.pkl") == merges


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_rejects_code(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({0: _Exploit(marker)}))
    with pytest.raises(ValueError, match=r"evil.pkl: refusing to load (posix|os)\.system"):
        load_pickle(tmp_path / "evil.pkl")
    assert not marker.exists()
    (tmp_path / "set.pkl").write_bytes(pickle.dumps({b"a", b"b"}))
    with pytest.raises(ValueError, match="unexpected set"):
        load_pickle(tmp_path / "set.pkl")
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps({1: b"x" * 100})[:20])
    with pytest.raises(ValueError, match="cut.pkl: .*truncated"):
        load_pickle(tmp_path / "cut.pkl")


def test_atomic_outputs_get_umask_permissions_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_open(tmp_path / "shared.txt") as handle:
            handle.write("x")
    finally:
        os.umask(old)
    assert (tmp_path / "shared.txt").stat().st_mode & 0o777 == 0o644


def test_write_json_is_utf8_with_a_final_newline(tmp_path):
    from scratchlm.fileio import write_json

    write_json(tmp_path / "data.json", {"token": "é"}, ensure_ascii=False)
    assert (tmp_path / "data.json").read_bytes() == '{\n  "token": "é"\n}\n'.encode("utf-8")


def test_read_json_names_a_broken_file(tmp_path):
    from scratchlm.fileio import read_json

    (tmp_path / "ok.json").write_text('{"a": 1}')
    (tmp_path / "broken.json").write_text('{"a": ')
    assert read_json(tmp_path / "ok.json") == {"a": 1}
    with pytest.raises(ValueError, match=r"broken\.json: invalid JSON"):
        read_json(tmp_path / "broken.json")


def test_stale_temporaries_of_dead_writers_are_removed_on_next_write(tmp_path):
    """A SIGKILLed writer leaves .NAME.HOST.PID.*.tmp; the next write of NAME removes it, not live ones."""
    import socket
    import subprocess
    import sys

    from scratchlm.fileio import _temp_prefix

    target = tmp_path / "model.pt"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        prefix = _temp_prefix(target).replace(f".{__import__('os').getpid()}.", ".{}.")
        stale = tmp_path / (prefix.format(dead.pid) + "abc.tmp")
        live = tmp_path / (prefix.format(alive.pid) + "def.tmp")
        other_host = tmp_path / f".model.pt.not-{socket.gethostname()}.{dead.pid}.ghi.tmp"
        for path in (stale, live, other_host):
            path.write_bytes(b"x" * 100)
        with atomic_open(target, "wb") as handle:
            handle.write(b"new")
        assert target.read_bytes() == b"new"
        assert not stale.exists() and live.exists() and other_host.exists()
    finally:
        alive.kill()
        alive.wait()


def test_unwritable_output_folder_is_one_clear_error(tmp_path, monkeypatch):
    import errno

    from scratchlm import fileio

    def refuse(*args, dir=None, **kwargs):  # what a read-only folder (or file system) answers
        raise PermissionError(errno.EACCES, "Permission denied", dir)

    monkeypatch.setattr(fileio.tempfile, "mkstemp", refuse)
    with pytest.raises(fileio.OutputError, match=r"ro: cannot write output out.txt \(Permission denied\)"):
        with atomic_open(tmp_path / "ro" / "out.txt") as handle:
            handle.write("x")


def test_stage_user_error_is_one_line_and_exit_1(tmp_path, monkeypatch, restore_logging):
    monkeypatch.chdir(tmp_path)
    smk = SimpleNamespace(rule="encode", log=["encode.log"], wildcards={}, threads=1)
    with pytest.raises(SystemExit) as stop:
        with stage(smk):
            open(tmp_path)  # a corpus path that is a directory
    assert stop.value.code == 1
    lines = [line for line in (tmp_path / "encode.log").read_text().splitlines() if "ERROR" in line]
    assert len(lines) == 1 and lines[0].endswith(f"encode: error: {tmp_path}: Is a directory")


def test_pickle_of_shared_references_is_refused_at_once(tmp_path):
    """A 2 KB pickle whose entries share one nested list took ~n^3 checks (seconds) before the refusal."""
    import time

    leaf = [b"x"] * 250
    middle = [leaf] * 250
    (tmp_path / "bomb.pkl").write_bytes(pickle.dumps({i: middle for i in range(250)}, protocol=5))
    assert (tmp_path / "bomb.pkl").stat().st_size < 2500
    started = time.perf_counter()
    with pytest.raises(ValueError, match=r"bomb.pkl: token 0 is a list, not bytes"):
        load_pickle(tmp_path / "bomb.pkl")
    assert time.perf_counter() - started < 1.0  # was ~9 s; the check is now linear in the file


@pytest.mark.parametrize("vocab_text, message", [
    ('{"a": -1}', r"token id -1 is not an integer in \[0, 16,777,216\)"),
    ('{"a": 0, "b": 0}', r"token id 0 is used twice"),
    ('{"a": 0, "a": 1}', r"token 'a' appears twice \(JSON keys must be unique\)"),
    ('{"a": "zero"}', r"token id 'zero' is not an integer"),
    ('["a", "b"]', r"expected a JSON object of token -> id, got a JSON array"),  # once: "not enough values"
    ('{"version": "1.0", "model": {"type": "BPE"}}', r"a Hugging Face tokenizer.json, not a GPT-2 vocab.json; "
                                                     r"import its model folder with `scratchlm import-hf"),
])
def test_gpt2_vocab_with_bad_ids_names_the_file_and_problem(tmp_path, vocab_text, message):
    """Once: OverflowError for -1; duplicate ids/keys silently dropped a token and a merge got the blame."""
    (tmp_path / "v.json").write_text(vocab_text)
    (tmp_path / "m.txt").write_text("#version: 0.2\n")
    with pytest.raises(ValueError, match=rf"v.json: {message}"):
        load_gpt2_format(tmp_path / "v.json", tmp_path / "m.txt")


def test_pickled_vocab_with_negative_id_names_the_file(tmp_path):
    from scratchlm.tokenizer import Tokenizer

    save_pickle({-1: b"a", **{i: bytes([i]) for i in range(256)}}, tmp_path / "v.pkl")
    save_pickle([], tmp_path / "m.pkl")
    with pytest.raises(ValueError, match=r"v.pkl: token id -1 is not an integer"):
        Tokenizer.from_files(tmp_path / "v.pkl", tmp_path / "m.pkl")
    with pytest.raises(ValueError, match=r"tokenizer vocab: token id -1"):
        Tokenizer({-1: b"a"}, [])


def test_require_file_names_each_problem(tmp_path, monkeypatch):
    import builtins

    from scratchlm.fileio import require_file

    with pytest.raises(FileNotFoundError, match=r"absent.txt: no such corpus file"):
        require_file(tmp_path / "absent.txt", "corpus file")
    with pytest.raises(IsADirectoryError, match=r": is a directory, not a corpus file"):
        require_file(tmp_path, "corpus file")
    locked = tmp_path / "locked.txt"
    locked.write_text("x")
    real_open = builtins.open

    def deny(path, *args, **kwargs):  # root ignores file modes, so deny the way a chmod 000 file does
        if str(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", deny)
    with pytest.raises(PermissionError, match=r"locked.txt: corpus file is not readable \(permission denied\)"):
        require_file(locked, "corpus file")


def test_rule_code_inputs_follow_the_imports(project_root):
    """Hand-kept lists had drifted: the tokenizer report imports reports/__init__.py, which was missing."""
    from scratchlm.code_inputs import code_inputs

    def files(script):
        return {path.split("src/scratchlm/")[1] for path in code_inputs(project_root / "workflow/scripts" / script)}

    report = files("tokenizer_report.py")
    assert {"reports/__init__.py", "reports/tokenizer_report.py", "tokenizer/tokenizer.py"} <= report
    assert "training/plots.py" in files("train.py")  # imported inside a function
    # Lazy package exports are followed only where they are used: counting shards does not
    # depend on the merge loop, so editing it does not redo pre-tokenization.
    assert "tokenizer/pretokenize.py" in files("pretokenize.py")
    assert not {"tokenizer/bpe.py", "tokenizer/fast_merge.py"} & files("pretokenize.py")
    assert {"tokenizer/bpe.py", "tokenizer/fast_merge.py"} <= files("train_bpe.py")


def test_a_rules_code_fingerprint_follows_only_the_code_its_script_runs(tmp_path):
    """A rule's `code` param: edits to a module its script imports (directly or not) change it, edits
    elsewhere in the package and a touch without an edit do not."""
    import os

    from scratchlm.code_inputs import code_fingerprint

    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "used.py").write_text("from pkg import deeper\n")
    (package / "deeper.py").write_text("X = 1\n")
    (package / "other.py").write_text("Y = 1\n")
    script = tmp_path / "script.py"
    script.write_text("from pkg.used import deeper\n")
    before = code_fingerprint(script, package)
    assert before.startswith("code of 4 files, sha256 ")  # the script, __init__, used, deeper
    (package / "other.py").write_text("Y = 2\n")
    os.utime(package / "deeper.py")
    assert code_fingerprint(script, package) == before
    (package / "deeper.py").write_text("X = 2\n")
    assert code_fingerprint(script, package) != before


def test_a_short_write_on_a_full_disk_is_called_disk_full(tmp_path, monkeypatch):
    """numpy's tofile reports a full disk as "N requested and M written", without an errno."""
    import shutil

    from scratchlm.fileio import OutputError, atomic_path

    (tmp_path / "ids.npy").write_bytes(b"previous")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10**9, 10**9, 0))
    with pytest.raises(OutputError, match=r"ids.npy: disk full while writing \(268115 requested and 32704 written\); "
                                          r"the previous file, if any, is unchanged"):
        with atomic_path(tmp_path / "ids.npy"):
            raise OSError("268115 requested and 32704 written")
    assert (tmp_path / "ids.npy").read_bytes() == b"previous" and len(list(tmp_path.iterdir())) == 1
    monkeypatch.undo()
    with pytest.raises(OSError, match="^boom$"):  # with space left, a short write is not called a full disk
        with atomic_path(tmp_path / "ids.npy"):
            raise OSError("boom")


def test_encoding_onto_a_full_file_system_says_disk_full(tmp_path, fixtures_dir, capsys, full_disk):
    from scratchlm.cli import main

    text = tmp_path / "text.txt"
    text.write_text((fixtures_dir / "corpus.en").read_text(encoding="utf-8") * 3, encoding="utf-8")
    vocab, merges = fixtures_dir / "gpt2_vocab.json", fixtures_dir / "gpt2_merges.txt"
    assert main(["encode", str(text), str(full_disk / "ids.npy"), "--vocab", str(vocab), "--merges", str(merges),
                 "--workers", "1"]) == 1
    assert f"{full_disk / 'ids.npy'}: disk full while writing" in capsys.readouterr().err
    assert not list(full_disk.iterdir())  # no partial file left


def test_a_checkpoint_onto_a_full_file_system_says_disk_full(full_disk):
    """Once: torch's RuntimeError "unexpected pos 83904 vs 83856" (its writer saw a short write)."""
    import torch

    from scratchlm.training.checkpoint import save_checkpoint

    small = torch.nn.Linear(8, 8)
    save_checkpoint(small, None, 1, full_disk / "step.pt")
    previous = (full_disk / "step.pt").read_bytes()
    from scratchlm.fileio import OutputError

    with pytest.raises(OutputError, match=r"step.pt: disk full while writing .*previous file, if any, is unchanged"):
        save_checkpoint(torch.nn.Linear(256, 256), None, 2, full_disk / "step.pt")
    assert (full_disk / "step.pt").read_bytes() == previous and len(list(full_disk.iterdir())) == 1
