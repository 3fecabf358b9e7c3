# Samples from each trained run: results/runs/{run}/samples.md holds the model's validation
# perplexity and every `generation.prompts` entry sampled at every `generation.settings` entry.
# Uses RUN_SETTINGS from train.smk (included before this file).


rule generate:
    output:
        LAYOUT.run_file("{run}", "samples.md"),
    input:
        model=LAYOUT.run_file("{run}", "model.pt"),
        meta=LAYOUT.run_file("{run}", "model.json"),
        valid=lambda wc: LAYOUT.ids(run_corpus(wc), "valid"),
        vocab=lambda wc: LAYOUT.vocab_pkl(run_corpus(wc)),
        merges=lambda wc: LAYOUT.merges_pkl(run_corpus(wc)),
    params:
        code=script_code("generate.py"),
        run_dir=lambda wc: LAYOUT.run_dir(wc.run),
        generation=PROJECT.generation.model_dump(),
        special_tokens=lambda wc: corpus_settings(run_corpus(wc)).special_tokens,
        # Sample on the device the run trained on (auto: the GPU where there is one).
        device=lambda wc: RUN_SETTINGS[wc.run].device,
    threads: 4
    # Like train: one GPU unless the run is pinned to the CPU.
    resources:
        **slurm_job(run_partition, mem_mb=16000, runtime=30, gpus=lambda wc: min(1, run_gpus(wc))),
    log:
        LAYOUT.log("generate", "{run}"),
    benchmark:
        LAYOUT.benchmark("generate", "{run}")
    wildcard_constraints:
        run=name_pattern(list(RUN_SETTINGS)),
    script:
        "../scripts/generate.py"
