from scratchlm.pipeline import stage
from scratchlm.reports.tokenizer_report import write_tokenizer_report
from scratchlm.settings import EncodeSettings

with stage(snakemake):
    write_tokenizer_report(snakemake.params.results, snakemake.params.special_tokens, snakemake.output.markdown,
                           snakemake.output.json, EncodeSettings.model_validate(snakemake.params.settings))
