# Reports: resource accounting (from model configurations alone), training (from the runs),
# pipeline profile (from every other job's benchmark and profile) and results/index.md.
# This file is included LAST: the profile and index rules take every target collected in
# ALL_TARGETS so far as inputs, so they run after all other jobs have recorded their costs.
import os


REPORTS = f"{RESULTS}/reports"
# Everything the other stages build, before the reports below are added.
PIPELINE_TARGETS = [str(target) for target in ALL_TARGETS]
# Run-folder outputs other stages put in ALL_TARGETS (samples.md, ...), linked by the training report.
RUN_FILES = [target for target in PIPELINE_TARGETS if target.startswith(f"{RESULTS}/runs/")]


# Seconds of CPU each: on a cluster, run them on the submit node instead of queueing them.
localrules:
    accounting,
    training_report,
    profile_report,
    index,


rule accounting:
    input:
        code=script_code("accounting.py"),
    output:
        markdown=f"{REPORTS}/accounting.md",
        json=f"{REPORTS}/accounting.json",
        plot=report(f"{REPORTS}/accounting.png", category="Accounting"),
    log:
        f"{RESULTS}/logs/accounting/all.log",
    benchmark:
        f"{RESULTS}/benchmarks/accounting/all.tsv"
    script:
        "../scripts/accounting.py"


rule training_report:
    input:
        summaries=expand(f"{RESULTS}/runs/{{run}}/summary.json", run=target_runs()),
        run_files=RUN_FILES,
        code=script_code("training_report.py"),
    output:
        markdown=f"{REPORTS}/training.md",
        plot=report(f"{REPORTS}/training.png", category="Training"),
    params:
        runs=lambda wildcards, input: [os.path.dirname(path) for path in input.summaries],
    log:
        f"{RESULTS}/logs/training_report/all.log",
    benchmark:
        f"{RESULTS}/benchmarks/training_report/all.tsv"
    script:
        "../scripts/training_report.py"


# The training report needs at least one run.
REPORT_TARGETS = rules.accounting.output + (rules.training_report.output if target_runs() else [])


rule profile_report:
    input:
        # Not read: waiting for every other job makes its benchmark part of this report.
        done=PIPELINE_TARGETS + REPORT_TARGETS,
        code=script_code("profile_report.py"),
    output:
        markdown=f"{REPORTS}/profile.md",
        plot=report(f"{REPORTS}/profile.png", category="Pipeline profile"),
    params:
        results=lambda wildcards, output: os.path.dirname(os.path.dirname(output.markdown)),
        exclude=["profile_report", "index"],  # they finish after this report
    log:
        f"{RESULTS}/logs/profile_report/all.log",
    benchmark:
        f"{RESULTS}/benchmarks/profile_report/all.tsv"
    script:
        "../scripts/profile_report.py"


rule index:
    input:
        done=PIPELINE_TARGETS + REPORT_TARGETS + rules.profile_report.output,
        code=script_code("index.py"),
    output:
        f"{RESULTS}/index.md",
    params:
        results=lambda wildcards, output: os.path.dirname(output[0]),
    log:
        f"{RESULTS}/logs/index/all.log",
    benchmark:
        f"{RESULTS}/benchmarks/index/all.tsv"
    script:
        "../scripts/index.py"


ALL_TARGETS.extend(REPORT_TARGETS + rules.profile_report.output + rules.index.output)
