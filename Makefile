# Set-up is part of every target: `.venv` is created when missing.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.stochgrad-installed
DOCS_STAMP := $(VENV)/.stochgrad-docs-installed

.PHONY: demo test docs bench lint format clean

$(PY):
	python3 -m venv $(VENV)

# torch first, pinned to the CPU build available locally; the package itself asks for torch>=2.3.
$(STAMP): $(PY) pyproject.toml
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[all]"
	# the MOSES corpus ships inside molsets' wheel; its pinned dependencies clash with current pandas
	$(PIP) install -q --no-deps "molsets==0.3.1"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/stochgrad demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# the docs extra, also for a .venv set up before the extra existed
$(DOCS_STAMP): $(STAMP)
	$(PIP) install -q -e ".[docs]"
	touch $(DOCS_STAMP)

# the reference site, into site/; --strict turns every warning (a docstring section that does
# not match the signature, a broken link or anchor) into a failure
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

test: lint docs
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_score.py
	$(PY) benchmarks/bench_rl.py --with-sb3 --seeds 5
	$(PY) benchmarks/bench_hmm.py
	$(PY) benchmarks/bench_telegraph.py
	$(PY) benchmarks/bench_telegraph_txburst.py
	$(PY) benchmarks/bench_rbm.py --seeds 5
	$(PY) benchmarks/bench_bbvi.py
	$(PY) benchmarks/bench_greeks.py
	$(PY) benchmarks/bench_design.py
	$(PY) benchmarks/bench_offpolicy.py
	$(PY) benchmarks/bench_molecules.py
	$(PY) benchmarks/fault_table.py

clean:
	rm -rf $(VENV) build dist site src/*.egg-info
