# Postern. The two commands the README promises: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed

.PHONY: run test venv bench compat faults load cost build lint clean

$(STAMP): requirements-dev.txt layers/postern/pyproject.toml gateway/pyproject.toml local/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements-dev.txt
	$(PIP) install --quiet --no-deps -e layers/postern -e gateway -e local
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/postern-local

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/run_all.py

# Evidence (bench/README: what each measures). Loopback only, bounded in time.
faults: $(STAMP)
	$(PY) bench/faults.py

load: $(STAMP)
	$(PY) bench/load.py

cost: $(STAMP)
	$(PY) bench/cost.py

# Real IMAP clients (curl, mbsync, fetchmail, getmail; apt-get installs them when root) against the local stack.
compat: $(STAMP)
	tests/compat/run.sh

lint: $(STAMP)
	$(VENV)/bin/cfn-lint template.yaml

build: lint
	sam build

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache
