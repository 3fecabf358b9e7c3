# Two entry points: `make demo` and `make test`. Both create .venv and install
# pinned dependencies on first use, so each works alone on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CORES  ?= all
# torch is pinned; where it comes from is up to the machine (README, "GPU node"):
# TORCH_INDEX=https://download.pytorch.org/whl/cu128 picks a CUDA build,
# TORCH_INDEX=https://download.pytorch.org/whl/cpu a CPU-only one.
TORCH_SPEC  ?= torch==2.13.0
TORCH_INDEX ?=
STAMP  := $(VENV)/.installed

.PHONY: demo test test-cluster faults install bench lint clean

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -c requirements/constraints.txt -e ".[dev]"
	$(BIN)/scratchlm compile   # the tokenizer's compiled kernels, once, with progress (about a minute)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --workflow-profile workflow/profiles/default --cores $(CORES)

test: $(STAMP)
	$(BIN)/python -m pytest

# The pipeline through the SLURM profile on a real one-node cluster that tests/cluster/slurm.sh
# starts here (root; Debian packages installed if missing); see README, "SLURM".
test-cluster: $(STAMP)
	$(BIN)/python -m pytest -m cluster tests/cluster

# Every artefact of the .test pipeline damaged in every way, each command that reads it run on it:
# one line naming the file, never a traceback (README, "Tests and benchmarks"; minutes, not in CI).
faults: $(STAMP)
	$(BIN)/python tests/faults/damaged_artefacts.py

# Speed/memory benchmarks (ours next to a peer, same run); see README, "Tests and benchmarks".
bench: $(STAMP)
	for script in benchmarks/[!_]*.py; do $(BIN)/python $$script || exit 1; done

# ruff (pyproject's [tool.ruff]) and Snakemake's linter, whose advice to use conda or containers
# is the one lint this workflow accepts (the test below fails on any other).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q tests/test_pipeline.py -k lint

clean:
	rm -rf results .snakemake
