"""Worker pools for the tokenizer stages (counting, encoding) that leave Ctrl-C to the parent.

The parent handles Ctrl-C (it terminates the pool; ``scratchlm`` then exits 130 with one line): a
worker that died of it mid-task could leave the pool waiting forever for its result, so workers
ignore SIGINT. While the workers are forked, a Ctrl-C is only recorded, and raised again once the
pool exists: raised then, it would surface inside fork's at-fork hooks (logging's lock release),
where Python prints "Exception ignored" and drops it, and the stage ran on to the end as if never
interrupted. (Blocking SIGINT in this thread is not enough: numpy's BLAS threads can take it, and
Python still runs the handler in the main thread, inside the hook.)
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from multiprocessing import get_context
from multiprocessing.pool import Pool
from typing import Any, Callable, Iterator


@contextmanager
def worker_pool(workers: int, *, start_method: str = "fork", initializer: Callable[..., None] | None = None,
                initargs: tuple = ()) -> Iterator[Pool]:
    """A ``multiprocessing`` pool of ``workers`` processes (each runs ``initializer(*initargs)``
    first), terminated when the block ends, whose workers ignore Ctrl-C."""
    with _interrupts_recorded() as received:
        pool = get_context(start_method).Pool(workers, initializer=_start_worker, initargs=(initializer, initargs))
    with pool:
        if received:  # the Ctrl-C that came while the workers forked, through the usual handler: here, in the block
            signal.raise_signal(signal.SIGINT)
        yield pool


@contextmanager
def _interrupts_recorded() -> Iterator[list[int]]:
    """SIGINTs during the block are appended to the yielded list instead of handled (main thread only:
    elsewhere Python cannot change handlers, and the block runs as is)."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: received.append(signum))
    try:
        yield received
    finally:
        signal.signal(signal.SIGINT, previous)


def _start_worker(initializer: Callable[..., None] | None, initargs: tuple[Any, ...]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)
