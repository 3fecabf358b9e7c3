from scratchlm.pipeline import stage
from scratchlm.tokenizer.bpe import train_from_shards

with stage(snakemake):
    train_from_shards(snakemake.input.shards, vocab_size=snakemake.params.vocab_size,
                      special_tokens=snakemake.params.special_tokens, **dict(snakemake.output.items()))
