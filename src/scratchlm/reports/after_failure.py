"""Reports from what finished, after a pipeline failure.

Snakemake builds a report only once every job it depends on succeeded, so with ``--keep-going`` one
run that fails (for a reason other than divergence, which is a result) would keep its experiment's
report, the training report and the index from being built. The Snakefile's ``onerror`` handler
calls :func:`write_partial_reports`, which writes them from the runs that finished and lists those
that did not.
"""

from __future__ import annotations

import logging
from typing import Sequence

from scratchlm.layout import Layout, RunFiles
from scratchlm.reports.comparison import experiment_report_runs, write_experiment_report
from scratchlm.reports.index import write_index
from scratchlm.reports.training_report import write_training_report
from scratchlm.settings import Project

log = logging.getLogger(__name__)


def write_partial_reports(project: Project, layout: Layout, runs: Sequence[str]) -> list[str]:
    """Write every experiment report with a run that started, the training report of ``runs`` that
    finished (naming the others) and the index; returns the files written."""
    written = []
    for experiment in project.experiments:
        entries = experiment_report_runs(project, experiment, layout)
        if any(RunFiles(run_dir).config.is_file() for _, run_dir, _ in entries):
            write_experiment_report(experiment, entries, project.experiments[experiment].columns(),
                                    layout.experiment_files(experiment))
            written.append(layout.experiment_files(experiment)["markdown"])
    finished = [run for run in runs if RunFiles(layout.run_dir(run)).summary.is_file()]
    if finished:
        markdown, plot = layout.report("training.md"), layout.report("training.png")
        write_training_report([layout.run_dir(run) for run in finished], markdown, plot,
                              unfinished=[run for run in runs if run not in finished])
        written.append(markdown)
    write_index(layout.root, layout.index())
    written.append(layout.index())
    log.warning("the pipeline failed; reports written from the runs that finished: %s", ", ".join(written))
    return written
