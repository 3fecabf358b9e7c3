# Encoded corpora (results/{corpus}_{split}.npy: uint16 ids, documents separated by the first
# special token's id) and the tokenizer report (results/reports/tokenizer.md + .json).


# Encoding is a map over the shard plan of the split (tokenizer.smk's plan_shards): one job per
# shard writes its ids, so a cluster spreads a Pile-sized corpus over many nodes; then one job
# concatenates them in order (streaming). The ids equal one-process encoding: shards are cut at
# documents.
rule encode_shard:
    output:
        temp(f"{RESULTS}/shards/{{corpus}}/{{split}}/{{shard}}.npy"),
    input:
        plan=f"{RESULTS}/shards/{{corpus}}/{{split}}/plan.json",
        text=f"{RESULTS}/data/{{corpus}}_{{split}}.txt",
        vocab=f"{RESULTS}/{{corpus}}_vocab.pkl",
        merges=f"{RESULTS}/{{corpus}}_merges.pkl",
        code=script_code("encode_shard.py"),
    params:
        special_tokens=lambda wc: corpus_config(wc.corpus)["special_tokens"],
        chunk_mb=config["encode"]["chunk_mb"],
    threads: 1
    log:
        f"{RESULTS}/logs/encode_shard/{{corpus}}_{{split}}_{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/encode_shard/{{corpus}}_{{split}}_{{shard}}.tsv"
    wildcard_constraints:
        corpus=name_pattern(list(config["corpora"])),
        split="train|valid",
        shard=r"\d+",
    script:
        "../scripts/encode_shard.py"


rule encode:
    output:
        f"{RESULTS}/{{corpus}}_{{split}}.npy",
    input:
        parts=planned_shards(f"{RESULTS}/shards/{{corpus}}/{{split}}/{{shard}}.npy"),
        code=script_code("encode.py"),
    log:
        f"{RESULTS}/logs/encode/{{corpus}}_{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/encode/{{corpus}}_{{split}}.tsv"
    wildcard_constraints:
        corpus=name_pattern(list(config["corpora"])),
        split="train|valid",
    script:
        "../scripts/encode.py"


rule tokenizer_report:
    output:
        markdown=f"{RESULTS}/reports/tokenizer.md",
        json=f"{RESULTS}/reports/tokenizer.json",
    input:
        vocab=expand(f"{RESULTS}/{{corpus}}_vocab.pkl", corpus=target_corpora()),
        merges=expand(f"{RESULTS}/{{corpus}}_merges.pkl", corpus=target_corpora()),
        valid=expand(f"{RESULTS}/data/{{corpus}}_valid.txt", corpus=target_corpora()),
        encoded=expand(f"{RESULTS}/{{corpus}}_{{split}}.npy", corpus=target_corpora(), split=["train", "valid"]),
        code=script_code("tokenizer_report.py"),
    params:
        results=lambda wildcards, output: os.path.dirname(os.path.dirname(output.markdown)),
        special_tokens={corpus: corpus_config(corpus)["special_tokens"] for corpus in target_corpora()},
        documents=config["encode"]["report_documents"],
        throughput_mb=config["encode"]["report_throughput_mb"],
        workers=config["encode"]["workers"],
        seed=config["encode"]["report_seed"],
    log:
        f"{RESULTS}/logs/tokenizer_report/all.log",
    benchmark:
        f"{RESULTS}/benchmarks/tokenizer_report/all.tsv"
    script:
        "../scripts/tokenizer_report.py"


ALL_TARGETS.extend(
    expand(f"{RESULTS}/{{corpus}}_{{split}}.npy", corpus=target_corpora(), split=["train", "valid"])
    + rules.tokenizer_report.output
)
