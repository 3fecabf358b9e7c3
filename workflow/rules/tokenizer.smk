# Byte-level BPE training as map-reduce over the train split of each corpus.
#
#   plan_shards (checkpoint)  -> results/corpora/{corpus}/shards/{split}/plan.json: byte ranges cut at
#                                documents, ceil(size / bpe.shard_mb) of them (encode.smk maps
#                                over the same plans)
#   pretokenize_shard (map)   -> results/corpora/{corpus}/shards/train/{shard}.parquet (temp): pre-token counts
#   train_bpe (reduce)        -> results/{corpus}_vocab.pkl, _merges.pkl, and in
#                                results/corpora/{corpus}/tokenizer/: GPT-2 text form, HF tokenizer.json, summary
#
# The shard count depends on the size of a file that may not exist yet when the DAG is built
# (it is downloaded or generated first), so a small checkpoint measures the file and cuts it;
# Snakemake re-evaluates train_bpe's inputs once the plan exists. Each shard is its own job,
# so `--cores N` runs N of them at once and a cluster profile spreads them over nodes.


checkpoint plan_shards:
    input:
        text=LAYOUT.corpus_text("{corpus}", "{split}"),
    output:
        LAYOUT.shard_plan("{corpus}", "{split}"),
    params:
        code=script_code("plan_shards.py"),
        shard_mb=PROJECT.bpe.shard_mb,
        special_tokens=lambda wc: corpus_settings(wc.corpus).special_tokens,
    log:
        LAYOUT.log("plan_shards", "{corpus}_{split}"),
    benchmark:
        LAYOUT.benchmark("plan_shards", "{corpus}_{split}")
    wildcard_constraints:
        split=name_pattern(SPLITS),
    resources:
        **slurm_job(mem_mb=2000, runtime=10),
    script:
        "../scripts/plan_shards.py"


rule pretokenize_shard:
    input:
        plan=LAYOUT.shard_plan("{corpus}", "train"),
        text=LAYOUT.corpus_text("{corpus}", "train"),
    output:
        temp(LAYOUT.shard_counts("{corpus}", "{shard}")),
    params:
        code=script_code("pretokenize.py"),
    log:
        LAYOUT.log("pretokenize_shard", "{corpus}_{shard}"),
    benchmark:
        LAYOUT.benchmark("pretokenize_shard", "{corpus}_{shard}")
    wildcard_constraints:
        shard=r"\d+",
    threads: 1
    resources:
        **slurm_job(mem_mb=2000, runtime=20),
    script:
        "../scripts/pretokenize.py"


rule train_bpe:
    input:
        shards=planned_shards(LAYOUT.shard_counts("{corpus}", "{shard}")),
    output:
        **LAYOUT.tokenizer_files("{corpus}"),
    params:
        code=script_code("train_bpe.py"),
        results=lambda wildcards, output: os.path.dirname(output.vocab_pkl),
        vocab_size=lambda wc: corpus_settings(wc.corpus).vocab_size,
        special_tokens=lambda wc: corpus_settings(wc.corpus).special_tokens,
    log:
        LAYOUT.log("train_bpe", "{corpus}"),
    benchmark:
        LAYOUT.benchmark("train_bpe", "{corpus}")
    # The merge loop is sequential: one core; the pair counts of a large corpus need the memory.
    threads: 1
    resources:
        **slurm_job(mem_mb=64000, runtime=240),
    script:
        "../scripts/train_bpe.py"
