from scratchlm.pipeline import stage
from scratchlm.reports.profile import write_profile_report

with stage(snakemake):
    write_profile_report(snakemake.params.results, snakemake.output.markdown, snakemake.output.plot)
