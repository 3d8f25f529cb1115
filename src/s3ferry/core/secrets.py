"""Secrets where people keep them: a file, an environment variable, or a command (issue 19, item 5).

Every password and passphrase s3ferry uses (SFTP/FTP passwords, an SSH key's
passphrase, an OpenPGP key's passphrase) is described by a :class:`SecretSource`
-- never by its value: the CLI, the config file and the flows file only ever
carry a path, a variable's name or a command line. The value is read when it
is first needed, registered with the log scrubber (:mod:`s3ferry.core.redaction`)
before anything can print it, and kept in memory only.

A command (``vault kv get -field=pw secret/partner``, ``pass show partner``)
runs without a shell (``shlex.split``), with its stdin closed and a timeout;
its stdout, less one trailing newline, is the secret. It runs once per process
and command line: an SFTP transfer opens many connections, and a password
manager asked eight times (or prompting eight times) would be a bug.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from s3ferry.core.errors import UsageError
from s3ferry.core.redaction import register_secret

#: seconds a secret command may take (a password manager may ask for a touch of a hardware key)
COMMAND_TIMEOUT = 60.0

_cache: dict[str, str] = {}
_running = threading.Lock()  # connections read their password in worker threads (asyncio.to_thread)


class Secret:
    """A secret value that does not show itself: ``repr`` and ``str`` are masked; :meth:`reveal` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        register_secret(value)
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__


@dataclass(frozen=True)
class SecretSource:
    """Where one secret comes from: a file, an environment variable, or a command (the first one given)."""

    file: Path | None = None
    env: str | None = None
    command: str | None = None

    @property
    def given(self) -> bool:
        return self.file is not None or bool(self.env) or bool(self.command)

    def read(self, what: str) -> Secret | None:
        """The secret (None when no source is given); ``what`` names it in errors ("--password-command")."""
        if self.file is not None:
            return Secret(read_file(self.file, what))
        if self.command:
            return Secret(run_command(self.command, what))
        if self.env:
            value = os.environ.get(self.env)
            if not value:
                raise UsageError(f"{what}: the environment variable {self.env} is not set (or empty)")
            return Secret(value)
        return None


def read_file(path: Path, what: str) -> str:
    """The secret held in ``path`` (one trailing line break dropped); empty is an error."""
    try:
        value = path.read_text().rstrip("\r\n")
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from exc
    if not value:  # else the login fails as a wrong password would, and the file is not suspected
        raise UsageError(f"{what} {path} is empty: it must hold the secret")
    return value


def run_command(command: str, what: str) -> str:
    """The stdout of ``command`` less one trailing newline, cached for the process, registered as a secret.

    Errors are one line naming the program and how it failed -- never its
    output or its arguments (a careless command may print the secret to
    stderr, or take a token as an argument).
    """
    with _running:
        cached = _cache.get(command)
        if cached is not None:
            return cached
        value = _run(command, what)
        register_secret(value)
        _cache[command] = value
        return value


def _run(command: str, what: str) -> str:
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"{what}: cannot split the command line ({exc})") from None
    if not argv:
        raise UsageError(f"{what} is empty")
    program = Path(argv[0]).name
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=COMMAND_TIMEOUT,
                              check=False)
    except subprocess.TimeoutExpired:
        raise UsageError(f"{what}: {program} did not finish within {COMMAND_TIMEOUT:.0f}s") from None
    except OSError as exc:
        raise UsageError(f"{what}: cannot run {program}: {exc.strerror}") from None
    if done.returncode != 0:
        # the status only: its stderr may echo the secret, or a token it was given
        raise UsageError(f"{what}: {program} failed (exit status {done.returncode})")
    try:
        out = done.stdout.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{what}: {program} printed something that is not UTF-8 text") from None
    value = out[:-1] if out.endswith("\n") else out
    value = value[:-1] if value.endswith("\r") else value
    if not value:
        raise UsageError(f"{what}: {program} printed nothing")
    return value

