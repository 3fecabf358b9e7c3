from scratchlm.data.download import download_source
from scratchlm.pipeline import stage
from scratchlm.settings import DownloadSettings, SourceSettings

with stage(snakemake):
    download_source(SourceSettings.model_validate(snakemake.params.source), snakemake.output[0],
                    DownloadSettings.model_validate(snakemake.params.settings))
