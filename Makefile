# Two commands for a fresh machine (Python, pip, git and apt are all it needs):
#   make demo   — the main job: the sample project released and rolled through environments
#   make test   — the whole test suite (what .ci/run runs)
VENV      ?= .venv
PYTHON    ?= python3
STAMP     := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha256sum | cut -c1-12)
PYTEST_ARGS ?=
# Workers for `make test` (pytest-xdist): most tests wait on sshd, HAProxy, Prefect or PostgreSQL, so three
# workers keep two cores busy. Each worker starts its own lab on its own loopback /24.
PYTEST_WORKERS ?= 3

.PHONY: demo test test-fast lint venv system benchmarks clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check --upgrade pip
	$(VENV)/bin/pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

system:
	flows/lab/install-debian-packages

demo: venv system
	$(VENV)/bin/python -m flows.lab.demo

test: lint system
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --durations=25 $(PYTEST_ARGS)

# Everything but the slow end-to-end tests (they still run in `make test` and CI).
test-fast: venv system
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) -m "not slow" $(PYTEST_ARGS)

# ruff, then mypy over flows, steps and snapshots ([tool.mypy] in pyproject.toml).
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

benchmarks: venv system
	$(VENV)/bin/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
