# LM training runs: results/runs/{run}/ for every run under `runs:` in config.yaml (settings =
# `training:` defaults deep-merged with the run's overrides, see scratchlm.training.config).
# Checkpoints go to results/runs/{run}/checkpoints/, which is not an output: Snakemake leaves
# it alone when a job is killed (e.g. SLURM preemption), and the rerun resumes from it.
from scratchlm.training.config import resolve_run

TRAIN_OUTPUTS = ["model.pt", "model.json", "summary.json", "metrics.jsonl", "curves.png", "config.json"]
# Resolved once at startup, so a bad run entry fails now with a clear message, not hours later.
RUN_SETTINGS = {run: resolve_run(config, run) for run in config["runs"]}


rule train:
    output:
        **{name.replace(".", "_"): f"{RESULTS}/runs/{{run}}/{name}" for name in TRAIN_OUTPUTS},
    input:
        train=lambda wc: f"{RESULTS}/{RUN_SETTINGS[wc.run]['corpus']}_train.npy",
        valid=lambda wc: f"{RESULTS}/{RUN_SETTINGS[wc.run]['corpus']}_valid.npy",
        vocab=lambda wc: f"{RESULTS}/{RUN_SETTINGS[wc.run]['corpus']}_vocab.pkl",
        merges=lambda wc: f"{RESULTS}/{RUN_SETTINGS[wc.run]['corpus']}_merges.pkl",
        code=script_code("train.py"),
    params:
        settings=lambda wc: RUN_SETTINGS[wc.run],
        vocab_size=lambda wc: corpus_config(RUN_SETTINGS[wc.run]["corpus"])["vocab_size"],
        special_tokens=lambda wc: corpus_config(RUN_SETTINGS[wc.run]["corpus"])["special_tokens"],
    # CPU runs use these threads for the matrix maths (shared by the run's processes); on a GPU
    # node they feed the GPUs.
    threads: 8
    # `devices` GPUs (one process each, started by the job itself through torchrun) unless the
    # run is pinned to the CPU; the SLURM profile (workflow/profiles/slurm) sends train jobs to
    # its GPU partition, all GPUs on one node, as one task.
    resources:
        gpu=lambda wc: 0 if RUN_SETTINGS[wc.run]["device"] == "cpu" else RUN_SETTINGS[wc.run]["devices"],
    log:
        f"{RESULTS}/logs/train/{{run}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{run}}.tsv"
    wildcard_constraints:
        run=name_pattern(list(config["runs"])),
    script:
        "../scripts/train.py"


ALL_TARGETS.extend(expand(f"{RESULTS}/runs/{{run}}/{{name}}", run=target_runs(), name=TRAIN_OUTPUTS))
