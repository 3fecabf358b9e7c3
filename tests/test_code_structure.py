"""The shape of the package: no import cycles, and no long module without a stated reason."""

from __future__ import annotations

from scratchlm.code_inputs import PACKAGE_DIR, import_cycles, import_graph

MAX_LINES = 350
# Modules allowed to be longer, and why.
LONG_MODULES = {
    "nn/model.py": "the whole model in one readable file (config, blocks, forward, init), as nanoGPT's",
    "tokenizer/fast_merge.py": "the compiled merge loop: numba kernels that share their arrays",
    "training/trainer.py": "one class: the step, evaluation, checkpoints and the loop that ties them",
}


def test_no_import_cycles():
    graph = import_graph()
    assert "scratchlm.training.distributed" in graph["scratchlm.training.trainer"]  # the graph is real
    assert import_cycles(graph) == []


def test_long_modules_have_a_reason():
    lengths = {path.relative_to(PACKAGE_DIR).as_posix(): len(path.read_text().splitlines())
               for path in PACKAGE_DIR.rglob("*.py")}
    assert {name for name, lines in lengths.items() if lines > MAX_LINES} == set(LONG_MODULES)
