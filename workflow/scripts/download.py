from scratchlm.data.download import download
from scratchlm.pipeline import stage

with stage(snakemake):
    download(
        snakemake.params.url,
        snakemake.output[0],
        sha256=snakemake.params.sha256,
        allow_unverified=snakemake.params.allow_unverified,
        retries=snakemake.params.retries,
        timeout_s=snakemake.params.timeout_s,
        backoff_s=snakemake.params.backoff_s,
    )
