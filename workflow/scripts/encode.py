from scratchlm.pipeline import stage
from scratchlm.tokenizer.encode import encode_corpus

with stage(snakemake):
    encode_corpus(
        snakemake.input.text,
        snakemake.input.vocab,
        snakemake.input.merges,
        snakemake.output[0],
        special_tokens=snakemake.params.special_tokens,
        workers=snakemake.threads,
        chunk_mb=snakemake.params.chunk_mb,
    )
