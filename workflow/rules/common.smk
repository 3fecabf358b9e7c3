# Shared helpers used by the stage files: config validation, code dependencies, target list.
import re
from pathlib import Path

from snakemake.utils import validate

from scratchlm.code_inputs import code_inputs
from scratchlm.tokenizer.shards import num_planned_shards


validate(config, schema="../schemas/config.schema.yaml")


def check_targets():
    """Every target names a configured corpus or run: a clear error now, not a MissingInputException."""
    for kind, section in (("corpora", "corpora"), ("runs", "runs")):
        for name in config["targets"].get(kind, []):
            if name not in (config.get(section) or {}):
                known = ", ".join(sorted(config.get(section) or {})) or "none"
                raise ValueError(f"config: targets.{kind} names {name!r}, which is not configured under "
                                 f"`{section}:` (configured: {known})")


check_targets()

RESULTS = "results"
SCRIPTS = Path(workflow.basedir) / "workflow" / "scripts"
# Each rule file appends the outputs that `snakemake` (rule all) should build.
ALL_TARGETS = []


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

