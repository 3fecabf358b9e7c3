"""Glue between Snakemake's ``script:`` directive and the library: logging and profiling.

Every workflow script is three lines::

    from scratchlm.pipeline import stage
    with stage(snakemake):
        some_function(snakemake.input[0], snakemake.output[0], **snakemake.params)
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Any, Iterator

import dpath
from pydantic import ValidationError

from scratchlm.fileio import LockedError
from scratchlm.settings.errors import describe
from scratchlm.layout import Layout
from scratchlm.profiling import ProcessTreeMonitor


def profile_path(rule: str, wildcards: dict[str, str]) -> Path:
    """``results/profiles/<rule>/<wildcard values joined by _>.json`` (``all`` without wildcards)."""
    return Path(Layout().profile(rule, "_".join(str(value) for value in wildcards.values()) or "all"))


# Errors of the user's making (bad input, config, files, a busy run folder): one line, no traceback.
USER_ERRORS = (ValueError, OSError, LockedError)


def describe_error(error: BaseException) -> str:
    """One line for a user error; an OSError without our own message gets its path and reason.

    >>> describe_error(IsADirectoryError(21, "Is a directory", "data/corpus"))
    'data/corpus: Is a directory'
    """
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    if isinstance(error, ValidationError):  # a settings object built in code: its first problem
        return describe(error, error.title, lambda path: ".".join(map(str, path)) or error.title)
    return " ".join(str(error).split("\n")) or type(error).__name__


def configure_logging(stream: Any = None) -> None:
    """Send the package's log records to ``stream`` (stderr by default) with timestamps."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=stream or sys.stderr,
        force=True,
    )


def _log_stop(rule: str, error: Exception) -> int:
    """Log why a stage stopped, ending its log with one line; returns the exit status. A user error
    is that line alone; a stop on request (``exit_status``, e.g. a signal) too; a bug gets its traceback first."""
    log = logging.getLogger("scratchlm")
    if hasattr(error, "exit_status"):
        log.warning("%s: stopped: %s", rule, describe_error(error))
        return error.exit_status
    if not isinstance(error, USER_ERRORS):
        log.error("%s: unexpected error", rule, exc_info=error)
    log.error("%s: error: %s", rule, describe_error(error) if isinstance(error, USER_ERRORS)
              else f"{type(error).__name__}: {describe_error(error)}")
    return 1


def setting_line(key: str, value: Any) -> str:
    """One setting as a rule's param: ``"KEY=VALUE"``, the value as JSON. A rule passes settings as
    one such param per setting (``settings_as_params`` in common.smk), so that when a setting changes,
    Snakemake's reason for the rerun names that setting alone (a dict param is printed whole,
    before and after).

    >>> setting_line("optimizer.betas", [0.9, 0.95])
    'optimizer.betas=[0.9, 0.95]'
    """
    return f"{key}={json.dumps(value)}"


def settings_from_params(smk: Any, group: str) -> dict:
    """The settings a rule passed as the params ``{group}.KEY`` (:func:`setting_line` each), nested again.

    >>> from types import SimpleNamespace
    >>> params = {"run.seed": "seed=1", "run.model.d_model": "model.d_model=64", "code": "code of 3 files"}
    >>> settings_from_params(SimpleNamespace(params=params), "run")
    {'seed': 1, 'model': {'d_model': 64}}
    """
    values: dict = {}
    for name, line in smk.params.items():
        if name.startswith(group + ".") and line is not None:
            key, _, raw = line.partition("=")
            dpath.new(values, key, json.loads(raw), separator=".")
    return values


@contextlib.contextmanager
def stage(smk: Any) -> Iterator[ProcessTreeMonitor]:
    """Run a stage body for a Snakemake job: stderr and logging go to ``log[0]``; profile the tree."""
    log_file = smk.log[0] if len(smk.log) else None
    wildcards = dict(smk.wildcards.items())
    with contextlib.ExitStack() as stack:
        if log_file:
            Path(log_file).parent.mkdir(parents=True, exist_ok=True)
            handle = stack.enter_context(open(log_file, "w", buffering=1))
            stack.enter_context(contextlib.redirect_stderr(handle))
            stack.enter_context(contextlib.redirect_stdout(handle))
        configure_logging(sys.stderr)
        with ProcessTreeMonitor(smk.rule) as monitor:
            monitor.profile.extra = {"wildcards": wildcards, "threads": smk.threads}
            try:
                yield monitor
            except Exception as error:
                raise SystemExit(_log_stop(smk.rule, error)) from None
        monitor.profile.to_json(profile_path(smk.rule, wildcards))
        logging.getLogger("scratchlm").info(
            "stage %s done: wall %.1fs cpu %.1fs peak RSS %.0f MiB",
            smk.rule, monitor.profile.wall_s, monitor.profile.cpu_s, monitor.profile.peak_rss_mb,
        )
