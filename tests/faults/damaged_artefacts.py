"""Damage every artefact of a finished pipeline in every way and run each command that reads it.

    .venv/bin/python tests/faults/damaged_artefacts.py            # 252 cases, ~4 minutes on 2 cores
    .venv/bin/python tests/faults/damaged_artefacts.py --only npy  # the artefacts whose path holds "npy"

The pipeline runs once on ``.test/config.yaml`` (a scratch folder); each case copies its results,
damages one file (emptied, cut in half, random bytes, removed, a folder in its place, not UTF-8,
JSON of the wrong shape, a bad JSON line) and runs one ``scratchlm`` command on it. Outcomes:

- ``named``: exit 1 with one line naming the file (or its folder): what a user error should give.
- ``accepted``: exit 0. Right where the command does not need the file, or the damage leaves it
  usable (random text is still a corpus); the listing shows each one to judge.
- ``unnamed``: one line that does not name the file; ``traceback``; ``hang`` (over 120 s).

Exit status 1 if any case is unnamed, a traceback or a hang. Not part of ``make test`` (minutes);
the regressions it found are unit tests (tests/test_damaged_inputs.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
SCRATCHLM = [sys.executable, "-m", "scratchlm.cli"]
RUN, TOKENIZER = "results/runs/tiny", "results/corpora/demo/tokenizer"
CONFIG = ["--config", "config.yaml", "--results", "results"]
ENCODE = ["encode", "results/corpora/demo/valid.txt", "out/x.npy"]
GENERATE = ["generate", "tiny", "--results", "results", "--output", "out/s.md", "--max-new-tokens", "4"]
COMPARE = ["compare", "--out", "out/cmp", "--results", "results", "tiny"]
TRAINING_REPORT = ["report", "training", "--results", "results", "--markdown", "out/t.md", "--plot", "out/t.png"]
INDEX = ["report", "index", "--results", "results", "--markdown", "out/i.md"]
IMPORT = ["import-hf", f"{RUN}/hf", "imported", "--results", "results"]
TRAIN_ELSEWHERE = ["train", "tiny", *CONFIG, "--run-dir", "out/run"]

# Each artefact and the commands that read it.
READERS: dict[str, list[list[str]]] = {
    "results/corpora/demo/train.txt": [["plan-shards", "results/corpora/demo/train.txt", "out/plan.json"],
                                       ["encode", "results/corpora/demo/train.txt", "out/x.npy", "--vocab",
                                        f"{TOKENIZER}/vocab.json", "--merges", f"{TOKENIZER}/merges.txt"]],
    "results/corpora/demo/shards/train/plan.json": [["pretokenize", "results/corpora/demo/shards/train/plan.json",
                                                     "0", "out/s.parquet"]],
    "shard.parquet": [["train-bpe", "--name", "x", "--vocab-size", "300", "--results", "out", "shard.parquet"]],
    f"{TOKENIZER}/vocab.json": [[*ENCODE, "--vocab", f"{TOKENIZER}/vocab.json", "--merges", f"{TOKENIZER}/merges.txt"]],
    f"{TOKENIZER}/merges.txt": [[*ENCODE, "--vocab", f"{TOKENIZER}/vocab.json", "--merges", f"{TOKENIZER}/merges.txt"]],
    "results/demo_vocab.pkl": [[*ENCODE, "--vocab", "results/demo_vocab.pkl", "--merges", "results/demo_merges.pkl"],
                               GENERATE],
    "results/demo_merges.pkl": [[*ENCODE, "--vocab", "results/demo_vocab.pkl", "--merges", "results/demo_merges.pkl"]],
    "results/corpora/demo/train.npy": [TRAIN_ELSEWHERE],
    "results/corpora/demo/valid.npy": [TRAIN_ELSEWHERE],
    f"{RUN}/model.pt": [GENERATE, ["export", "tiny", "--results", "results", "--output", "out/hf"]],
    f"{RUN}/model.json": [GENERATE, ["export", "tiny", "--results", "results", "--output", "out/hf"]],
    f"{RUN}/config.json": [GENERATE, COMPARE, ["train", "tiny", *CONFIG]],
    f"{RUN}/summary.json": [COMPARE, TRAINING_REPORT, INDEX, ["train", "tiny", *CONFIG]],
    f"{RUN}/metrics.jsonl": [COMPARE, TRAINING_REPORT],
    f"{RUN}/checkpoints/step_0000040.pt": [["train", "tiny", *CONFIG, "--set", "steps=50"]],
    f"{RUN}/hf/config.json": [IMPORT],
    f"{RUN}/hf/model.safetensors": [IMPORT],
    f"{RUN}/hf/tokenizer.json": [IMPORT],
    "config.yaml": [["config", "show", "--config", "config.yaml", "tiny"], TRAIN_ELSEWHERE,
                    ["report", "experiment", "tiny-lr", *CONFIG]],
    "results/profiles/train/tiny.json": [["report", "profile", "--results", "results", "--markdown", "out/p.md",
                                          "--plot", "out/p.png"]],
}


def damages(path: str) -> list[str]:
    """The ways to damage the file at ``path``."""
    kinds = ["empty", "half", "garbage", "missing", "folder", "not-utf8"]
    if path.endswith(".json"):
        kinds += ["json-array", "json-null", "json-string", "json-empty-object"]
    if path.endswith(".jsonl"):
        kinds += ["jsonl-bad-line", "jsonl-array-line"]
    return kinds


def damage(path: Path, kind: str, seed: int) -> None:
    """Damage the file at ``path`` in the way ``kind``."""
    data = path.read_bytes()
    replacements = {"empty": b"", "half": data[:len(data) // 2], "not-utf8": b"\xff\xfe\x80" + data[3:],
                    "garbage": random.Random(seed).randbytes(max(64, min(len(data), 4096))),
                    "json-array": b"[1, 2]", "json-null": b"null", "json-string": b'"x"', "json-empty-object": b"{}",
                    "jsonl-bad-line": data + b'{"step": \n', "jsonl-array-line": b"[1]\n" + data}
    if kind in ("missing", "folder"):
        path.unlink()
        if kind == "folder":
            path.mkdir()
    else:
        path.write_bytes(replacements[kind])


def build_base(folder: Path) -> None:
    """The .test pipeline's results in ``folder``, plus one pre-token shard (the pipeline's are temporary)."""
    folder.mkdir(parents=True)
    shutil.copy(PROJECT / ".test/config.yaml", folder / "config.yaml")
    subprocess.run([str(Path(sys.executable).parent / "snakemake"), "--snakefile", str(PROJECT / "Snakefile"),
                    "--directory", str(folder), "--cores", "2", "--quiet"], check=True, capture_output=True)
    subprocess.run([*SCRATCHLM, "pretokenize", "results/corpora/demo/shards/train/plan.json", "0", "shard.parquet"],
                   cwd=folder, check=True, capture_output=True)


def run_case(base: Path, path: str, kind: str, command: list[str]) -> dict:
    """Damage ``path`` in a copy of ``base``, run ``command`` there, and classify the outcome."""
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch) / "work"
        shutil.copytree(base, work, symlinks=True)
        (work / "out").mkdir()
        damage(work / path, kind, seed=len(path) * 31 + len(kind))
        case = {"file": path, "damage": kind, "command": " ".join(command[:2])}
        try:
            result = subprocess.run([*SCRATCHLM, *command], cwd=work, capture_output=True, text=True, timeout=120,
                                    env={**os.environ, "TQDM_DISABLE": "1"})
        except subprocess.TimeoutExpired:
            return {**case, "outcome": "hang"}
    last = (result.stderr.strip().splitlines() or [""])[-1]
    named = Path(path).name in last or Path(path).parent.name in last
    outcome = ("traceback" if "Traceback (most recent call last)" in result.stderr else
               "accepted" if result.returncode == 0 else "named" if named else "unnamed")
    return {**case, "outcome": outcome, "exit": result.returncode, "message": last[-240:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="only the artefacts whose path holds this text")
    parser.add_argument("--jobs", type=int, default=3, help="cases run at once")
    parser.add_argument("--json", type=Path, help="also write every case's outcome here (JSON lines)")
    args = parser.parse_args()
    cases = [(path, kind, command) for path, commands in READERS.items() if args.only in path
             for command in commands for kind in damages(path)]
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch) / "base"
        build_base(base)
        with ThreadPoolExecutor(args.jobs) as pool:
            results = list(pool.map(lambda case: run_case(base, *case), cases))
    for result in results:
        if result["outcome"] != "named":
            print(f"{result['outcome']:9} {result['file']} ({result['damage']}) | {result['command']} | "
                  f"{result.get('message', '')}")
    if args.json:
        args.json.write_text("".join(json.dumps(result) + "\n" for result in results))
    counts = Counter(result["outcome"] for result in results)
    print(f"{len(results)} cases: " + ", ".join(f"{counts[outcome]} {outcome}" for outcome in
                                               ("named", "accepted", "unnamed", "traceback", "hang")))
    return int(any(counts[outcome] for outcome in ("unnamed", "traceback", "hang")))


if __name__ == "__main__":
    sys.exit(main())
