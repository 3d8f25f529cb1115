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
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test,bench]'
	touch $@

# OpenSSH's sshd is the SFTP server of the test bed. Installed through apt when
# we are root; otherwise we say what is missing (the demo falls back to an
# asyncssh server, the tests need the real one).
sysdeps:
	@if [ -x /usr/sbin/sshd ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing openssh-server (apt)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client >/dev/null; \
	else echo "note: /usr/sbin/sshd not found; install openssh-server (the tests need it)"; fi

demo: $(STAMP) sysdeps
	$(BIN)/s3ferry demo

test: $(STAMP) sysdeps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP) sysdeps
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
