from scratchlm.pipeline import stage
from scratchlm.reports.comparison import write_experiment_report

with stage(snakemake):
    write_experiment_report(snakemake.wildcards.experiment, snakemake.params.runs, snakemake.params.columns,
                            dict(snakemake.output.items()))
