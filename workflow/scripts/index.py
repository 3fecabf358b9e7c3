from scratchlm.pipeline import stage
from scratchlm.reports.index import write_index

with stage(snakemake):
    write_index(snakemake.params.results, snakemake.output[0])
