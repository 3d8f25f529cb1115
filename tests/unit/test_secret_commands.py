"""Secret sources (core/secrets.py): what a command's output becomes, and what its failure says."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from s3ferry.cli.app import main
from s3ferry.core.errors import UsageError
from s3ferry.core.options import PgpOptions, SftpOptions
from s3ferry.core.redaction import scrub
from s3ferry.core.secrets import Secret, SecretSource, run_command
from s3ferry.jobs.flowfile import load


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


def test_a_secret_is_given_one_way(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["cp", "--password-file", "/x", "--password-command", "pass show x", "a", "b"],
                                env={"S3FERRY_CONFIG": "/dev/null"})
    assert result.exit_code == 2 and "give the password one way: --password-file or --password-command" in \
        result.output
    with pytest.raises(UsageError, match="give the SSH key passphrase one way"):
        SftpOptions(passphrase_env="A", passphrase_command="b")
    with pytest.raises(UsageError, match="give the OpenPGP key passphrase one way"):
        PgpOptions(encrypt_to=(Path("k"),), passphrase_env="A", passphrase_file=Path("p")).check()
    flows = tmp_path / "flows.toml"
    flows.write_text('[defaults]\nidentity_passphrase_env = "PP"\npgp_passphrase_file = "pp.txt"\n'
                     '[flows.a]\nkind = "pull"\nsource = "/tmp/in"\ndestination = "s3://bkt/p/"\nevery = "1h"\n'
                     'identity_passphrase_command = "pass show ssh/a"\npassword_command = "pass show sftp/a"\n')
    loaded = load(flows, require_env=False)
    assert not loaded.errors
    assert [p.message for p in loaded.warnings if "_env" in p.message] == []  # the flow's own command replaced it
    flow = loaded.flows["a"]
    assert flow.options.sftp.passphrase_command == "pass show ssh/a" and flow.options.sftp.passphrase_env is None
    assert flow.options.sftp.password_command == "pass show sftp/a"
    assert flow.options.pgp.passphrase_file == tmp_path / "pp.txt"


def test_an_unset_passphrase_variable_is_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_PP", raising=False)
    flows = tmp_path / "flows.toml"
    flows.write_text('[flows.a]\nkind = "pull"\nsource = "/tmp/in"\ndestination = "s3://bkt/p/"\nevery = "1h"\n'
                     'pgp_passphrase_env = "NOT_SET_PP"\n')
    loaded = load(flows, require_env=False)
    assert not loaded.errors
    assert [p.format("flows.toml") for p in loaded.warnings] == \
        ["flows.toml:6: flows.a: warning: pgp_passphrase_env NOT_SET_PP is not set"]
