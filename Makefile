# aikit's task runner: the README's two commands are `make demo` and `make test`.
# Each creates .venv when it is missing and installs everything it needs.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.aikit-installed

# llama.cpp is compiled by pip; a native build can use CPU features a VM refuses (SIGILL),
# so build for a portable instruction set.
ARCH := $(shell uname -m)
ifeq ($(ARCH),x86_64)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
else
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF
endif

.PHONY: setup demo test lint format typecheck pytest rerecord bench lab clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "aikit needs Python >= 3.11; set PYTHON=python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0  # first: a CPU build, not the CUDA one
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install --quiet -e '.[api,cloud,local,dask,dev,guards,otel,phoenix,rag]'
	$(BIN)/python -m ipykernel install --sys-prefix --name aikit --display-name 'Python (aikit)' >/dev/null
	@touch $@

# The main job: the onboarding playbook (every notebook, in order) on the embedded model.
demo: setup
	@running=$$($(BIN)/aikit serve --status >/dev/null 2>&1 && echo yes || echo no); \
	$(BIN)/aikit run playbooks/onboarding.yaml; \
	status=$$?; \
	if [ $$running = no ]; then $(BIN)/aikit serve --stop >/dev/null; fi; \
	exit $$status

# The whole test suite: lint, format check, type check, then pytest (live model tests included).
test: setup lint typecheck pytest

lint: setup
	$(BIN)/ruff check aikit tests benchmarks notebooks
	$(BIN)/ruff format --check aikit tests benchmarks notebooks

format: setup
	$(BIN)/ruff format aikit tests benchmarks notebooks
	$(BIN)/ruff check --fix aikit tests benchmarks notebooks

typecheck: setup
	$(BIN)/mypy aikit

pytest: setup
	$(BIN)/python -m pytest

# Re-execute the notebooks on the embedded model and rewrite their outputs and cassettes.
rerecord: setup
	$(BIN)/aikit rerecord notebooks/*.ipynb

# JupyterLab on 127.0.0.1 with the kit's notebooks (the `aikit` kernel, widgets working).
lab: setup
	$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=notebooks

# Every performance script in benchmarks/; each prints its measured ratios.
bench: setup
	@for script in benchmarks/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
