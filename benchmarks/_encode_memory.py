"""The optional parts of benchmarks/encode.py (not a benchmark itself): memory of streaming and of
the encode stage, and pathological inputs."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _docs_corpus import BENCH_DIR, docs_corpus
from encode import EOT, FLOOR, files_of, run_child


TIMEOUT_S = 120
# Inputs that defeat a naive BPE: one pre-token of millions of bytes, or none of the usual cuts.
PATHOLOGICAL = {
    "one letter": "a",
    "spaces": " ",
    "one emoji": "🙃",
    "digits": "7",
    "no separators": "".join(chr(0x21 + k % 15) + "x" for k in range(64)),  # symbols and letters, no space
}


def big_file(megabytes: int) -> Path:
    """The docs corpus repeated to ``megabytes`` MB, documents separated by <|endoftext|>."""
    text = docs_corpus("train").read_bytes()
    path = BENCH_DIR / f"docs_{megabytes}mb.txt"
    if not path.exists() or path.stat().st_size < megabytes * 10**6:
        with open(path, "wb") as handle:
            while handle.tell() < megabytes * 10**6:
                handle.write(text + EOT.encode())
    return path


def stream_rss(name: str, megabytes: int) -> None:
    """Peak RSS of a process streaming a large file: ours through encode_iterable, tiktoken by line;
    and of a process that only runs one compiled kernel (the interpreter, numpy, our kernels)."""
    path = big_file(megabytes)
    peaks = {}
    for encoder in ("tiktoken", "ours", FLOOR):
        seconds, result = run_child(encoder, name, [path], "--stream")
        peaks[encoder] = result["peak_rss_mb"]
        print(f"stream {path.stat().st_size / 1e6:.0f} MB, {encoder}: peak RSS {peaks[encoder]:.0f} MiB, "
              f"{seconds:.1f} s, {result['ids']:,} ids", flush=True)
    print(f"peak RSS ours/tiktoken {peaks['ours'] / peaks['tiktoken']:.2f}x (target <= 2x); the floor alone "
          f"{peaks[FLOOR] / peaks['tiktoken']:.2f}x, ours above it {peaks['ours'] - peaks[FLOOR]:.0f} MiB", flush=True)


def pathological(name: str, megabytes: float) -> None:
    """Time and peak RSS of each pathological input at a quarter of ``megabytes`` and at all of it
    (linear time: about 4x), ours next to tiktoken (stopped after TIMEOUT_S)."""
    with tempfile.TemporaryDirectory(dir=BENCH_DIR) as folder:
        for label, unit in PATHOLOGICAL.items():
            for size in (megabytes / 4, megabytes):
                path = Path(folder) / "input.txt"
                repeats = int(size * 2**20) // len(unit.encode())
                path.write_text(unit * repeats, encoding="utf-8")
                row = []
                for encoder in ("ours", "tiktoken"):
                    try:
                        seconds, result = run_child(encoder, name, [path], timeout=TIMEOUT_S)
                    except subprocess.TimeoutExpired:
                        row.append(f"{encoder} > {TIMEOUT_S} s")
                        continue
                    except subprocess.CalledProcessError as error:
                        row.append(f"{encoder} failed: {error.stderr.strip().splitlines()[-1]}")
                        continue
                    row.append(f"{encoder} {seconds:.2f} s, peak RSS {result['peak_rss_mb']:.0f} MiB")
                print(f"{label}, {size:g} MiB: {'; '.join(row)}", flush=True)


# The stage in a process of its own, measured from inside (main + workers): a monitor here would
# add this process, which holds the corpus and both tokenizers after the speed rounds.
_STAGE_CHILD = """
import json, sys
from scratchlm.cli import main
from scratchlm.profiling import ProcessTreeMonitor
with ProcessTreeMonitor("encode") as monitor:
    main(sys.argv[1:])
print(json.dumps({"wall_s": monitor.profile.wall_s, "peak_rss_mb": monitor.profile.peak_rss_mb}))
"""


def stage_rss(megabytes: int) -> None:
    """Peak RSS of `scratchlm encode` (one worker) on files of ``megabytes`` and 3x that: the same
    when memory is bounded by the chunk, not the file."""
    for size in (megabytes, 3 * megabytes):
        path = big_file(size)
        with tempfile.TemporaryDirectory(dir=BENCH_DIR) as folder:
            vocab, merges = files_of("owt-32k")
            command = ["encode", str(path), str(Path(folder) / "ids.npy"), "--vocab", str(vocab), "--merges",
                       str(merges), "--workers", "1"]
            done = subprocess.run([sys.executable, "-c", _STAGE_CHILD, *command], check=True, stdout=subprocess.PIPE,
                                  text=True)
        profile = json.loads(done.stdout.splitlines()[-1])
        print(f"scratchlm encode, {path.stat().st_size / 1e6:.0f} MB, 1 worker: {profile['wall_s']:.1f} s, "
              f"peak RSS {profile['peak_rss_mb']:.0f} MiB", flush=True)
