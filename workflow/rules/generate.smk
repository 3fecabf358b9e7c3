# Samples from each trained run: results/runs/{run}/samples.md holds the model's validation
# perplexity and every `generation.prompts` entry sampled at every `generation.settings` entry.
# Uses RUN_SETTINGS from train.smk (included before this file).


rule generate:
    output:
        f"{RESULTS}/runs/{{run}}/samples.md",
    input:
        model=f"{RESULTS}/runs/{{run}}/model.pt",
        meta=f"{RESULTS}/runs/{{run}}/model.json",
        valid=lambda wc: f"{RESULTS}/{RUN_SETTINGS[wc.run]['corpus']}_valid.npy",
        vocab=lambda wc: f"{RESULTS}/{RUN_SETTINGS[wc.run]['corpus']}_vocab.pkl",
        merges=lambda wc: f"{RESULTS}/{RUN_SETTINGS[wc.run]['corpus']}_merges.pkl",
        code=script_code("generate.py"),
    params:
        run_dir=lambda wc: f"{RESULTS}/runs/{wc.run}",
        generation=config["generation"],
        special_tokens=lambda wc: corpus_config(RUN_SETTINGS[wc.run]["corpus"])["special_tokens"],
        # Sample on the device the run trained on (auto: the GPU where there is one).
        device=lambda wc: RUN_SETTINGS[wc.run]["device"],
    threads: 4
    # Like train: one GPU unless the run is pinned to the CPU.
    resources:
        gpu=lambda wc: 0 if RUN_SETTINGS[wc.run]["device"] == "cpu" else 1,
    log:
        f"{RESULTS}/logs/generate/{{run}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/generate/{{run}}.tsv"
    wildcard_constraints:
        run=name_pattern(list(config["runs"])),
    script:
        "../scripts/generate.py"


ALL_TARGETS.extend(expand(f"{RESULTS}/runs/{{run}}/samples.md", run=target_runs()))
