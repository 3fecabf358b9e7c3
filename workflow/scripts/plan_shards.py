from scratchlm.pipeline import stage
from scratchlm.tokenizer.shards import plan_shards

with stage(snakemake):
    plan_shards(snakemake.input.text, snakemake.output[0], special_tokens=snakemake.params.special_tokens,
                shard_mb=snakemake.params.shard_mb)
