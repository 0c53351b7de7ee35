# Two commands on a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
# A local CPU build here; override for CUDA, e.g. TORCH_SPEC='torch==2.13.0 --index-url ...'.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=
BIN := $(VENV)/bin

# Models are never downloaded at run time: weights come from installed packages.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

BENCH_ARGS ?=

.PHONY: install dev chromium run test lint bench bench-smoke clean

# Each stamp is written last, after its step succeeded: a step that failed (or was interrupted)
# leaves no stamp, so the next `make run` does it again rather than skip it.
.DELETE_ON_ERROR:

# A venv counts as made once its pip runs (a venv whose ensurepip failed still has bin/python).
$(VENV)/.venv-created:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip --version >/dev/null
	touch $@

# Installed means "the mlapi command runs", not only "pip exited 0".
$(VENV)/.installed: setup.cfg pyproject.toml | $(VENV)/.venv-created
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e .
	$(BIN)/mlapi --version
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

$(VENV)/.bench-installed: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[bench]"
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.dev-installed chromium

# The docs browser test drives Debian's chromium (Playwright never downloads one); installed here
# when missing (root, as on the CI machines).
chromium:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

run: install
	$(BIN)/mlapi db upgrade
	$(BIN)/mlapi bootstrap
	exec $(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

test: dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The load generator is Debian's wrk; installed here when missing (root, as on the CI machines).
bench: $(VENV)/.bench-installed
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

# Both benchmarks end to end on a short setting (CI runs it; nothing is measured).
bench-smoke: $(VENV)/.bench-installed
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python benchmarks/smoke.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
