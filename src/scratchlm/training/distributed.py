"""Data-parallel training over several processes (GPUs of one node, or CPU processes with gloo).

Launched by ``torchrun --standalone --nproc-per-node N`` (or by :func:`launch`, which
``scratchlm train`` and the pipeline use when a run sets ``devices: N``), every process runs the
same :func:`scratchlm.training.loop.train`; :class:`Ranks` says which one it is. A run on several
nodes (``nodes: N``) runs inside a SLURM allocation: :func:`launch` starts one torchrun agent per
node with ``srun``, and the agents meet at a c10d rendezvous on the allocation's first host. Rank 0 alone
writes the run folder (metrics, checkpoints, plots); gradients are averaged by
``DistributedDataParallel``; evaluation and the logged train loss are averaged over ranks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

# Set by `launch` for the processes it starts: the launcher holds the run folder's lock.
LOCK_HELD_ENV = "SCRATCHLM_RUN_LOCK_HELD"
# The launcher's working folder in the run folder (job and result files); a run moved aside leaves it.
LAUNCH_PREFIX = ".launch."
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """Have the kernel send ``signum`` to this process when its parent dies (Linux; elsewhere nothing).

    The launcher, torchrun and the training processes form a chain; torchrun starts each process in a
    session of its own, so a signal to the job's process group does not reach them, and a SIGKILL of
    the launcher used to leave them training beside the next trainer. With this at each link, the end
    of the launcher stops torchrun, and the end of torchrun stops the processes (which checkpoint and exit).
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signum))


class ProcessDied(ChildProcessError):
    """A training process died (killed, out of memory): the run stops, and running it again resumes."""


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def ranks_from_env() -> Ranks:
    """The ranks torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); rank 0 of 1 without them."""
    env = os.environ
    return Ranks(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """One GPU per local rank (cuda -> cuda:LOCAL_RANK); other devices as they are."""
    if device.type == "cuda" and ranks.distributed:
        return torch.device("cuda", ranks.local_rank)
    return device


def init_process_group(ranks: Ranks, device: torch.device) -> None:
    """Join the process group (NCCL on CUDA, gloo elsewhere); nothing for a single process."""
    if not ranks.distributed or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=ranks.rank, world_size=ranks.world)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def mean_over_ranks(value: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """The average of ``value`` over all ranks (a no-op for one process)."""
    if ranks.distributed:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= ranks.world
    return value


def any_rank(flag: bool, ranks: Ranks, device: torch.device) -> bool:
    """Whether ``flag`` is true on at least one rank (e.g. a signal arrived there)."""
    if not ranks.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def from_main(obj: Any, ranks: Ranks) -> Any:
    """Rank 0's ``obj`` on every rank (pickled; for small decisions and summaries)."""
    if not ranks.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        dist.barrier()


# ------------------------------------------------------------------------------ launching


RENDEZVOUS_PORT_BASE = 29400  # torchrun's default port; a job's own port is this plus its id modulo 1000


def torchrun_command(nprocs: int, job_file: Path, *, nodes: int, rendezvous: str | None = None,
                     run_id: str = "scratchlm") -> list[str]:
    """torchrun running :func:`main` on ``job_file`` with ``nprocs`` processes: ``--standalone`` on
    one node; on ``nodes`` nodes, one agent per node meeting at the c10d store ``rendezvous`` (HOST:PORT)."""
    where = ["--standalone"] if nodes == 1 else [f"--nnodes={nodes}", "--rdzv-backend=c10d",
                                                 f"--rdzv-endpoint={rendezvous}", f"--rdzv-id={run_id}"]
    return [sys.executable, "-m", "torch.distributed.run", *where, f"--nproc-per-node={nprocs}",
            "-m", "scratchlm.training.loop", str(job_file)]


def launch_command(nprocs: int, job_file: Path, nodes: int) -> list[str]:
    """What :func:`launch` runs: torchrun here, or on ``nodes`` nodes one torchrun agent per node of
    this SLURM allocation (``srun``), meeting on its first host."""
    if nodes == 1:
        return torchrun_command(nprocs, job_file, nodes=1)
    allocation = os.environ.get("SLURM_JOB_ID")
    allocated, node_list = slurm_allocation(allocation) if allocation else (0, "")
    if allocated < nodes:
        raise ValueError(f"the run sets nodes: {nodes}, which needs a SLURM allocation of {nodes} nodes (the "
                         f"pipeline's SLURM profile asks for one; here: "
                         f"{f'{allocated} node(s)' if allocation else 'no allocation'}); or start torchrun on each "
                         f"node yourself (README, 'Several nodes')")
    first_host = subprocess.run(["scontrol", "show", "hostnames", node_list],
                                capture_output=True, text=True, check=True).stdout.split()[0]
    rendezvous = f"{first_host}:{RENDEZVOUS_PORT_BASE + int(allocation) % 1000}"
    return ["srun", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1",
            *torchrun_command(nprocs, job_file, nodes=nodes, rendezvous=rendezvous, run_id=f"slurm-{allocation}")]


def slurm_allocation(job_id: str) -> tuple[int, str]:
    """The node count and node list of SLURM job ``job_id``: from the environment, or from squeue where
    the environment has only the job's id (the SLURM plugin's job step drops the other variables)."""
    count, node_list = os.environ.get("SLURM_JOB_NUM_NODES"), os.environ.get("SLURM_JOB_NODELIST")
    if not (count and node_list):
        count, node_list = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%D|%N"], capture_output=True,
                                          text=True, check=True).stdout.strip().split("|")
    return int(count), node_list


def launch(job: dict, nprocs: int, run_dir: Path, nodes: int) -> dict:
    """Run ``train(**job)`` in ``nprocs`` processes on each of ``nodes`` nodes under torchrun; returns
    rank 0's summary.

    The caller holds the run folder's lock; the processes know it through ``LOCK_HELD_ENV``.
    Raises the same TrainingInterrupted / ValueError as a single process (a diverged run is a summary).
    """
    from scratchlm.training.session import TrainingInterrupted

    with tempfile.TemporaryDirectory(prefix=LAUNCH_PREFIX, dir=run_dir) as folder:
        job_file, result_file = Path(folder) / "job.json", Path(folder) / "result.json"
        job_file.write_text(json.dumps({**job, "result_file": str(result_file)}))
        command = launch_command(nprocs, job_file, nodes)
        log.info("launching %d training processes: %s", nprocs * nodes, " ".join(command))
        process = subprocess.Popen(command, env={**os.environ, LOCK_HELD_ENV: "1"},
                                   stderr=subprocess.PIPE, text=True, errors="replace", preexec_fn=die_with_parent)
        with _forwarding_stop_signals(process):
            failed = _relay_output(process.stderr)
            process.wait()
        result = json.loads(result_file.read_text()) if result_file.exists() else {}
    if "summary" in result:
        return result["summary"]
    if failed and failed[1] < 0:  # a process was killed: the others' errors (gloo's "connection reset") follow
        raise ProcessDied(f"training process of rank {failed[0]} died (killed by signal {-failed[1]}); torchrun "
                          f"stopped the others; run the same command again to resume from the last checkpoint")
    if result.get("error") == "TrainingInterrupted":
        raise TrainingInterrupted(result["message"], result["signum"])
    if result.get("error"):
        raise ValueError(result["message"])
    if failed:
        raise ProcessDied(f"training process of rank {failed[0]} failed (exit status {failed[1]}); see its output "
                          f"above; torchrun stopped the others")
    raise RuntimeError(f"the {nprocs * nodes} training processes failed (torchrun exit status {process.returncode}); "
                       f"see their output above")


# torchrun's summary of a failed process: "rank      : 1 (local_rank: 1)" ... "exitcode  : -9 (pid: ...)"
_FAILED_RANK = re.compile(r"^\s*rank\s*:\s*(\d+)")
_EXIT_CODE = re.compile(r"^\s*exitcode\s*:\s*(-?\d+)")


def _relay_output(stream: Any) -> tuple[int, int] | None:
    """Copy torchrun's stderr (the processes' logs) to ours, line by line; returns (rank, exit code) of
    the process whose failure came first (torchrun's "Root Cause"; the others were stopped by it)."""
    rank, current, failures = None, "all", {}
    for line in stream:
        sys.stderr.write(line)
        section = "root" if "Root Cause" in line else ("all" if line.startswith("Failures:") else None)
        if section:
            current, rank = section, None
        elif match := _FAILED_RANK.match(line):
            rank = int(match.group(1))
        elif (match := _EXIT_CODE.match(line)) and rank is not None:
            failures.setdefault(current, (rank, int(match.group(1))))
    return failures.get("root") or failures.get("all")


@contextlib.contextmanager
def _forwarding_stop_signals(process: subprocess.Popen) -> Iterator[None]:
    """Pass SIGINT/SIGTERM/SIGHUP on to torchrun, which passes them to the training processes:
    they checkpoint and stop, and the launcher reports it, instead of dying and orphaning them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    forward = lambda signum, _frame: process.send_signal(signum)  # noqa: E731
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
