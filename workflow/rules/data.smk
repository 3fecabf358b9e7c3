# Corpus text for every configured corpus: results/data/{corpus}_{split}.txt.
# Generated corpora (a `generator:` entry, e.g. demo) are written by scratchlm.data.demo;
# the others are downloaded (or copied from a local path) by scratchlm.data.download.

# Downloads run where the workflow is started: cluster compute nodes often have no
# internet access, and the demo corpus takes seconds, so neither is worth a job.
localrules:
    demo_corpus,
    download,


rule demo_corpus:
    output:
        LAYOUT.corpus_text("{corpus}", "{split}"),
    params:
        seed=lambda wc: corpus_config(wc.corpus)["generator"]["seed"],
        size_mb=lambda wc: corpus_config(wc.corpus)["generator"][f"{wc.split}_mb"],
        special_token=lambda wc: corpus_config(wc.corpus)["special_tokens"][0],
    input:
        code=script_code("demo_corpus.py"),
    log:
        LAYOUT.log("demo_corpus", "{corpus}_{split}"),
    benchmark:
        LAYOUT.benchmark("demo_corpus", "{corpus}_{split}")
    wildcard_constraints:
        corpus=name_pattern(generated_corpora()),
        split="train|valid",
    script:
        "../scripts/demo_corpus.py"


rule download:
    output:
        LAYOUT.corpus_text("{corpus}", "{split}"),
    params:
        url=lambda wc: corpus_config(wc.corpus)[wc.split]["url"],
        sha256=lambda wc: corpus_config(wc.corpus)[wc.split].get("sha256"),
        allow_unverified=lambda wc: corpus_config(wc.corpus)[wc.split].get("allow_unverified", False),
        retries=config["download"]["retries"],
        timeout_s=config["download"]["timeout_s"],
        backoff_s=config["download"]["backoff_s"],
    input:
        code=script_code("download.py"),
    log:
        LAYOUT.log("download", "{corpus}_{split}"),
    benchmark:
        LAYOUT.benchmark("download", "{corpus}_{split}")
    wildcard_constraints:
        corpus=name_pattern(downloaded_corpora()),
        split="train|valid",
    script:
        "../scripts/download.py"
