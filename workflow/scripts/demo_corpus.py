from scratchlm.data.demo import write_demo_corpus
from scratchlm.pipeline import stage

with stage(snakemake):
    write_demo_corpus(
        snakemake.output[0],
        seed=snakemake.params.seed,
        split=snakemake.wildcards.split,
        size_mb=snakemake.params.size_mb,
        special_token=snakemake.params.special_token,
    )
