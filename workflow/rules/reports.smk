# Reports: resource accounting (from model configurations alone), training (from the runs),
# pipeline profile (from every other job's benchmark and profile) and results/index.md.
# The profile and index rules take every stage output (common.smk's stage_outputs) as inputs,
# so they run after all other jobs have recorded their costs.
import os


# Seconds of CPU each: on a cluster, run them on the submit node instead of queueing them.
localrules:
    accounting,
    training_report,
    profile_report,
    index,


rule accounting:
    output:
        markdown=LAYOUT.report("accounting.md"),
        json=LAYOUT.report("accounting.json"),
        plot=report(LAYOUT.report("accounting.png"), category="Accounting"),
    params:
        code=script_code("accounting.py"),
        settings=PROJECT.accounting.model_dump(),
    log:
        LAYOUT.log("accounting", "all"),
    benchmark:
        LAYOUT.benchmark("accounting", "all")
    script:
        "../scripts/accounting.py"


rule training_report:
    input:
        summaries=expand(LAYOUT.run_file("{run}", "summary.json"), run=target_runs()),
        # Linked by the report (curves.png comes with summary.json).
        samples=lambda wc: expand(rules.generate.output, run=target_runs()),
    output:
        markdown=LAYOUT.report("training.md"),
        plot=report(LAYOUT.report("training.png"), category="Training"),
    params:
        code=script_code("training_report.py"),
        runs=lambda wildcards, input: [os.path.dirname(path) for path in input.summaries],
    log:
        LAYOUT.log("training_report", "all"),
    benchmark:
        LAYOUT.benchmark("training_report", "all")
    script:
        "../scripts/training_report.py"


rule profile_report:
    input:
        # Not read: waiting for every other job makes its benchmark part of this report.
        done=lambda wc: stage_outputs() + report_outputs(),
    output:
        markdown=LAYOUT.report("profile.md"),
        plot=report(LAYOUT.report("profile.png"), category="Pipeline profile"),
    params:
        code=script_code("profile_report.py"),
        results=lambda wildcards, output: os.path.dirname(os.path.dirname(output.markdown)),
    log:
        LAYOUT.log("profile_report", "all"),
    benchmark:
        LAYOUT.benchmark("profile_report", "all")
    script:
        "../scripts/profile_report.py"


rule index:
    input:
        done=lambda wc: stage_outputs() + report_outputs() + rules.profile_report.output,
    output:
        LAYOUT.index(),
    params:
        code=script_code("index.py"),
        results=lambda wildcards, output: os.path.dirname(output[0]),
    log:
        LAYOUT.log("index", "all"),
    benchmark:
        LAYOUT.benchmark("index", "all")
    script:
        "../scripts/index.py"

