from scratchlm.pipeline import stage
from scratchlm.reports.accounting import write_accounting_report
from scratchlm.settings import AccountingSettings

with stage(snakemake):
    write_accounting_report(snakemake.output.markdown, snakemake.output.json, snakemake.output.plot,
                            AccountingSettings.model_validate(snakemake.params.settings))
