# Encoded corpora (results/{corpus}_{split}.npy: uint16 ids, documents separated by the first
# special token's id) and the tokenizer report (results/reports/tokenizer.md + .json).


# Encoding is a map over the shard plan of the split (tokenizer.smk's plan_shards): one job per
# shard writes its ids, so a cluster spreads a Pile-sized corpus over many nodes; then one job
# concatenates them in order (streaming). The ids equal one-process encoding: shards are cut at
# documents.
rule encode_shard:
    output:
        temp(LAYOUT.shard_ids("{corpus}", "{split}", "{shard}")),
    input:
        plan=LAYOUT.shard_plan("{corpus}", "{split}"),
        text=LAYOUT.corpus_text("{corpus}", "{split}"),
        vocab=LAYOUT.vocab_pkl("{corpus}"),
        merges=LAYOUT.merges_pkl("{corpus}"),
        code=script_code("encode_shard.py"),
    params:
        special_tokens=lambda wc: corpus_config(wc.corpus)["special_tokens"],
        chunk_mb=config["encode"]["chunk_mb"],
    threads: 1
    log:
        LAYOUT.log("encode_shard", "{corpus}_{split}_{shard}"),
    benchmark:
        LAYOUT.benchmark("encode_shard", "{corpus}_{split}_{shard}")
    wildcard_constraints:
        corpus=name_pattern(list(config["corpora"])),
        split="train|valid",
        shard=r"\d+",
    script:
        "../scripts/encode_shard.py"


rule encode:
    output:
        LAYOUT.ids("{corpus}", "{split}"),
    input:
        parts=planned_shards(LAYOUT.shard_ids("{corpus}", "{split}", "{shard}")),
        code=script_code("encode.py"),
    log:
        LAYOUT.log("encode", "{corpus}_{split}"),
    benchmark:
        LAYOUT.benchmark("encode", "{corpus}_{split}")
    wildcard_constraints:
        corpus=name_pattern(list(config["corpora"])),
        split="train|valid",
    script:
        "../scripts/encode.py"


rule tokenizer_report:
    output:
        markdown=LAYOUT.report("tokenizer.md"),
        json=LAYOUT.report("tokenizer.json"),
    input:
        vocab=expand(LAYOUT.vocab_pkl("{corpus}"), corpus=target_corpora()),
        merges=expand(LAYOUT.merges_pkl("{corpus}"), corpus=target_corpora()),
        valid=expand(LAYOUT.corpus_text("{corpus}", "valid"), corpus=target_corpora()),
        encoded=expand(LAYOUT.ids("{corpus}", "{split}"), corpus=target_corpora(), split=["train", "valid"]),
        code=script_code("tokenizer_report.py"),
    params:
        results=lambda wildcards, output: os.path.dirname(os.path.dirname(output.markdown)),
        special_tokens={corpus: corpus_config(corpus)["special_tokens"] for corpus in target_corpora()},
        documents=config["encode"]["report_documents"],
        throughput_mb=config["encode"]["report_throughput_mb"],
        workers=config["encode"]["workers"],
        seed=config["encode"]["report_seed"],
    log:
        LAYOUT.log("tokenizer_report", "all"),
    benchmark:
        LAYOUT.benchmark("tokenizer_report", "all")
    script:
        "../scripts/tokenizer_report.py"
