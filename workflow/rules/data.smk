# Corpus text for every configured corpus: results/corpora/{corpus}/{split}.txt.
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
        code=script_code("demo_corpus.py"),
        generator=lambda wc: corpus_settings(wc.corpus).generator.model_dump(),
        special_token=lambda wc: corpus_settings(wc.corpus).special_tokens[0],
    log:
        LAYOUT.log("demo_corpus", "{corpus}_{split}"),
    benchmark:
        LAYOUT.benchmark("demo_corpus", "{corpus}_{split}")
    wildcard_constraints:
        corpus=name_pattern(generated_corpora()),
        split=name_pattern(SPLITS),
    script:
        "../scripts/demo_corpus.py"


rule download:
    output:
        LAYOUT.corpus_text("{corpus}", "{split}"),
    params:
        code=script_code("download.py"),
        source=lambda wc: corpus_settings(wc.corpus).source(wc.split).model_dump(),
        settings=PROJECT.download.model_dump(),
    log:
        LAYOUT.log("download", "{corpus}_{split}"),
    benchmark:
        LAYOUT.benchmark("download", "{corpus}_{split}")
    wildcard_constraints:
        corpus=name_pattern(downloaded_corpora()),
        split=name_pattern(SPLITS),
    script:
        "../scripts/download.py"
