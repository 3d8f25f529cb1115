"""Secret sources (core/secrets.py): what a command's output becomes, and what its failure says."""

from __future__ import annotations

from pathlib import Path

import pytest

from s3ferry.core.errors import UsageError
from s3ferry.core.redaction import scrub
from s3ferry.core.secrets import Secret, SecretSource, run_command


def script(folder: Path, body: str) -> str:
    path = folder / "tool"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o700)
    return str(path)


def test_one_trailing_newline_is_dropped_and_the_value_is_scrubbed(tmp_path: Path) -> None:
    value = run_command(script(tmp_path, "printf 'pa ss-4711\\n\\n'"), "--password-command")
    assert value == "pa ss-4711\n"
    assert scrub(f"login with {value}.") == "login with ***."


def test_a_command_runs_once_per_process(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    command = script(tmp_path, f"echo x >> {counter}; echo once-only-secret")
    for _ in range(3):
        assert run_command(command, "--password-command") == "once-only-secret"
    assert counter.read_text() == "x\n"


def test_failure_names_the_program_and_status_not_the_output(tmp_path: Path) -> None:
    command = script(tmp_path, "echo out-secret-1; echo err-secret-2 >&2; exit 5")
    with pytest.raises(UsageError) as info:
        run_command(command, "--password-command")
    assert str(info.value) == "--password-command: tool failed (exit status 5)"
    assert info.value.__cause__ is None and info.value.__context__ is None  # nothing for --debug to print


def test_empty_output_and_bad_quoting_are_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="printed nothing"):
        run_command(script(tmp_path, "true"), "x")
    with pytest.raises(UsageError, match="cannot split"):
        run_command("vault 'unclosed", "x")


def test_sources_in_order_and_the_secret_hides_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_PASSPHRASE", "from-the-env-99")
    secret = SecretSource(env="MY_PASSPHRASE").read("--pgp-passphrase-env")
    assert secret is not None and secret.reveal() == "from-the-env-99"
    assert "from-the-env" not in repr(secret) + str(secret) + repr([secret])
    assert SecretSource().read("x") is None
    monkeypatch.delenv("MY_PASSPHRASE")
    with pytest.raises(UsageError, match="MY_PASSPHRASE is not set"):
        SecretSource(env="MY_PASSPHRASE").read("--pgp-passphrase-env")
    (tmp_path / "pp").write_text("from-a-file-77\n")
    file_first = SecretSource(file=tmp_path / "pp", env="MY_PASSPHRASE").read("x")
    assert isinstance(file_first, Secret) and file_first.reveal() == "from-a-file-77"
