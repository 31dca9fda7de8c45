# Set-up and checks. `make test` is what CI runs (.ci/run).
PYTHON ?= python3

.PHONY: install test demo bench

install:
	$(PYTHON) -m pip install -q -e ".[test]"

test: install
	$(PYTHON) -m pytest -q tests

demo:
	$(PYTHON) -m pip install -q -e . && ladderlab demo

bench:
	$(PYTHON) benchmarks/fit_speed.py --json fit_speed.json
