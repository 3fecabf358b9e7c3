from scratchlm.generation import write_samples
from scratchlm.pipeline import stage
from scratchlm.settings import GenerationSettings

with stage(snakemake):
    write_samples(snakemake.params.run_dir, snakemake.output[0],
                  GenerationSettings.model_validate(snakemake.params.generation), valid=snakemake.input.valid,
                  device=snakemake.params.device, special_tokens=snakemake.params.special_tokens)
