from scratchlm.pipeline import stage
from scratchlm.tokenizer.shards import write_planned_shard

with stage(snakemake):
    write_planned_shard(snakemake.input.plan, int(snakemake.wildcards.shard), snakemake.output[0])
