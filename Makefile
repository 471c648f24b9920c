# framechain: `make demo` serves the web chat on the preview backend (no GPU, no model, no tokens);
# `make render-demo` renders a chained video from a storyboard file the same way; `make test`
# runs ruff, mypy and the tests. Each creates the virtual environment it needs.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# Where no NVIDIA GPU is present the tests take the CPU build of torch (on these machines
# torch==2.13.0 is a CPU build); a GPU server installs CUDA torch through `make gpu`.
TORCH_CPU ?= torch==2.13.0

.PHONY: demo render-demo test lint gpu run clean

DEMO_ADDRESS := http://127.0.0.1:8765/

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

$(VENV)/.test: $(VENV)/.base
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(PIP) install -q "$(TORCH_CPU)"; fi
	$(PIP) install -q -e '.[gpu,dev]'
	touch $@

# Only the web front end: chat tokens in the environment are left out.
demo: $(VENV)/.base
	@echo "framechain demo: open $(DEMO_ADDRESS) in a browser (Ctrl-C stops; data in out/demo-data)"
	env -u FRAMECHAIN_DISCORD_TOKEN -u FRAMECHAIN_TELEGRAM_TOKEN $(VENV)/bin/framechain run --config examples/demo.toml

render-demo: $(VENV)/.base
	$(PY) -m bot.cli render examples/storyboard.toml --out out/demo.mp4

lint: $(VENV)/.test
	$(VENV)/bin/ruff check bot worker shared tests bench
	$(VENV)/bin/ruff format --check bot worker shared tests bench
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest

# Everything a GPU server needs (CUDA torch from PyPI, diffusers, transformers, accelerate).
gpu: $(VENV)/.base
	$(PIP) install -e '.[gpu]'

run: $(VENV)/.base
	$(VENV)/bin/framechain run --config $(or $(CONFIG),config.toml)

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
