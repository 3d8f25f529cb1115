# make demo  -- install, start embedded sshd + SeaweedFS, run a real 1 GiB transfer
# make test  -- install what the tests need (sshd via apt when root), run every tier: unit, conformance, integration
#              (make test-unit: no server at all, seconds; test-conformance, test-integration: real servers)
# make lint  -- the gates: ruff, mypy --strict, lint-imports (make -k lint runs all of them whatever fails)
# make bench -- s3ferry vs rclone vs s5cmd on the same 2 GiB file (docs/benchmarks.md)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.s3ferry-installed
PYTEST_ARGS ?=
# the tests and gates read this checkout's sources, whatever an editable install of the venv points at
export PYTHONPATH := $(CURDIR)/src$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: demo test test-unit test-conformance test-integration lint lint-ruff lint-mypy lint-imports bench sysdeps \
	install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test,bench,dev]'
	touch $@

# OpenSSH's sshd is the SFTP server of the test bed, prometheus-pushgateway the
# Pushgateway the metrics tests push to, chromium the browser the status-page test
# drives (headless, through Playwright), gnupg and zstd the partner-side tools the OpenPGP and
# compression tests check against. Installed through apt when we are root;
# otherwise we say what is missing (the demo falls back to an asyncssh server,
# the tests need the real ones).
SYSPKGS := /usr/sbin/sshd:openssh-server /usr/bin/prometheus-pushgateway:prometheus-pushgateway /usr/bin/chromium:chromium \
	/usr/bin/gpg:gnupg /usr/bin/zstd:zstd
sysdeps:
	@missing=""; for pair in $(SYSPKGS); do \
		[ -x "$${pair%%:*}" ] || missing="$$missing $${pair##*:}"; done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing$$missing (apt)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			$$missing $$(echo "$$missing" | grep -q openssh-server && echo openssh-client) >/dev/null; \
	else echo "note: missing$$missing; install them (the tests need them)"; fi

demo: $(STAMP) sysdeps
	$(BIN)/s3ferry demo

# every tier, unit first (testpaths in pyproject.toml): it fails in seconds when something basic is broken
test: $(STAMP) sysdeps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS) tests/unit

test-conformance test-integration: test-%: $(STAMP) sysdeps
	$(BIN)/python -m pytest $(PYTEST_ARGS) tests/$*

lint: lint-ruff lint-mypy lint-imports

lint-ruff: $(STAMP)
	$(BIN)/ruff check src tests bench

# files and strictness from [tool.mypy] in pyproject.toml
lint-mypy: $(STAMP)
	$(BIN)/mypy --strict

# the layer contracts of [tool.importlinter]
lint-imports: $(STAMP)
	$(BIN)/lint-imports

bench: $(STAMP) sysdeps
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
