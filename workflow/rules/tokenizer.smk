# Byte-level BPE training as map-reduce over the train split of each corpus.
#
#   plan_shards (checkpoint)  -> results/shards/{corpus}/{split}/plan.json: byte ranges cut at
#                                documents, ceil(size / bpe.shard_mb) of them (encode.smk maps
#                                over the same plans)
#   pretokenize_shard (map)   -> results/shards/{corpus}/train/{shard}.parquet (temp): pre-token counts
#   train_bpe (reduce)        -> results/{corpus}_vocab.pkl, _merges.pkl, GPT-2 text form, HF
#                                tokenizer.json, summary
#
# The shard count depends on the size of a file that may not exist yet when the DAG is built
# (it is downloaded or generated first), so a small checkpoint measures the file and cuts it;
# Snakemake re-evaluates train_bpe's inputs once the plan exists. Each shard is its own job,
# so `--cores N` runs N of them at once and a cluster profile spreads them over nodes.


checkpoint plan_shards:
    input:
        text=f"{RESULTS}/data/{{corpus}}_{{split}}.txt",
        code=script_code("plan_shards.py"),
    output:
        f"{RESULTS}/shards/{{corpus}}/{{split}}/plan.json",
    params:
        shard_mb=config["bpe"]["shard_mb"],
        special_tokens=lambda wc: corpus_config(wc.corpus)["special_tokens"],
    log:
        f"{RESULTS}/logs/plan_shards/{{corpus}}_{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/plan_shards/{{corpus}}_{{split}}.tsv"
    wildcard_constraints:
        split="train|valid",
    script:
        "../scripts/plan_shards.py"


rule pretokenize_shard:
    input:
        plan=f"{RESULTS}/shards/{{corpus}}/train/plan.json",
        text=f"{RESULTS}/data/{{corpus}}_train.txt",
        code=script_code("pretokenize.py"),
    output:
        temp(f"{RESULTS}/shards/{{corpus}}/train/{{shard}}.parquet"),
    log:
        f"{RESULTS}/logs/pretokenize_shard/{{corpus}}_{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pretokenize_shard/{{corpus}}_{{shard}}.tsv"
    wildcard_constraints:
        shard=r"\d+",
    threads: 1
    script:
        "../scripts/pretokenize.py"


rule train_bpe:
    input:
        shards=planned_shards(f"{RESULTS}/shards/{{corpus}}/train/{{shard}}.parquet"),
        code=script_code("train_bpe.py"),
    output:
        vocab_pkl=f"{RESULTS}/{{corpus}}_vocab.pkl",
        merges_pkl=f"{RESULTS}/{{corpus}}_merges.pkl",
        vocab_json=f"{RESULTS}/tokenizers/{{corpus}}-vocab.json",
        merges_txt=f"{RESULTS}/tokenizers/{{corpus}}-merges.txt",
        tokenizer_json=f"{RESULTS}/tokenizers/{{corpus}}/tokenizer.json",
        summary_json=f"{RESULTS}/tokenizers/{{corpus}}_summary.json",
    params:
        vocab_size=lambda wc: corpus_config(wc.corpus)["vocab_size"],
        special_tokens=lambda wc: corpus_config(wc.corpus)["special_tokens"],
    log:
        f"{RESULTS}/logs/train_bpe/{{corpus}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_bpe/{{corpus}}.tsv"
    # The merge loop is sequential: one core.
    threads: 1
    script:
        "../scripts/train_bpe.py"


ALL_TARGETS.extend(
    expand(
        [f"{RESULTS}/{{corpus}}_vocab.pkl", f"{RESULTS}/{{corpus}}_merges.pkl",
         f"{RESULTS}/tokenizers/{{corpus}}_summary.json"],
        corpus=target_corpora(),
    )
)
