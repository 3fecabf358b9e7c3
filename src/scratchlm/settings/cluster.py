"""The SLURM site file (``workflow/profiles/slurm/site.yaml``): what the site's nodes have, and job
requests that fit them.

Every rule states what it would like (CPUs, memory, time, GPUs); :func:`job_resources` turns that
into the resources snakemake-executor-plugin-slurm reads, never more than one node of the
partition has, so that no job waits forever for a node that does not exist. The account and the
partitions' names come from here too: the profile itself holds nothing site-specific.

>>> site = SlurmSite.model_validate({"partitions": {"cpu": {"name": "short", "cpus": 4, "mem_mb": 8000}}})
>>> job_resources(site, "cpu", threads=8, mem_mb=64000, runtime=240)
{'slurm_partition': 'short', 'cpus_per_task': 4, 'mem_mb': 8000, 'runtime': 240}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from scratchlm.settings.base import Int, Section, default_of
from scratchlm.settings.errors import SettingsError, describe
from scratchlm.settings.run import TrainingSettings

# Where the site file is, unless this variable names another one (e.g. a file of your own outside
# the checkout, or the test cluster's).
SITE_FILE_ENV = "SCRATCHLM_SLURM_SITE"
SITE_FILE = Path("workflow") / "profiles" / "slurm" / "site.yaml"

PartitionKind = Literal["cpu", "gpu"]


class PartitionSettings(Section):
    """One partition, as its nodes are (`sinfo -o "%P %c %m %G %l"`)."""

    name: str = Field(min_length=1)
    """the partition's name (`sinfo -s`)"""
    cpus: Int = Field(gt=0)
    """CPUs of one node"""
    mem_mb: Int = Field(gt=0)
    """memory a job may have on one node, in MB (RealMemory, less what the site keeps back)"""
    gpus: Int = Field(0, ge=0)
    """GPUs of one node"""
    gpu_model: str | None = Field(None, pattern=r"^[A-Za-z0-9_.]+$")
    """a GPU type to ask for (`--gpus=MODEL:N`), where the site names them; null: any"""
    max_runtime: Int | None = Field(None, gt=0)
    """the partition's time limit in minutes (`sinfo -o %l`); null: none"""


class SitePartitions(Section):
    """The partition CPU jobs go to, and the one GPU jobs go to."""

    cpu: PartitionSettings
    """tokenizer, encoding and reports; CPU-only training runs (`device: cpu`)"""
    gpu: PartitionSettings | None = None
    """training and sampling on GPUs; null: a site without GPUs"""


class SlurmSite(Section):
    """A SLURM site: the one file to edit for a cluster."""

    account: str | None = Field(None, pattern=r"^[A-Za-z0-9_.,-]+$")
    """the account jobs are charged to (`sacctmgr show assoc user=$USER`); null: submit without one"""
    partitions: SitePartitions
    """where jobs go"""


def site_file(workflow_dir: str | Path) -> Path:
    """The site file in use: ``$SCRATCHLM_SLURM_SITE``, else the one beside the SLURM profile."""
    return Path(os.environ.get(SITE_FILE_ENV) or Path(workflow_dir) / SITE_FILE)


def load_slurm_site(path: str | Path) -> SlurmSite:
    """The site file at ``path``, checked; errors are one line naming the file and the key."""
    from scratchlm.settings.loading import load_yaml

    try:
        return SlurmSite.model_validate(load_yaml(path))
    except ValidationError as error:
        raise SettingsError(describe(error, SlurmSite, lambda keys: f"{path}: {'.'.join(map(str, keys))}")) from None


def job_resources(site: SlurmSite, kind: PartitionKind, *, threads: int, mem_mb: int, runtime: int,
                  gpus: int = 0, nodes: int = default_of(TrainingSettings, "nodes")) -> dict[str, Any]:
    """The SLURM resources of a job that would like ``threads`` CPUs, ``mem_mb`` MB and ``runtime``
    minutes (and ``gpus`` GPUs on each of ``nodes`` nodes), cut down to one node of the partition.

    GPUs are not cut down: a run that asks for more than a node has fails here, in one line. A job
    on several nodes runs its command once, on the first node (the plugin's ``mpi`` job shape), and
    starts its processes on every node itself (``srun``; see scratchlm.training.distributed).
    """
    partition = _partition(site, kind)
    resources: dict[str, Any] = {"slurm_partition": partition.name, "cpus_per_task": min(threads, partition.cpus),
                                 "mem_mb": min(mem_mb, partition.mem_mb),
                                 "runtime": min(runtime, partition.max_runtime or runtime)}
    if site.account:
        resources["slurm_account"] = site.account
    if gpus > partition.gpus:
        raise SettingsError(f"a job asks for {gpus} GPUs per node, but a node of partition {partition.name!r} "
                            f"has {partition.gpus} (partitions.{kind}.gpus in the SLURM site file)")
    if gpus:
        # One task that starts one process per GPU itself (torchrun): not the plugin's task per GPU.
        resources["tasks_per_gpu"] = 0
        if nodes == 1:
            resources["gpu"] = gpus  # --gpus=N (or MODEL:N)
            resources["gpu_model"] = partition.gpu_model
        else:  # --gpus counts over the whole allocation; a GRES is per node
            resources["gres"] = ":".join(["gpu", *filter(None, [partition.gpu_model]), str(gpus)])
    if nodes > 1:
        resources.update(nodes=nodes, tasks=nodes, mpi="srun")
    return {key: value for key, value in resources.items() if value is not None}


def _partition(site: SlurmSite, kind: PartitionKind) -> PartitionSettings:
    partition = getattr(site.partitions, kind)
    if partition is None:
        raise SettingsError(f"a job needs GPUs, but the SLURM site file has no GPU partition (partitions.{kind})")
    return partition
