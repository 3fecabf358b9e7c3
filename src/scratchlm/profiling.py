"""Wall time, CPU time and peak RSS of a process *tree* (main process plus worker pools).

Snakemake's ``benchmark:`` measures the job's process tree too, but only when it stays alive
long enough to be sampled; this monitor runs inside the stage, samples every ``interval``
seconds with psutil, and also adds the CPU time of children that have already exited.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from dataclasses import asdict, dataclass, field

import psutil

from scratchlm.fileio import write_json


@dataclass
class StageProfile:
    """What one stage cost: seconds of wall and CPU time, peak resident memory of the tree."""

    stage: str
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_bytes: int = 0
    peak_rss_main_bytes: int = 0
    peak_processes: int = 1
    extra: dict = field(default_factory=dict)

    @property
    def peak_rss_mb(self) -> float:
        """Peak RSS of the whole tree in MiB."""
        return self.peak_rss_bytes / 2**20

    def to_json(self, path: str | os.PathLike) -> None:
        """Write the profile as JSON (atomically)."""
        record = asdict(self) | {"peak_rss_mb": round(self.peak_rss_mb, 1)}
        write_json(path, record, sort_keys=True)


def _tree_rss(proc: psutil.Process) -> tuple[int, int, int]:
    """(rss of the tree, rss of the root, number of processes)."""
    try:
        root_rss = proc.memory_info().rss
        children = proc.children(recursive=True)
    except psutil.Error:
        return 0, 0, 0
    total = root_rss
    for child in children:
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass  # exited between listing and sampling
    return total, root_rss, 1 + len(children)


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux VmHWM; ``ru_maxrss`` elsewhere).

    VmHWM belongs to this program alone, whereas ``ru_maxrss`` survives fork + exec: a job
    started by a large Snakemake process would report Snakemake's peak instead of its own.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


class ProcessTreeMonitor:
    """Context manager that samples the RSS of this process and all its descendants.

    >>> with ProcessTreeMonitor("demo", interval=0.01) as monitor:
    ...     _ = bytearray(10_000_000)
    >>> monitor.profile.peak_rss_bytes > 0
    True
    """

    def __init__(self, stage: str, *, interval: float = 0.1) -> None:
        self.profile = StageProfile(stage=stage)
        self.interval = interval
        self._proc = psutil.Process(os.getpid())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-monitor", daemon=True)

    def _sample(self) -> None:
        total, root, count = _tree_rss(self._proc)
        prof = self.profile
        prof.peak_rss_bytes = max(prof.peak_rss_bytes, total)
        prof.peak_rss_main_bytes = max(prof.peak_rss_main_bytes, root)
        prof.peak_processes = max(prof.peak_processes, count)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    @staticmethod
    def _cpu_seconds() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # children that were waited for
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    def __enter__(self) -> "ProcessTreeMonitor":
        self._start_wall = time.perf_counter()
        self._start_cpu = self._cpu_seconds()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        # The high-water mark catches a spike of the main process between samples.
        self.profile.peak_rss_main_bytes = max(self.profile.peak_rss_main_bytes, peak_rss_bytes())
        self.profile.peak_rss_bytes = max(self.profile.peak_rss_bytes, self.profile.peak_rss_main_bytes)
        self.profile.wall_s = time.perf_counter() - self._start_wall
        self.profile.cpu_s = self._cpu_seconds() - self._start_cpu
