# Experiments (`experiments:` in config.yaml; scratchlm.settings.experiments): a base run varied over
# a grid, variants and seeds, expanded when the Snakefile loads into ordinary runs named
# results/runs/{experiment}/[{variant}/][{key}={value}/...][seed={seed}]/. Each is its own train job,
# so they run in parallel as --cores and gpu resources allow (under SLURM each is its own job),
# and adding a grid value trains only the new runs. A diverged run is a result, not a failure: its
# job succeeds and the report marks it. One report per experiment:
# results/experiments/{experiment}/report.md, summary.json, curves.png, sweep.png.


localrules:
    experiment_report,


rule experiment_report:
    input:
        summaries=lambda wc: [LAYOUT.run_file(run, "summary.json") for run in experiment_runs(PROJECT, wc.experiment)],
    output:
        **{
            key: report(path, category="Experiments", subcategory="{experiment}") if path.endswith(".png") else path
            for key, path in LAYOUT.experiment_files("{experiment}").items()
        },
    params:
        code=script_code("experiment_report.py"),
        runs=lambda wc: experiment_report_runs(PROJECT, wc.experiment, LAYOUT),
        columns=lambda wc: PROJECT.experiments[wc.experiment].columns(),
    log:
        LAYOUT.log("experiment_report", "{experiment}"),
    benchmark:
        LAYOUT.benchmark("experiment_report", "{experiment}")
    wildcard_constraints:
        experiment=name_pattern(list(PROJECT.experiments)),
    script:
        "../scripts/experiment_report.py"
