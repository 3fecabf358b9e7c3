from scratchlm.data.demo import write_demo_corpus
from scratchlm.pipeline import stage
from scratchlm.settings import GeneratorSettings

with stage(snakemake):
    generator = GeneratorSettings.model_validate(snakemake.params.generator)
    split = snakemake.wildcards.split
    write_demo_corpus(snakemake.output[0], seed=generator.seed, split=split,
                      size_mb=getattr(generator, f"{split}_mb"), special_token=snakemake.params.special_token)
