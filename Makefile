# Set-up and checks. `make test` is what CI runs (.ci/run).
PYTHON ?= python3

.PHONY: install test test-seqio demo bench

install:
	$(PYTHON) -m pip install -q -e ".[test]"

test: install
	$(PYTHON) -m pytest -q tests
	$(MAKE) test-seqio

# The seqio adapter with the optional extra installed, in its own venv so TensorFlow never enters the main one.
test-seqio:
	$(PYTHON) -m venv --system-site-packages .venv-seqio
	.venv-seqio/bin/python -m pip install -q -e ".[seqio]"
	.venv-seqio/bin/python -m pytest -q tests/data/test_seqio_source.py

demo:
	$(PYTHON) -m pip install -q -e . && ladderlab demo

bench:
	$(PYTHON) benchmarks/fit_speed.py --json fit_speed.json
