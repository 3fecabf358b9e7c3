# Hugging Face export of the runs that set `hf_export: true`: results/runs/{run}/hf/, a folder
# that transformers' AutoModelForCausalLM / AutoTokenizer load as a Llama model (scratchlm.hf).
# Uses RUN_SETTINGS from train.smk (included before this file).


rule export_hf:
    output:
        directory(LAYOUT.run_file("{run}", "hf")),
    input:
        model=LAYOUT.run_file("{run}", "model.pt"),
        meta=LAYOUT.run_file("{run}", "model.json"),
        summary=LAYOUT.run_file("{run}", "summary.json"),
        vocab=lambda wc: LAYOUT.vocab_pkl(run_corpus(wc)),
        merges=lambda wc: LAYOUT.merges_pkl(run_corpus(wc)),
    params:
        code=script_code("export_hf.py"),
        run_dir=lambda wc: LAYOUT.run_dir(wc.run),
    resources:
        **slurm_job(runtime=30),
    log:
        LAYOUT.log("export_hf", "{run}"),
    benchmark:
        LAYOUT.benchmark("export_hf", "{run}")
    wildcard_constraints:
        run=name_pattern(list(RUN_SETTINGS)),
    script:
        "../scripts/export_hf.py"
