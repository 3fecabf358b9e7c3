# Encoded corpora (results/corpora/{corpus}/{split}.npy: uint16 ids, documents separated by the first
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
    params:
        code=script_code("encode_shard.py"),
        special_tokens=lambda wc: corpus_settings(wc.corpus).special_tokens,
        chunk_mb=PROJECT.encode.chunk_mb,
    threads: 1
    resources:
        **slurm_job(mem_mb=2000, runtime=20),
    log:
        LAYOUT.log("encode_shard", "{corpus}_{split}_{shard}"),
    benchmark:
        LAYOUT.benchmark("encode_shard", "{corpus}_{split}_{shard}")
    wildcard_constraints:
        corpus=name_pattern(list(PROJECT.corpora)),
        split=name_pattern(SPLITS),
        shard=r"\d+",
    script:
        "../scripts/encode_shard.py"


rule encode:
    output:
        LAYOUT.ids("{corpus}", "{split}"),
    input:
        parts=planned_shards(LAYOUT.shard_ids("{corpus}", "{split}", "{shard}")),
    # Concatenates the shards' ids: streaming, little memory.
    params:
        code=script_code("encode.py"),
    resources:
        **slurm_job(mem_mb=2000, runtime=60),
    log:
        LAYOUT.log("encode", "{corpus}_{split}"),
    benchmark:
        LAYOUT.benchmark("encode", "{corpus}_{split}")
    wildcard_constraints:
        corpus=name_pattern(list(PROJECT.corpora)),
        split=name_pattern(SPLITS),
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
        encoded=expand(LAYOUT.ids("{corpus}", "{split}"), corpus=target_corpora(), split=SPLITS),
    params:
        code=script_code("tokenizer_report.py"),
        results=lambda wildcards, output: os.path.dirname(os.path.dirname(output.markdown)),
        special_tokens={corpus: corpus_settings(corpus).special_tokens for corpus in target_corpora()},
        settings=PROJECT.encode.model_dump(),
    resources:
        **slurm_job(),
    log:
        LAYOUT.log("tokenizer_report", "all"),
    benchmark:
        LAYOUT.benchmark("tokenizer_report", "all")
    script:
        "../scripts/tokenizer_report.py"
