"""``njit`` for the compiled tokenizer modules: numba kernels that load without numba where they can.

``njit`` marks a kernel without importing numba. At its first call, a kernel runs from one of two
places:

* The ahead-of-time module. It is a plain extension module with the kernels that encoding and
  decoding call from Python (those given ``exports=``). ``numba.pycc`` builds it once per machine
  and per source version in a child process (``python -m scratchlm.tokenizer.aot``, about 30 s; it
  needs a C compiler) and keeps it in ``__pycache__``. A process that only encodes and decodes then
  never loads numba and LLVM: about 150 MiB and 0.5 s less at start. The module checks no
  argument types, so a call is sent to it only when its arguments match an export exactly;
  other calls go to numba.
* numba's JIT. It serves every other kernel (counting, the merge loop), and every kernel where the
  module cannot be built (no compiler, a read-only install, ``SCRATCHLM_AOT=0``). It compiles at
  the first call and caches on disk. Inside compiled code a kernel is typed as its numba
  dispatcher, so kernels call and inline each other as plain numba functions do.

numba's cache (``cache=True``) checks only the file that defines a function, yet our functions
inline others from sibling modules (the scanner, the hash table): after a change to ``scan.py``
alone, a cached ``fast_encode`` would run the old scanner. So when any of these modules' sources
differ from those the cache was built from, their cached code is dropped once (a git pull or an
edit then costs one compile, about 15 s, instead of wrong ids). The ahead-of-time module is
named by the same fingerprint.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import importlib.machinery
import importlib.util
import logging
import os
import platform
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np

if importlib.util.find_spec("numba") is None:  # callers fall back to pure Python on ImportError
    raise ImportError("numba is not installed")

__all__ = ["njit"]

log = logging.getLogger(__name__)

COMPILED_MODULES = ("scan", "byte_table", "fast_bpe", "fast_encode", "fast_decode", "fast_count", "fast_merge")
AOT_ENV = "SCRATCHLM_AOT"  # "0": numba's JIT only
AOT_MODULE = "_scratchlm_kernels"
_HERE = Path(__file__).resolve().parent
_CACHE = _HERE / "__pycache__"

# An export's types: a tuple per argument and a result. "u1[:]" is a C-contiguous 1-D uint8 array
# that the kernel only reads, "u8[:,:]" a 2-D one, a trailing "!" an array it writes; "i8" an
# int64; a tuple of these a tuple argument; None no result.
Spec = Any


class Kernel:
    """A numba function whose machine code comes from the ahead-of-time module or numba's JIT."""

    def __init__(self, py_func: Callable, options: dict, exports: list[tuple[tuple, Spec]]) -> None:
        functools.update_wrapper(self, py_func)
        self.py_func, self.options, self.exports = py_func, options, exports
        self._ahead: list[tuple[tuple, Callable]] | None = None
        self._jit: Callable | None = None

    def __call__(self, *args: Any) -> Any:
        if self._ahead is None:
            module = ahead_of_time_module() if self.exports else None
            functions = [(spec, getattr(module, export_name(self, index), None))
                         for index, (spec, _) in enumerate(self.exports)]
            self._ahead = [(spec, function) for spec, function in functions if function is not None]
        for spec, function in self._ahead:
            if matches(args, spec):
                return function(*args)
        return self.dispatcher()(*args)

    def dispatcher(self) -> Callable:
        """The numba dispatcher of this kernel (numba is imported at the first)."""
        if self._jit is None:
            prepare_numba()
            import numba

            self._jit = numba.njit(**self.options)(self.py_func)
        return self._jit


def njit(*, exports: list[tuple[tuple, Spec]] = (), **options: Any) -> Callable[[Callable], Kernel]:
    """Mark a kernel: ``options`` go to ``numba.njit``; ``exports``: the (argument types, result
    type) it is built for ahead of time (see ``Spec``)."""
    return lambda py_func: Kernel(py_func, options, list(exports))


def export_name(kernel: Kernel, index: int) -> str:
    """The name of a kernel's ``index``-th export in the ahead-of-time module."""
    return f"{kernel.__module__.rsplit('.', 1)[-1]}__{kernel.__name__}__{index}"


@functools.cache
def array_spec(spec: str) -> tuple[np.dtype, int, bool]:
    """An array spec's dtype, number of dimensions, and whether the kernel writes the array."""
    return np.dtype(spec.split("[")[0]), spec.count(":"), spec.endswith("!")


def matches(value: Any, spec: Spec) -> bool:
    """Whether ``value`` has exactly the types of ``spec``: what the module would assume unchecked."""
    if isinstance(spec, tuple):
        return isinstance(value, tuple) and len(value) == len(spec) and all(map(matches, value, spec))
    if spec == "i8":
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and -(1 << 63) <= value < 1 << 63
    dtype, ndim, written = array_spec(spec)
    return (isinstance(value, np.ndarray) and value.dtype == dtype and value.ndim == ndim
            and value.flags.c_contiguous and value.flags.aligned and (value.flags.writeable or not written))


@functools.cache
def prepare_numba() -> None:
    """Type kernels as their dispatchers inside compiled code, and drop stale cached code."""
    from numba.core import types
    from numba.core.typing.typeof import typeof_impl

    typeof_impl.register(Kernel)(lambda kernel, context: types.Dispatcher(kernel.dispatcher()))
    drop_stale_cache()


@functools.cache  # the sources do not change under a running process: read and hashed once
def sources_fingerprint() -> str:
    """A digest of the compiled modules' sources and of the versions of what compiles them."""
    digest = hashlib.sha256(f"numba {version('numba')} numpy {version('numpy')} {sys.version}".encode())
    for name in COMPILED_MODULES:
        digest.update((_HERE / f"{name}.py").read_bytes())
    return digest.hexdigest()


def drop_stale_cache(cache_dir: Path = _CACHE) -> bool:
    """Delete the cached machine code of the compiled modules if it was built from other sources;
    True if it was."""
    stamp, fingerprint = cache_dir / "compiled-sources.sha256", sources_fingerprint()
    try:
        if stamp.read_text() == fingerprint:
            return False
    except OSError:
        pass
    try:
        cache_dir.mkdir(exist_ok=True)
        for path in cache_dir.iterdir():
            if path.suffix in (".nbi", ".nbc") and path.name.split(".")[0] in COMPILED_MODULES:
                path.unlink(missing_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=cache_dir, delete=False) as handle:
            handle.write(fingerprint)
        os.replace(handle.name, stamp)
    except OSError:  # a read-only install: numba keeps its cache elsewhere, rebuilt per version
        return False
    return True


def module_path(cache_dir: Path = _CACHE) -> Path:
    """Where the ahead-of-time module of the current sources is kept."""
    name = f"kernels-{platform.machine()}-{sources_fingerprint()[:16]}"
    return cache_dir / (name + importlib.machinery.EXTENSION_SUFFIXES[0])


@functools.cache
def ahead_of_time_module(cache_dir: Path = _CACHE) -> ModuleType | None:
    """The ahead-of-time module, built first if missing; None where it is turned off or cannot be built."""
    if os.environ.get(AOT_ENV, "1") == "0":
        return None
    path = module_path(cache_dir)
    if not path.exists() and not _build(path):
        return None
    spec = importlib.util.spec_from_file_location(AOT_MODULE, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build(path: Path) -> bool:
    """Build the module at ``path`` in a child process, one process at a time; False if it failed
    now or before (the reason is kept beside it: delete that file to try again)."""
    failed = path.with_name(path.name + ".failed")
    try:
        path.parent.mkdir(exist_ok=True)
        with open(path.parent / "kernels.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # parallel jobs wait for the first one's build
            if path.exists() or failed.exists():
                return path.exists()
            log.info("compiling the tokenizer's kernels ahead of time (once per machine and version, ~30 s)")
            done = subprocess.run([sys.executable, "-m", "scratchlm.tokenizer.aot", str(path)],
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True)
            if done.returncode == 1:  # its own error, not a signal: do not try again in every process
                reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
                failed.write_text(reason + "\n")
                log.warning("the tokenizer's kernels could not be compiled ahead of time (%s); numba compiles "
                            "them in each process instead (delete %s to try again)", reason, failed)
    except OSError as error:  # a read-only install
        log.debug("no ahead-of-time kernels: %s", error)
        return False
    return path.exists()
