# scratchlm pipeline: download -> pre-tokenize (map) -> train BPE (reduce) -> encode ->
# train LM -> generate -> reports. Each stage group is one file under workflow/rules/;
# every rule has log: and benchmark:, and depends on the src files its script imports.
from snakemake.utils import min_version

min_version("8.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/tokenizer.smk"
include: "workflow/rules/encode.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/experiments.smk"
include: "workflow/rules/reports.smk"


rule all:
    input:
        get_final_output(),
    default_target: True


# With --keep-going, a failed run must not keep every comparison from being built: once the jobs
# that could run have, the experiment reports, the training report and the index are written from
# the runs that finished, naming the others (scratchlm.reports.after_failure).
onerror:
    write_reports_after_failure()
