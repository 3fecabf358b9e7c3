# Hugging Face export of the runs that set `hf_export: true`: results/runs/{run}/hf/, a folder
# that transformers' AutoModelForCausalLM / AutoTokenizer load as a Llama model (scratchlm.hf).
# Uses RUN_SETTINGS from train.smk (included before this file).


rule export_hf:
    output:
        directory(f"{RESULTS}/runs/{{run}}/hf"),
    input:
        model=f"{RESULTS}/runs/{{run}}/model.pt",
        meta=f"{RESULTS}/runs/{{run}}/model.json",
        summary=f"{RESULTS}/runs/{{run}}/summary.json",
        vocab=lambda wc: f"{RESULTS}/{RUN_SETTINGS[wc.run]['corpus']}_vocab.pkl",
        merges=lambda wc: f"{RESULTS}/{RUN_SETTINGS[wc.run]['corpus']}_merges.pkl",
        code=script_code("export_hf.py"),
    params:
        run_dir=lambda wc: f"{RESULTS}/runs/{wc.run}",
    log:
        f"{RESULTS}/logs/export_hf/{{run}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/export_hf/{{run}}.tsv"
    wildcard_constraints:
        run=name_pattern(list(config["runs"])),
    script:
        "../scripts/export_hf.py"


ALL_TARGETS.extend(expand(f"{RESULTS}/runs/{{run}}/hf", run=[r for r in target_runs() if RUN_SETTINGS[r]["hf_export"]]))
