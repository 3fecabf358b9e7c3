from scratchlm.layout import Layout
from scratchlm.pipeline import stage
from scratchlm.tokenizer.bpe import train_into_layout

with stage(snakemake):
    train_into_layout(snakemake.input.shards, Layout(snakemake.params.results), snakemake.wildcards.corpus,
                      vocab_size=snakemake.params.vocab_size, special_tokens=snakemake.params.special_tokens)
