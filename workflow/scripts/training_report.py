from scratchlm.pipeline import stage
from scratchlm.reports.training_report import write_training_report

with stage(snakemake):
    write_training_report(snakemake.params.runs, snakemake.output.markdown, snakemake.output.plot)
