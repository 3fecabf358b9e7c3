from scratchlm.pipeline import stage
from scratchlm.tokenizer.encode import concatenate_ids

with stage(snakemake):
    concatenate_ids(snakemake.input.parts, snakemake.output[0])
