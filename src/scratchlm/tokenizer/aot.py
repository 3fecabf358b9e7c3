"""Build the ahead-of-time module of the tokenizer's kernels (see ``compiled``) with numba.pycc.

Run as ``python -m scratchlm.tokenizer.aot PATH`` by ``compiled``, in a process of its own: the
process that asked for the module stays without numba. The module is compiled for the generic
CPU of the machine's architecture (as fast as numba's JIT for these kernels, measured), so a
module built on one node of a cluster also runs on its older nodes.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import warnings
from pathlib import Path

from scratchlm.tokenizer.compiled import (AOT_MODULE, COMPILED_MODULES, Kernel, Spec, array_spec, export_name,
                                          prepare_numba)


def exported_kernels() -> list[Kernel]:
    """Every kernel of the compiled modules that has exports."""
    modules = [importlib.import_module(f"scratchlm.tokenizer.{name}") for name in COMPILED_MODULES]
    return [value for module in modules for value in vars(module).values()
            if isinstance(value, Kernel) and value.exports and value.__module__ == module.__name__]


def numba_type(spec: Spec, *, argument: bool = True):
    """The numba type of an argument or result spec (an array result is writable)."""
    from numba import from_dtype, types

    if spec is None:
        return types.none
    if isinstance(spec, tuple):
        return types.BaseTuple.from_types([numba_type(part, argument=argument) for part in spec])
    if spec == "i8":
        return types.int64
    dtype, ndim, written = array_spec(spec)
    return types.Array(from_dtype(dtype), ndim, "C", readonly=argument and not written)


def build(path: Path) -> None:
    """Compile every export into the extension module ``path`` (written whole, then renamed), and
    delete the modules of older sources beside it."""
    prepare_numba()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba.pycc's pending deprecation
        from numba.pycc import CC

        compiler = CC(AOT_MODULE)
    for kernel in exported_kernels():
        for index, (arguments, result) in enumerate(kernel.exports):
            signature = numba_type(result, argument=False)(*map(numba_type, arguments))
            compiler.export(export_name(kernel, index), signature)(kernel.py_func)
    with tempfile.TemporaryDirectory(dir=path.parent) as folder:
        compiler.output_dir, compiler.output_file = folder, path.name
        compiler.compile()
        os.replace(Path(folder) / path.name, path)
    for old in path.parent.glob("kernels-*"):
        if old != path and old.name.split(".")[0] != path.name.split(".")[0]:
            old.unlink(missing_ok=True)


def main() -> int:
    """Entry point of the child process: exit 1 with one line on stderr if the build fails."""
    try:
        build(Path(sys.argv[1]))
    except Exception as error:  # noqa: BLE001 - any failure (no compiler, ...) means the JIT is used
        print(f"{type(error).__name__}: {' '.join(str(error).split())[:300]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
