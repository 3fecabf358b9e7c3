# LM training runs: results/runs/{run}/ for every run under `runs:` in config.yaml (settings =
# `training:` defaults deep-merged with the run's overrides, see scratchlm.settings).
# Checkpoints go to results/runs/{run}/checkpoints/, which is not an output: Snakemake leaves
# it alone when a job is killed (e.g. SLURM preemption), and the rerun resumes from it.
from scratchlm.layout import RunFiles


rule train:
    output:
        **{name.replace(".", "_"): LAYOUT.run_file("{run}", name) for name in RunFiles.FINAL},
    input:
        train=lambda wc: LAYOUT.ids(run_corpus(wc), "train"),
        valid=lambda wc: LAYOUT.ids(run_corpus(wc), "valid"),
        vocab=lambda wc: LAYOUT.vocab_pkl(run_corpus(wc)),
        merges=lambda wc: LAYOUT.merges_pkl(run_corpus(wc)),
    params:
        code=script_code("train.py"),
        **settings_as_params("settings", lambda run: RUN_SETTINGS[run].to_dict(), "run", RUN_SETTINGS),
        **settings_as_params("corpus", lambda run: corpus_settings(RUN_SETTINGS[run].corpus).model_dump(), "run",
                         RUN_SETTINGS),
        results=results_root,
    # CPU runs use these threads for the matrix maths (shared by the run's processes); on a GPU
    # node they feed the GPUs.
    threads: 8
    # `devices` GPUs (one process each, started by the job itself through torchrun) on each of the
    # run's `nodes`, unless the run is pinned to the CPU; under SLURM, on the site's GPU partition.
    resources:
        **slurm_job(run_partition, mem_mb=64000, runtime=720, gpus=run_gpus, nodes=lambda wc: RUN_SETTINGS[wc.run].nodes),
    log:
        LAYOUT.log("train", "{run}"),
    benchmark:
        LAYOUT.benchmark("train", "{run}")
    wildcard_constraints:
        run=name_pattern(list(RUN_SETTINGS)),
    script:
        "../scripts/train.py"

