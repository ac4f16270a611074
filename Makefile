# Set-up is part of every target: `.venv` is created when missing.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.stochgrad-installed

.PHONY: demo test bench lint format clean

$(PY):
	python3 -m venv $(VENV)

# torch first, pinned to the CPU build available locally; the package itself asks for torch>=2.3.
$(STAMP): $(PY) pyproject.toml
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[all]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/stochgrad demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_score.py
	$(PY) benchmarks/bench_rl.py
	$(PY) benchmarks/bench_sb3.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info
