"""The sections of the pipeline's configuration (config.yaml) besides training: targets, corpora,
download, BPE, encoding, generation and the accounting report; and the whole, ``ProjectSettings``."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints, model_validator

from scratchlm.settings.base import Float, Int, Name, Section
from scratchlm.settings.experiments import ExperimentSettings
from scratchlm.settings.run import TrainingSettings

END_OF_TEXT = "<|endoftext|>"  # the default special token: it separates documents
UINT16_IDS = 2**16  # encoded splits are uint16 arrays
BYTE_TOKENS = 256


class SourceSettings(Section):
    """Where a corpus split is downloaded from."""

    url: str = Field(min_length=1)
    """https://, http://, file:// URL or a local path; .gz is decompressed on the fly"""
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    """checksum of the transferred bytes (before decompression)"""
    allow_unverified: bool = False
    """accept a transfer whose completeness nothing proves (no length, not chunked, no sha256)"""


class GeneratorSettings(Section):
    """The offline demo corpus (scratchlm.data.demo), generated instead of downloaded."""

    seed: Int = 0
    """random seed: the same seed and split give the same bytes"""
    train_mb: Float = Field(20.0, gt=0)
    """MiB of the train split"""
    valid_mb: Float = Field(1.0, gt=0)
    """MiB of the valid split"""


class CorpusSettings(Section):
    """A corpus: its text (generated, or downloaded per split) and the tokenizer trained on it."""

    train: SourceSettings | None = None
    """the train split's source"""
    valid: SourceSettings | None = None
    """the valid split's source"""
    generator: GeneratorSettings | None = None
    """generate the demo corpus instead of downloading"""
    special_tokens: list[Annotated[str, StringConstraints(min_length=1)]] = Field([END_OF_TEXT], min_length=1)
    """special tokens, in id order; the first one separates documents"""
    vocab_size: Int
    """the tokenizer's size: special tokens + 256 bytes + merges (at most 65,536: ids are uint16)"""

    @model_validator(mode="after")
    def _text_and_size(self) -> CorpusSettings:
        sources = [split for split in ("train", "valid") if getattr(self, split) is not None]
        if self.generator is not None and sources:
            raise ValueError(f"set either `generator:` or the `train:` and `valid:` sources, not both "
                             f"(it has generator and {' and '.join(sources)})")
        if self.generator is None and len(sources) < 2:
            missing = " and ".join(split for split in ("train", "valid") if split not in sources)
            raise ValueError(f"a corpus needs a `generator:` or `train:` and `valid:` sources (missing: {missing})")
        smallest = BYTE_TOKENS + len(self.special_tokens)
        if not smallest <= self.vocab_size <= UINT16_IDS:
            raise ValueError(f"vocab_size {self.vocab_size} is outside [{smallest}, {UINT16_IDS}]: 256 bytes + "
                             f"{len(self.special_tokens)} special token(s) at least, and ids must fit in uint16")
        return self

    def source(self, split: str) -> SourceSettings:
        """The download source of one split."""
        return getattr(self, split)


class DownloadSettings(Section):
    """How corpus files are downloaded."""

    retries: Int = Field(5, ge=1)
    """consecutive attempts without progress before giving up (resuming with HTTP Range)"""
    timeout_s: Float = Field(60.0, gt=0)
    """socket timeout per read, in seconds"""
    backoff_s: Float = Field(2.0, ge=0)
    """first retry delay in seconds, doubled each failure"""


class BpeSettings(Section):
    """BPE training as map-reduce: the train split is cut at documents into shards, one job each."""

    shard_mb: Float = Field(64.0, gt=0)
    """MiB of text per pre-tokenization (and encode_shard) job: ~3 s of counting against ~1.5 s of start-up"""


class EncodeSettings(Section):
    """Encoding corpora into uint16 ids, and the tokenizer report."""

    chunk_mb: Float = Field(4.0, gt=0)
    """MiB of text an encode job encodes at once (its memory is about 8x this)"""
    report_documents: Int = Field(10, ge=1)
    """documents sampled from each valid split for the report's compression ratios"""
    report_throughput_mb: Float = Field(4.0, gt=0)
    """MiB of each valid split encoded (one process) to measure throughput"""
    report_workers: Int = Field(16, ge=1)
    """processes assumed in the report's projection for the Pile"""
    report_seed: Int = 0
    """seed of the report's document sample"""


class SamplingSettings(Section):
    """One way of sampling; temperature 0 is greedy."""

    temperature: Float = Field(0.8, ge=0)
    """softmax temperature; 0 = greedy"""
    top_p: Float = Field(0.95, gt=0, le=1)
    """nucleus sampling mass; 1 = off"""


class GenerationSettings(Section):
    """samples.md of every target run: each prompt at each sampling setting, and the perplexity."""

    prompts: list[str] = Field(["Once upon a time", ""], min_length=1)
    """prompts; an empty one starts a new document after the separator"""
    settings: list[SamplingSettings] = Field(
        [SamplingSettings(temperature=0.0, top_p=1.0), SamplingSettings(temperature=0.7, top_p=0.9),
         SamplingSettings(temperature=1.0, top_p=1.0)], min_length=1)
    """one samples.md section per entry"""
    max_new_tokens: Int = Field(128, ge=1)
    """most tokens per sample (it stops earlier at the separator)"""
    seed: Int = 0
    """prompt i samples with seed + i"""
    perplexity_tokens: Int | None = Field(32768, ge=2)
    """validation tokens evaluated for the perplexity; null: the whole split"""
    batch_size: Int = Field(16, ge=1)
    """context windows per forward pass when computing the perplexity"""


class AccountingSettings(Section):
    """The accounting report's training-time estimate (CS336: GPT-2 XL on one A100)."""

    steps: Int = Field(400_000, ge=1)
    """training steps of the estimate"""
    batch_size: Int = Field(1024, ge=1)
    """sequences per step of the estimate"""
    peak_tflops: Float = Field(19.5, gt=0)
    """the device's peak TFLOP/s (A100 float32)"""
    mfu: Float = Field(0.5, gt=0, le=1)
    """model FLOPs utilisation assumed"""
    memory_gb: Float = Field(80.0, gt=0)
    """device memory in decimal GB, for the largest batch that fits"""


class Targets(Section):
    """What `snakemake` builds without a target."""

    corpora: list[str] = []
    """corpora to tokenize and encode (with the tokenizer report)"""
    runs: list[str] = []
    """runs to train (with samples, export and the training report)"""
    experiments: list[str] = []
    """experiments to run (their runs and their report)"""


class ProjectSettings(Section):
    """The whole pipeline configuration. Runs are kept as written (override blocks on `training:`);
    ``scratchlm.settings.load_project`` checks them, and ``resolve_run`` resolves one."""

    targets: Targets = Targets()
    """what the pipeline builds by default"""
    corpora: dict[Name, CorpusSettings] = Field(min_length=1)
    """corpora by name"""
    download: DownloadSettings = DownloadSettings()
    """downloads"""
    bpe: BpeSettings = BpeSettings()
    """BPE training"""
    encode: EncodeSettings = EncodeSettings()
    """encoding and the tokenizer report"""
    training: TrainingSettings = TrainingSettings()
    """defaults of every run"""
    runs: dict[Name, dict[str, Any]] = {}
    """runs by name: settings that differ from `training:`"""
    experiments: dict[Name, ExperimentSettings] = {}
    """experiments by name: a base run varied over a grid, variants and seeds, one report each"""
    generation: GenerationSettings = GenerationSettings()
    """samples of every trained run"""
    accounting: AccountingSettings = AccountingSettings()
    """the accounting report"""

    def corpus(self, name: str) -> CorpusSettings:
        """One corpus, with a clear error for unknown names."""
        if name not in self.corpora:
            raise ValueError(f"corpus {name!r} is not configured under `corpora:` "
                             f"(configured: {', '.join(sorted(self.corpora)) or 'none'})")
        return self.corpora[name]
