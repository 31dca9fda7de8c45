# Set-up and checks. `make test` is what CI runs (.ci/run). Every install is pinned by requirements.lock, so a fresh
# machine tests exactly the versions CI tested; `make lock` refreshes it, `make test-latest` tries the newest releases.
PYTHON ?= python3
PIP = $(PYTHON) -m pip install -q -c requirements.lock

.PHONY: install install-bench test test-unit test-layers test-bench venvs test-seqio test-tpu test-cloud test-latest lock demo \
	bench

install:
	$(PIP) -e ".[test]"

# The peers the benchmarks measure against (PyTorch CPU, LightGBM); without them they report "baseline": "skipped".
install-bench:
	$(PIP) -e ".[test,bench]"

# Every step runs (-k) and prints its summary line; any failure fails the target. The extras' venvs are built
# (one after another: each writes the project's egg-info) while the unit tests run, since pip mostly downloads.
test: install
	@status=0; $(MAKE) -k -j2 test-unit venvs || status=1; \
	$(MAKE) -k test-layers test-bench test-seqio test-tpu test-cloud || status=1; exit $$status

# Two pytest-xdist workers: most of a test's time is XLA compiling, one thread each (9 min instead of 12 on 2 cores).
test-unit:
	$(PYTHON) -m pytest -q -n 2 tests

# The layering rule in pyproject.toml ([tool.importlinter]).
test-layers:
	$(PYTHON) -c "from importlinter.cli import lint_imports_command; lint_imports_command()" --no-cache

# Every benchmark in --smoke mode: it runs, and its JSON keys are present, finite and (rates, times) positive.
test-bench:
	$(PYTHON) benchmarks/smoke.py

# Heavy optional extras are tested in venvs of their own (with the system's site-packages), so TensorFlow, libtpu
# and the cluster tools never enter the main one: .venv-<name> gets the extras EXTRAS_<name>.
EXTRAS_seqio = seqio
EXTRAS_tpu = tpu
EXTRAS_cloud = gcs,gcs-emulator,wandb,ray
venvs:
	$(MAKE) -j1 .venv-seqio/ready .venv-tpu/ready .venv-cloud/ready

.venv-%/ready: pyproject.toml requirements.lock
	$(PYTHON) -m venv --system-site-packages .venv-$*
	.venv-$*/bin/python -m pip install -q --no-compile -c requirements.lock -e ".[$(EXTRAS_$*)]"
	touch $@

# The seqio adapter with the optional extra installed.
test-seqio: .venv-seqio/ready
	.venv-seqio/bin/python -m pytest -q tests/data/test_seqio_source.py

# The cluster extras: gs:// paths with the gcs extra (gcsfs) against a local GCS server (gcp-storage-emulator,
# started by the tests on 127.0.0.1): a tiny ladder trained, killed, resumed and reported on it; W&B tracking (the
# wandb extra), offline: a killed and resumed run is one tracked run; and `ladder run --executor ray` (the ray
# extra) on a local Ray cluster: a worker killed mid-run, and a 2-host run with a host killed.
test-cloud: .venv-cloud/ready
	.venv-cloud/bin/python -m pytest -q tests/ladders/test_ladder_gcs.py tests/ladders/test_ladder_wandb.py \
		tests/ladders/test_ladder_ray.py

# Deviceless TPU compiles with the tpu extra (libtpu's compiler, ~0.7 GB unpacked).
test-tpu: .venv-tpu/ready
	.venv-tpu/bin/python -m pytest -q -rs tests/ladders/run/test_tpu_compile.py

# The newest release of every dependency, past pyproject.toml's pins and caps, in a throwaway venv (not CI: it says
# what a bump would meet); the versions it tested are listed in .venv-latest/versions.txt.
DEPENDENCIES = $(shell $(PYTHON) -c "import re, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
	print(*{re.match('[A-Za-z0-9_.-]+', d)[0] for d in p['dependencies'] + p['optional-dependencies']['test'] \
	+ p['optional-dependencies']['bench']})")
test-latest:
	rm -rf .venv-latest && $(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install -q -U pip $(DEPENDENCIES)
	.venv-latest/bin/python -m pip install -q --no-deps -e .
	.venv-latest/bin/python -m pip list --format=freeze > .venv-latest/versions.txt
	$(MAKE) -k test-unit test-layers test-bench PYTHON=.venv-latest/bin/python

# Re-resolve requirements.lock from pyproject.toml (all extras) at the newest versions that fit it.
lock:
	$(PYTHON) -m pip install -q pip-tools
	$(PYTHON) -m piptools compile -q --upgrade --all-extras --strip-extras --no-emit-index-url --no-emit-find-links \
		-o requirements.lock pyproject.toml
	sed -i 's/^\(torch==[0-9.]*\)+cpu$$/\1/' requirements.lock  # the CPU wheel where offered, PyPI's elsewhere

demo:
	$(PYTHON) -m pip install -q -e . && ladderlab demo

bench:
	$(PYTHON) benchmarks/fit_speed.py --json fit_speed.json
