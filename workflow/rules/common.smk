# Shared helpers used by the stage files: config validation, the results layout, resolved run
# settings, code dependencies, and get_final_output() (what `snakemake` builds by default).
import re
from pathlib import Path

from snakemake.utils import validate

from scratchlm.code_inputs import code_inputs
from scratchlm.layout import SPLITS, Layout
from scratchlm.tokenizer.shards import num_planned_shards
from scratchlm.training.config import resolve_run


validate(config, schema="../schemas/config.schema.yaml")


def check_targets():
    """Every target names a configured corpus or run: a clear error now, not a MissingInputException."""
    for section in ("corpora", "runs"):
        for name in config["targets"].get(section, []):
            if name not in (config.get(section) or {}):
                known = ", ".join(sorted(config.get(section) or {})) or "none"
                raise ValueError(f"config: targets.{section} names {name!r}, which is not configured under "
                                 f"`{section}:` (configured: {known})")


check_targets()

LAYOUT = Layout()
SCRIPTS = Path(workflow.basedir) / "workflow" / "scripts"
# Resolved once at startup, so a bad run entry fails now with a clear message, not hours later.
RUN_SETTINGS = {run: resolve_run(config, run) for run in config["runs"]}


def script_code(script):
    """The src/scratchlm files a workflow script runs (its imports, followed transitively), as rule
    inputs: Snakemake reruns a job when its code changes, and only then."""
    return code_inputs(SCRIPTS / script)


def corpus_config(corpus):
    """The config entry of one corpus, with a clear error for unknown names."""
    try:
        return config["corpora"][corpus]
    except KeyError:
        known = ", ".join(sorted(config["corpora"]))
        raise ValueError(f"config.yaml: unknown corpus {corpus!r}; configured corpora: {known}")


def target_corpora():
    return config["targets"]["corpora"]


def target_runs():
    return config["targets"]["runs"]


def generated_corpora():
    return [name for name, entry in config["corpora"].items() if "generator" in entry]


def downloaded_corpora():
    return [name for name, entry in config["corpora"].items() if "generator" not in entry]


def planned_shards(pattern):
    """An input function: ``pattern`` for every shard of the corpus/split's plan (known once
    its plan_shards checkpoint has run; Snakemake then re-evaluates the inputs)."""

    def shards(wildcards):
        split = getattr(wildcards, "split", "train")
        plan = checkpoints.plan_shards.get(corpus=wildcards.corpus, split=split).output[0]
        return expand(pattern, corpus=wildcards.corpus, split=split, shard=range(num_planned_shards(plan)))

    return shards


def name_pattern(names):
    """A wildcard constraint that matches exactly the given names."""
    return "|".join(re.escape(name) for name in names) or "(?!)"



def run_corpus(wildcards):
    """The corpus a run trains on."""
    return RUN_SETTINGS[wildcards.run].corpus


def stage_outputs():
    """Everything the stages build for the configured targets (the reports summarise these).
    Called once every rule exists (by rule all and by input functions)."""
    corpora, runs = target_corpora(), target_runs()
    exported = [run for run in runs if RUN_SETTINGS[run].hf_export]
    return [
        *expand(LAYOUT.corpus_text("{corpus}", "{split}"), corpus=corpora, split=SPLITS),
        *expand(rules.train_bpe.output, corpus=corpora),
        *expand(rules.encode.output, corpus=corpora, split=SPLITS),
        *rules.tokenizer_report.output,
        *expand(rules.train.output, run=runs),
        *expand(rules.generate.output, run=runs),
        *expand(rules.export_hf.output, run=exported),
    ]


def report_outputs():
    """The reports that summarise the stages (the training report needs at least one run)."""
    return [*rules.accounting.output, *(rules.training_report.output if target_runs() else [])]


def get_final_output():
    """What `snakemake` builds without a target: every stage output, report, profile and the index."""
    return stage_outputs() + report_outputs() + [*rules.profile_report.output, *rules.index.output]
