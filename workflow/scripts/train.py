from pathlib import Path

from scratchlm.layout import Layout
from scratchlm.pipeline import settings_from_params, stage
from scratchlm.settings import CorpusSettings, RunSettings
from scratchlm.training.loop import corpus_data, train

with stage(snakemake):
    settings = RunSettings.from_dict(settings_from_params(snakemake, "settings"))
    corpus = CorpusSettings.model_validate(settings_from_params(snakemake, "corpus"))
    train(
        settings,
        corpus_data(settings.corpus, corpus, Layout(snakemake.params.results)),
        Path(snakemake.output.model_pt).parent,
        run_name=snakemake.wildcards.run,
        # Snakemake reruns this job only when data, code or settings changed: a finished run (or
        # one with other settings) is moved aside and trained again; a killed one resumes.
        replace_finished=True,
        threads=snakemake.threads,
    )
