from scratchlm.generation import write_samples
from scratchlm.pipeline import stage

with stage(snakemake):
    write_samples(
        snakemake.params.run_dir,
        snakemake.output[0],
        valid=snakemake.input.valid,
        special_tokens=snakemake.params.special_tokens,
        device=snakemake.params.device,
        **snakemake.params.generation,
    )
