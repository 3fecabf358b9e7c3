# Shared helpers used by the stage files: the checked configuration (PROJECT), the results layout,
# resolved run settings, code fingerprints, and get_final_output() (what `snakemake` builds by default).
import os
import re
import sys
from pathlib import Path

from scratchlm.code_inputs import code_fingerprint
from scratchlm.layout import SPLITS, Layout
from scratchlm.pipeline import setting_line
from snakemake.exceptions import WorkflowError

from scratchlm.reports.comparison import experiment_report_runs
from scratchlm.settings import Layer, SettingsError, experiment_runs, load_project, load_yaml, resolve_run, run_names
from scratchlm.settings.loading import configfiles_dropped, flatten
from scratchlm.settings.cluster import job_resources, load_slurm_site, site_file
from scratchlm.tokenizer.shards import num_planned_shards


def config_layers():
    """Where `config` came from, in the order Snakemake applies them (the Snakefile's configfile,
    the --configfile files, then --config), so that an error names the one that set the bad value."""
    given = [os.path.relpath(path) for path in workflow.config_settings.configfiles]
    dropped = [path for path in configfiles_dropped(sys.argv)
               if os.path.abspath(path) not in map(os.path.abspath, workflow.configfiles)]
    if dropped:
        raise WorkflowError(f"--configfile given more than once: Snakemake reads only the last one's files, so "
                            f"{', '.join(dropped)} would be ignored; name every file after one --configfile "
                            f"(--configfile a.yaml b.yaml)")
    files = dict.fromkeys([*(os.path.relpath(path) for path in workflow.configfiles
                             if os.path.relpath(path) not in given), *given])
    layers = [Layer(path, load_yaml(path), path) for path in files]
    if workflow.config_settings.config:
        layers.append(Layer("--config", dict(workflow.config_settings.config), "--config"))
    return layers


# Every section typed and checked (scratchlm.settings), every run resolved: a bad setting fails
# now, in one line naming the file and the key, not hours later in a job.
try:
    PROJECT = load_project(config, source=config_layers())
except SettingsError as error:
    raise WorkflowError(str(error)) from None  # Snakemake shows a WorkflowError without a traceback
LAYOUT = Layout()
SCRIPTS = Path(workflow.basedir) / "workflow" / "scripts"
# Every run: those under `runs:` and those of every experiment.
RUN_SETTINGS = {run: resolve_run(PROJECT, run) for run in run_names(PROJECT)}


def script_code(script):
    """A fingerprint of a workflow script and the src/scratchlm files it runs (its imports, followed
    transitively), as a rule's `code` param: Snakemake reruns a job when its params change, so when
    its code changes, and only then; one short line, where the files as inputs were pages of log."""
    return code_fingerprint(SCRIPTS / script)


def settings_as_params(group, settings_of, wildcard, names):
    """Params `{group}.KEY` where the wildcard `wildcard` takes the values `names`, one per setting KEY
    (dotted) of `settings_of(name)`, the line "KEY=VALUE" (`setting_line`); the script reads them
    back with `settings_from_params(snakemake, group)`. A changed setting is then named alone in the
    reason Snakemake gives for the rerun, where a dict param was printed whole, before and after."""
    flat = {name: flatten(settings_of(name)) for name in names}  # once each, not once per setting and job
    keys = sorted({key for settings in flat.values() for key in settings})

    def line(key):
        def value(wildcards):
            settings = flat[getattr(wildcards, wildcard)]
            return setting_line(key, settings[key]) if key in settings else None

        return value

    return {f"{group}.{key}": line(key) for key in keys}


def corpus_settings(corpus):
    """The settings of one corpus (CorpusSettings)."""
    return PROJECT.corpus(corpus)


def target_corpora():
    return PROJECT.targets.corpora


def target_runs():
    return PROJECT.targets.runs


def generated_corpora():
    return [name for name, corpus in PROJECT.corpora.items() if corpus.generator is not None]


def downloaded_corpora():
    return [name for name, corpus in PROJECT.corpora.items() if corpus.generator is None]


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


def results_root(wildcards, input):
    """The results folder (Layout's root) of a rule with a `vocab` input, results/{corpus}_vocab.pkl."""
    return os.path.dirname(input.vocab)


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
    """The reports that summarise the stages (the training report needs at least one run), and the
    target experiments' reports."""
    experiments = [path for name in PROJECT.targets.experiments for path in LAYOUT.experiment_files(name).values()]
    return [*rules.accounting.output, *(rules.training_report.output if target_runs() else []), *experiments]


def get_final_output():
    """What `snakemake` builds without a target: every stage output, report, profile and the index."""
    return stage_outputs() + report_outputs() + [*rules.profile_report.output, *rules.index.output]


def write_reports_after_failure():
    """The onerror handler's body (see the Snakefile)."""
    from scratchlm.reports.after_failure import write_partial_reports

    try:
        write_partial_reports(PROJECT, LAYOUT, target_runs())
    except Exception as error:  # the pipeline's own failure is what the user must see
        print(f"reports after the failure could not be written: {error}")


# ------------------------------------------------------------------------------ SLURM job sizes
# Under the SLURM executor (workflow/profiles/slurm), each job asks for what its rule would like,
# cut down to one node of the site's partition (the site file, scratchlm.settings.cluster), with
# the site's partition names and account. Elsewhere (a workstation, or the job's own Snakemake on
# the node) a job has only what it would like of mem_mb and runtime, and gpu: the site file does
# not bind a local run. The keys are those job_resources may give (absent: None).
SLURM_EXECUTORS = {"slurm", "slurm-jobstep"}
SLURM_RESOURCE_KEYS = ("slurm_partition", "slurm_account", "cpus_per_task", "mem_mb", "runtime", "tasks_per_gpu",
                       "gpu", "gpu_model", "gres", "nodes", "tasks", "mpi")
_SLURM_SITE = []


def slurm_site():
    """The SLURM site file, checked, when the jobs go to SLURM; else None."""
    plugin = workflow.executor_plugin
    if plugin is None or plugin.cli_prefix not in SLURM_EXECUTORS:
        return None
    if not _SLURM_SITE:
        try:
            _SLURM_SITE.append(load_slurm_site(site_file(workflow.basedir)))
        except SettingsError as error:
            raise WorkflowError(str(error)) from None
    return _SLURM_SITE[0]


def run_gpus(wildcards):
    """GPUs per node of a run's train job: its `devices`, none if the run is pinned to the CPU."""
    settings = RUN_SETTINGS[wildcards.run]
    return 0 if settings.device == "cpu" else settings.devices


def run_partition(wildcards):
    """The site partition of a run's jobs under SLURM: gpu, or cpu if the run is pinned to the CPU."""
    return "cpu" if RUN_SETTINGS[wildcards.run].device == "cpu" else "gpu"


def slurm_job(kind="cpu", *, mem_mb=4000, runtime=60, gpus=0, nodes=1):
    """Resources of a job that would like mem_mb MB, runtime minutes, and gpus GPUs on each of nodes
    nodes on the site's `kind` partition (cpu or gpu); each may be a function of the wildcards.
    A job with GPUs has a `gpu` resource locally too (`--resources gpu=N` on a workstation)."""

    def value(item, wildcards):
        return item(wildcards) if callable(item) else item

    def request(wildcards, threads):
        site = slurm_site()
        if site is None:
            return {"mem_mb": value(mem_mb, wildcards), "runtime": value(runtime, wildcards),
                    "gpu": value(gpus, wildcards) or None}
        wanted = {"mem_mb": mem_mb, "runtime": runtime, "gpus": gpus, "nodes": nodes}
        try:
            return job_resources(site, value(kind, wildcards), threads=threads,
                                 **{key: value(item, wildcards) for key, item in wanted.items()})
        except SettingsError as error:
            raise WorkflowError(f"{site_file(workflow.basedir)}: {error}") from None

    return {key: (lambda wildcards, threads, key=key: request(wildcards, threads).get(key))
            for key in SLURM_RESOURCE_KEYS}
