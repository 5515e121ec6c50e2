# Quick start:  make train   (set up, then cold start + GRPO on the embedded default)
#               make test    (set up, then the default test suite)
#               make lint    (ruff check + ruff format --check, line length 120)
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: setup train test lint test-slow bench clean

setup: $(VENV)/.setup-done

$(VENV)/.setup-done: pyproject.toml scripts/setup.sh scripts/vllm_cpu_requirements.py
	bash scripts/setup.sh dev
	touch $@

train: setup
	$(VENV)/bin/reasoner-fetch-model
	$(VENV)/bin/reasoner-train $(ARGS)

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test-slow: setup
	$(PY) -m pytest -q -m slow

bench: setup
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) -m bench.rollout && $(PY) -m bench.sync && $(PY) -m bench.learner && $(PY) -m bench.step && $(PY) -m bench.peer

clean:
	rm -rf $(VENV) outputs
