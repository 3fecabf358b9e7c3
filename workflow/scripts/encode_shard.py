from scratchlm.pipeline import stage
from scratchlm.tokenizer.encode import encode_planned_shard

with stage(snakemake):
    encode_planned_shard(
        snakemake.input.plan,
        int(snakemake.wildcards.shard),
        snakemake.input.vocab,
        snakemake.input.merges,
        snakemake.output[0],
        special_tokens=snakemake.params.special_tokens,
        chunk_mb=snakemake.params.chunk_mb,
    )
