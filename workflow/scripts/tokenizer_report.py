from scratchlm.pipeline import stage
from scratchlm.reports.tokenizer_report import write_tokenizer_report

with stage(snakemake):
    write_tokenizer_report(
        snakemake.params.results,
        snakemake.params.special_tokens,
        snakemake.output.markdown,
        snakemake.output.json,
        documents=snakemake.params.documents,
        throughput_mb=snakemake.params.throughput_mb,
        workers=snakemake.params.workers,
        seed=snakemake.params.seed,
    )
