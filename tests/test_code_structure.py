"""The shape of the package: no import cycles, no long module without a stated reason, no
function more complex than radon's grade C, and nothing that reads beside the project root."""

from __future__ import annotations

import re

from radon.complexity import cc_rank, cc_visit

from scratchlm.code_inputs import PACKAGE_DIR, import_cycles, import_graph

MAX_LINES = 350
# Modules allowed to be longer, and why.
LONG_MODULES = {
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


def test_no_function_above_grade_c():
    """Cyclomatic complexity at most 20 (radon's grade C) everywhere in src/."""
    graded = [(f"{path.relative_to(PACKAGE_DIR)}:{block.lineno} {block.name}", cc_rank(block.complexity))
              for path in PACKAGE_DIR.rglob("*.py") for block in cc_visit(path.read_text())]
    assert [(name, rank) for name, rank in graded if rank > "C"] == []
    assert len(graded) > 300  # every module was read


def test_nothing_reads_beside_the_project_root(project_root):
    """A user's clone has nothing beside it: no code, test, rule or CI step names the developers'
    ``shared/`` folder next to the project (tests/fixtures holds the test data)."""
    beside = re.compile(r"\.\./shared|parent\s*/\s*[\"']shared[\"']")
    places = [project_root / name
              for name in ("src", "tests", "workflow", "benchmarks", ".ci", "Makefile", "Snakefile")]
    files = [path for place in places for path in ([place] if place.is_file() else place.rglob("*"))
             if path.is_file() and not {"fixtures", "__pycache__"} & set(path.relative_to(project_root).parts)
             and not path.parent.name.endswith(".egg-info")]
    assert len(files) > 100
    found = [f"{path.relative_to(project_root)}:{number}" for path in files
             for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
             if beside.search(line)]
    assert found == []
