# Two commands do all the set-up on a fresh machine:
#   make audit  -> creates .venv, installs torch==2.13.0 first, then secsplit, and runs the main job:
#                  the quick leakage audit on embedded data, report in audit-results/report.html
#   make test   -> same set-up, then the whole test suite
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.secsplit-installed

.PHONY: setup audit demo test test-fast bench clean

setup: $(STAMP)

# torch goes in first and pinned: an unpinned torch would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,ray]'
	touch $(STAMP)

audit: setup
	$(VENV)/bin/secsplit audit --preset quick --out audit-results --jobs 2

demo: setup
	$(VENV)/bin/secsplit train --dataset mnist --model lenet --topology ushape --epochs 5

test: setup
	$(VENV)/bin/ruff check --quiet --select F,E9 secsplit attacks defenses evaluation tests benchmarks
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

bench: setup
	$(PY) benchmarks/bench_split_overhead.py

clean:
	rm -rf $(VENV) build dist *.egg-info audit-results
