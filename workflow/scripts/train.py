from pathlib import Path

from scratchlm.pipeline import stage
from scratchlm.training.config import RunSettings
from scratchlm.training.loop import train

with stage(snakemake):
    settings = RunSettings.from_dict(snakemake.params.settings)
    train(
        settings,
        {
            "corpus": settings.corpus,
            "train": snakemake.input.train,
            "valid": snakemake.input.valid,
            "vocab": snakemake.input.vocab,
            "merges": snakemake.input.merges,
            "vocab_size": snakemake.params.vocab_size,
            "special_tokens": snakemake.params.special_tokens,
        },
        Path(snakemake.output.model_pt).parent,
        run_name=snakemake.wildcards.run,
        # Snakemake reruns this job only when data, code or settings changed: a finished run (or
        # one with other settings) is moved aside and trained again; a killed one resumes.
        replace_finished=True,
        threads=snakemake.threads,
    )
