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
include: "workflow/rules/reports.smk"


rule all:
    input:
        get_final_output(),
    default_target: True
