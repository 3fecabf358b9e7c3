from scratchlm.hf import export_run
from scratchlm.pipeline import stage

with stage(snakemake):
    export_run(snakemake.params.run_dir, snakemake.output[0])
