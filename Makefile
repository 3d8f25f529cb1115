# make demo  -- install, start embedded sshd + SeaweedFS, run a real 1 GiB transfer
# make test  -- install what the tests need (sshd via apt when root), run the suite
# make bench -- s3ferry vs rclone vs s5cmd on the same 2 GiB file (docs/benchmarks.md)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.s3ferry-installed
PYTEST_ARGS ?=

.PHONY: demo test bench sysdeps install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test,bench,dev]'
	touch $@

# OpenSSH's sshd is the SFTP server of the test bed, prometheus-pushgateway the
# Pushgateway the metrics tests push to. Installed through apt when we are root;
# otherwise we say what is missing (the demo falls back to an asyncssh server,
# the tests need the real ones).
SYSPKGS := /usr/sbin/sshd:openssh-server /usr/bin/prometheus-pushgateway:prometheus-pushgateway
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

test: $(STAMP) sysdeps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP) sysdeps
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
