"""Worker pools for the tokenizer stages (counting, encoding) that leave Ctrl-C to the parent.

The parent handles Ctrl-C (it terminates the pool; ``scratchlm`` then exits 130 with one line): a
worker that died of it mid-task could leave the pool waiting forever for its result, so workers
ignore SIGINT. SIGINT is held back while the workers are forked: one arriving then would be raised
inside fork's at-fork hooks (logging's lock release), where Python prints "Exception ignored" and
drops it, and the stage ran on to the end as if never interrupted.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from multiprocessing import get_context
from multiprocessing.pool import Pool
from typing import Any, Callable, Iterator


@contextmanager
def worker_pool(workers: int, *, start_method: str = "fork", initializer: Callable[..., None] | None = None,
                initargs: tuple = ()) -> Iterator[Pool]:
    """A ``multiprocessing`` pool of ``workers`` processes (each runs ``initializer(*initargs)``
    first), terminated when the block ends, whose workers ignore Ctrl-C."""
    held = {signal.SIGINT}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        pool = get_context(start_method).Pool(workers, initializer=_start_worker, initargs=(initializer, initargs))
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        raise
    with pool:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)  # a Ctrl-C held back is raised here, in the block
        yield pool


def _start_worker(initializer: Callable[..., None] | None, initargs: tuple[Any, ...]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # discards a SIGINT held back since the fork
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if initializer is not None:
        initializer(*initargs)
