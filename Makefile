# The README's two commands: `make demo` and `make test`. Both set up a fresh machine first.
SHELL := /bin/bash
PY := .venv/bin/python
CLI := .venv/bin/coredns-anomaly

.PHONY: setup demo test test-fast test-integration lint format dataset

setup:
	@bash scripts/bootstrap.sh

# For now the main job is a short lab run that ends with a plot; it grows into the full loop.
demo: setup
	$(CLI) lab record --preset demo --out runs/demo --plot runs/demo/timeline.png

test: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	$(PY) -m pytest -m "not integration" -q
	$(PY) -m pytest -m integration -q

test-fast: setup
	$(PY) -m pytest -m "not integration" -q

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

format:
	.venv/bin/ruff check --fix . && .venv/bin/ruff format .

# The shipped datasets: one seeded command each (see docs/dataset.md), ~35 minutes each.
dataset: setup
	$(CLI) lab record --preset shipped --out data/lab-v1
	$(CLI) lab record --preset shipped --seed 2027 --out data/lab-v2
