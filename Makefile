# Postern. The two commands the README promises: `make run` and `make test`; then
# `make build`, `make lint`, `make image` and `make deploy` for AWS (README "Build").
PYTHON ?= $(shell command -v python3.11 || echo python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed

# Tool venvs (tools/*.txt pin each one): aws-sam-cli, cfn-lint and checkov pin boto3 and
# friends differently from constraints.txt, so each has its own venv, linked at .tools/NAME and
# kept in ~/.cache/postern-tools, built once per pin file (tools/venv.sh).
TOOLS   = .tools
SAM     = $(TOOLS)/sam/bin/sam
CFNLINT = $(TOOLS)/cfn-lint/bin/cfn-lint
CHECKOV = $(TOOLS)/checkov/bin/checkov

# The Lambda functions' architecture (template parameter FunctionArchitecture).
FUNCTION_ARCH ?= arm64
# Arguments for `sam deploy` (e.g. DEPLOY_ARGS=--guided the first time).
DEPLOY_ARGS ?=

# The webmail (webmail/, README "Webmail"): `npm ci` when package.json or the lock changed (the stamp
# is inside node_modules, which npm ci replaces), `npm run build` into webmail/dist when a source
# did (dist/index.html is the build's stamp: build.mjs swaps in a complete dist/ or none).
# tools/node_check.sh first: one line saying what to install when Node (engines) or npm is missing.
WEBMAIL       = webmail
WEBMAIL_DEPS  = $(WEBMAIL)/node_modules/.postern-installed
WEBMAIL_BUILT = $(WEBMAIL)/dist/index.html
WEBMAIL_SRC   = $(shell find $(WEBMAIL)/src $(WEBMAIL)/static $(WEBMAIL)/test -type f 2>/dev/null) \
                $(wildcard $(WEBMAIL)/build.mjs $(WEBMAIL)/tsconfig.json)

.PHONY: run test test-big venv tools webmail bench compat faults load cost cost-floor fuzz-long build lint image rspamd-image deploy deploy-webmail clean

$(STAMP): requirements-dev.txt constraints.txt layers/postern/requirements.txt gateway/requirements.txt \
          layers/postern/pyproject.toml gateway/pyproject.toml local/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements-dev.txt
	$(PIP) install --quiet --no-deps -e layers/postern -e gateway -e local
	touch $(STAMP)

venv: $(STAMP)

tools:
	PYTHON=$(PYTHON) tools/venv.sh sam cfn-lint checkov

$(WEBMAIL_DEPS): $(WEBMAIL)/package.json $(WEBMAIL)/package-lock.json
	@$(SHELL) tools/node_check.sh $(WEBMAIL)/package.json
	cd $(WEBMAIL) && npm ci --no-audit --no-fund
	touch $@

$(WEBMAIL_BUILT): $(WEBMAIL_DEPS) $(WEBMAIL_SRC)
	@$(SHELL) tools/node_check.sh $(WEBMAIL)/package.json
	cd $(WEBMAIL) && npm run build
	touch $@

webmail: $(WEBMAIL_BUILT)

run: $(STAMP) webmail
	$(VENV)/bin/postern-local

test: $(STAMP) tools webmail
	$(PY) -m pytest

# The tests make test skips for their time (POSTERN_BIG_TESTS=1): an attachment at the SMTP limit through the
# presigned upload and EmailSubmission, read back over IMAP (tests/e2e/test_jmap_blobs.py; README "Webmail").
test-big: $(STAMP)
	POSTERN_BIG_TESTS=1 $(PY) -m pytest -m slow tests/e2e/test_jmap_blobs.py

bench: $(STAMP) webmail
	$(PY) bench/run_all.py

# Evidence (bench/README: what each measures). Loopback only, bounded in time.
faults: $(STAMP)
	$(PY) bench/faults.py

load: $(STAMP)
	$(PY) bench/load.py

cost: $(STAMP)
	$(PY) bench/cost.py

# The idle floors alone (template.yaml x prices.json, no stack, seconds): printed line by line, and
# docs/cost.md's floor part rewritten. `make cost` prints and writes them too, with the per-message figures.
cost-floor: $(STAMP)
	$(PY) bench/cost.py --floor

# The long fuzz run (docs/hostile.md): every fuzz property with FUZZ_EXAMPLES inputs each, under the
# per-input liveness ceilings, nice'd; figures in .postern-local/evidence/fuzz-long.json. ~1.5 h on 2 busy cores.
FUZZ_EXAMPLES ?= 7700
FUZZ_TESTS ?= tests/unit/test_fuzz_*.py tests/unit/test_sieve_parser.py
FUZZ_REPORT ?= .postern-local/evidence/fuzz-long.json
fuzz-long: $(STAMP)
	POSTERN_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) POSTERN_FUZZ_REPORT=$(FUZZ_REPORT) \
		nice -n 10 $(PY) -m pytest --timeout=0 -p no:cacheprovider $(FUZZ_TESTS)

# Real IMAP clients (curl, mbsync, fetchmail, getmail; apt-get installs them when root) against the local stack.
compat: $(STAMP)
	tests/compat/run.sh

# The template: cfn-lint, then checkov (.checkov.yaml lists the checks it skips, each with its reason).
lint: tools
	$(CFNLINT) template.yaml
	$(CHECKOV) --config-file .checkov.yaml --quiet --compact --skip-download -f template.yaml

# sam build (no Docker: pure-Python and manylinux wheels) of a clean copy of the sources
# (tools/stage.py: no __pycache__ or egg-info, so SAM's cache holds), then the check that the
# runtime can load what was built (tools/check_build.py), cached build or not.
build: tools
	$(PYTHON) tools/stage.py .aws-sam/src
	cd .aws-sam/src && $(abspath $(SAM)) build --build-dir ../build --cache-dir ../cache \
		--parameter-overrides FunctionArchitecture=$(FUNCTION_ARCH)
	$(PYTHON) tools/check_build.py .aws-sam/build --arch $(FUNCTION_ARCH)

# The gateway image for arm64 (docker buildx), tagged postern-gateway:<commit>.
image:
	$(PYTHON) tools/deploy.py image

# The rspamd sidecar's image (rspamd/Dockerfile) for IMAGE_PLATFORM, pushed to the ECR repository
# RSPAMD_REPOSITORY (default postern-rspamd, created if missing); prints RspamdImage=<repo>@sha256:...
rspamd-image: tools
	$(TOOLS)/sam/bin/python tools/deploy.py rspamd-image

# ECR repository (created if missing), image pushed, `sam deploy` with that image URI, then the
# webmail (webmail/dist) uploaded to the stack's app bucket and the distribution invalidated.
deploy: webmail
	$(PYTHON) tools/deploy.py preflight
	$(MAKE) build
	$(TOOLS)/sam/bin/python tools/deploy.py deploy --function-arch $(FUNCTION_ARCH) -- $(DEPLOY_ARGS)

# Only the webmail's upload and invalidation, to the stack already deployed (an app-only change).
deploy-webmail: webmail tools
	$(TOOLS)/sam/bin/python tools/deploy.py webmail

clean:
	rm -rf $(VENV) $(TOOLS) .aws-sam .pytest_cache $(WEBMAIL)/node_modules $(WEBMAIL)/dist $(WEBMAIL)/dist.tmp
