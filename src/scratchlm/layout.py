"""Where every pipeline output lives: the one home for the names of files under ``results/``.

The Snakemake rules, the command line, the training data lookup, the reports and generation
all ask a :class:`Layout` for paths, so renaming an output is a change here and nowhere else.
Methods take names and return the path as a string; give them Snakemake wildcards and they
return a rule's pattern.

>>> layout = Layout()
>>> layout.vocab_pkl("owt")
'results/owt_vocab.pkl'
>>> layout.ids("{corpus}", "{split}")
'results/corpora/{corpus}/{split}.npy'
>>> RunFiles("results/runs/demo").summary
PosixPath('results/runs/demo/summary.json')
"""

from __future__ import annotations

import difflib
import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from scratchlm.fileio import read_json_object

RESULTS = "results"
SPLITS = ("train", "valid")


# An experiment report's files (results/experiments/{experiment}/), by write_comparison's names for them.
EXPERIMENT_FILE_NAMES = {"markdown": "report.md", "json": "summary.json", "curves": "curves.png",
                         "sweep": "sweep.png"}

# RunFiles attribute -> file name in the run folder.
RUN_FILE_NAMES = {
    # Written when the run finishes (config.json and metrics.jsonl also grow while it trains).
    "model": "model.pt", "meta": "model.json", "summary": "summary.json", "metrics": "metrics.jsonl",
    "curves": "curves.png", "config": "config.json",
    # Written by later stages, and the run's working files.
    "samples": "samples.md", "hf": "hf", "checkpoints": "checkpoints", "lock": ".lock",
    # Links to the final files, where Snakemake (which deletes a job's declared outputs before it
    # reruns it) does not look: a run moved aside keeps every file.
    "kept": "checkpoints/final",
    "replaced": "replaced",  # runs moved aside by --fresh (or a changed config in the pipeline)
    # The tokenizer of a run imported from Hugging Face (pipeline runs point to their corpus's).
    "vocab": "vocab.pkl", "merges": "merges.pkl",
}


class RunFiles:
    """The files of one run folder (``results/runs/{run}/``, or any folder ``scratchlm train`` wrote),
    as attributes named in :data:`RUN_FILE_NAMES`: ``RunFiles(folder).summary`` is ``folder / "summary.json"``."""

    FINAL = tuple(RUN_FILE_NAMES[key] for key in ("model", "meta", "summary", "metrics", "curves", "config"))

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        for attribute, name in RUN_FILE_NAMES.items():
            setattr(self, attribute, self.folder / name)


def read_summary(run_dir: str | os.PathLike) -> dict | None:
    """A run folder's summary.json, None before the run finished; a ValueError naming it if damaged."""
    path = RunFiles(run_dir).summary
    return read_json_object(path, what="run summary") if path.is_file() else None


def run_folders(runs_dir: str | os.PathLike, *markers: str) -> list[Path]:
    """The run folders under ``runs_dir`` (at any depth: experiments nest theirs) that hold one of the
    files ``markers`` (``summary.json``: finished; ``config.json``: started; ``model.json``: a model,
    imported ones included), sorted. Not runs: the runs moved aside (``replaced/``), the kept final
    files (``checkpoints/``) and any folder inside a run (its Hugging Face export, ``hf/``, holds a
    config.json of its own)."""
    runs_dir, inside = Path(runs_dir), {RUN_FILE_NAMES["replaced"], RUN_FILE_NAMES["checkpoints"]}
    found = {path.parent for marker in markers for path in runs_dir.rglob(marker)
             if not inside & set(path.relative_to(runs_dir).parts)}
    return sorted(folder for folder in found if not found & set(folder.parents))


def require_run_folder(run_dir: str | os.PathLike) -> Path:
    """``run_dir`` if it is a folder; else FileNotFoundError saying there is no such run, with the
    closest names of the runs beside it (a typo of a run's name is the usual cause)."""
    run_dir = Path(run_dir)
    if run_dir.is_dir():
        return run_dir
    parent = run_dir.parent
    names = [path.relative_to(parent).as_posix() for path in
             run_folders(parent, RUN_FILE_NAMES["config"], RUN_FILE_NAMES["meta"])] if parent.is_dir() else []
    close = difflib.get_close_matches(run_dir.name, names, n=3, cutoff=0.6)
    hint = (f"; did you mean {' or '.join(close)}?" if close
            else f"; runs there: {', '.join(names[:10])}{' ...' if len(names) > 10 else ''}" if names
            else f" (no runs in {parent})")
    raise FileNotFoundError(f"no such run: {run_dir}{hint}")


@dataclass(frozen=True)
class Layout:
    """Paths of the pipeline's outputs under one results folder."""

    root: str = RESULTS

    def _path(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    # --- corpora: one folder each (text, shards, tokenizer files, encoded splits) ------------
    def corpus_dir(self, corpus: str) -> str:
        """The folder of everything made from one corpus (the CS336 pickles excepted)."""
        return self._path("corpora", corpus)

    def corpus_text(self, corpus: str, split: str) -> str:
        """The downloaded or generated text of one split."""
        return self._path("corpora", corpus, f"{split}.txt")

    def shard_plan(self, corpus: str, split: str) -> str:
        """Byte ranges of the split's shards (pre-tokenization and encoding map over them)."""
        return self._path("corpora", corpus, "shards", split, "plan.json")

    def shard_counts(self, corpus: str, shard: str | int) -> str:
        """Pre-token counts of one shard of the train split (temporary)."""
        return self._path("corpora", corpus, "shards", "train", f"{shard}.parquet")

    def shard_ids(self, corpus: str, split: str, shard: str | int) -> str:
        """Token ids of one shard (temporary; concatenated into :meth:`ids`)."""
        return self._path("corpora", corpus, "shards", split, f"{shard}.npy")

    def ids(self, corpus: str, split: str) -> str:
        """The encoded split: uint16 token ids."""
        return self._path("corpora", corpus, f"{split}.npy")

    # --- tokenizers -----------------------------------------------------------------------
    def vocab_pkl(self, corpus: str) -> str:
        """The tokenizer's vocabulary, ``{id: bytes}`` pickled (the CS336 form and name, kept at the top
        so that ``snakemake results/owt_vocab.pkl`` and CS336 code find it)."""
        return self._path(f"{corpus}_vocab.pkl")

    def merges_pkl(self, corpus: str) -> str:
        """The tokenizer's merges, ``[(bytes, bytes)]`` pickled."""
        return self._path(f"{corpus}_merges.pkl")

    def tokenizer_dir(self, corpus: str) -> str:
        """The tokenizer in the other formats, with its summary (a folder transformers loads)."""
        return self._path("corpora", corpus, "tokenizer")

    def vocab_json(self, corpus: str) -> str:
        """GPT-2 ``vocab.json`` form of the vocabulary."""
        return self._path("corpora", corpus, "tokenizer", "vocab.json")

    def merges_txt(self, corpus: str) -> str:
        """GPT-2 ``merges.txt`` form of the merges."""
        return self._path("corpora", corpus, "tokenizer", "merges.txt")

    def hf_tokenizer(self, corpus: str) -> str:
        """Hugging Face ``tokenizer.json`` of the tokenizer."""
        return self._path("corpora", corpus, "tokenizer", "tokenizer.json")

    def tokenizer_summary(self, corpus: str) -> str:
        """Counts and timings of the tokenizer's training."""
        return self._path("corpora", corpus, "tokenizer", "summary.json")

    def tokenizer_files(self, corpus: str) -> dict[str, str]:
        """Every file the BPE stage writes, by the name ``train_from_shards`` gives it."""
        return {"vocab_pkl": self.vocab_pkl(corpus), "merges_pkl": self.merges_pkl(corpus),
                "vocab_json": self.vocab_json(corpus), "merges_txt": self.merges_txt(corpus),
                "tokenizer_json": self.hf_tokenizer(corpus), "summary_json": self.tokenizer_summary(corpus)}

    @staticmethod
    def corpora_with(output: Callable[[str], str]) -> list[str]:
        """The corpora for which ``output(corpus)`` exists, e.g. ``corpora_with(layout.vocab_pkl)``."""
        prefix, suffix = output("\0").split("\0")
        found = glob.glob(glob.escape(prefix) + "*" + suffix)
        return sorted(path[len(prefix):len(path) - len(suffix)] for path in found)

    # --- runs -----------------------------------------------------------------------------
    def runs_dir(self) -> str:
        """The folder of run folders."""
        return self._path("runs")

    def run_dir(self, run: str) -> str:
        """One run folder (its files: :class:`RunFiles`)."""
        return self._path("runs", run)

    def run_file(self, run: str, name: str) -> str:
        """A file of one run folder, by name (``summary.json``, ``samples.md``, ``hf``...)."""
        return self._path("runs", run, name)

    # --- experiments ----------------------------------------------------------------------
    def experiments_dir(self) -> str:
        """The folder of experiment reports."""
        return self._path("experiments")

    def experiment_files(self, experiment: str) -> dict[str, str]:
        """The files of one experiment's report, by the name ``write_comparison`` gives them."""
        return {key: self._path("experiments", experiment, name) for key, name in EXPERIMENT_FILE_NAMES.items()}

    # --- reports and job records ----------------------------------------------------------
    def report(self, name: str) -> str:
        """A report file (``tokenizer.md``, ``training.png``...)."""
        return self._path("reports", name)

    def index(self) -> str:
        """The page linking every report and run."""
        return self._path("index.md")

    def logs_dir(self) -> str:
        """The folder of job logs (``<rule>/<job>.log``)."""
        return self._path("logs")

    def log(self, rule: str, job: str) -> str:
        """The log of one job."""
        return self._path("logs", rule, f"{job}.log")

    def benchmark(self, rule: str, job: str) -> str:
        """Snakemake's ``benchmark:`` record of one job."""
        return self._path("benchmarks", rule, f"{job}.tsv")

    def profile(self, rule: str, job: str) -> str:
        """The stage's own process-tree profile of one job."""
        return self._path("profiles", rule, f"{job}.json")
