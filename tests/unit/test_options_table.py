"""The option table (s3ferry.core.optionspec) is the one source of every command's options, the flows-file
keys, the config file's endpoint keys and the README's option tables. Fast: no servers."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from s3ferry.cli import main
from s3ferry.cli.settings import ENDPOINT_KEYS
from s3ferry.core.errors import UsageError
from s3ferry.core.options import OptionError, TransferOptions
from s3ferry.core.optionspec import COMMANDS, OPTIONS, flows_options, options_of
from s3ferry.jobs.flowfile import SPECS, flow_where, load

README = Path(__file__).resolve().parents[2] / "README.md"
#: flows-file keys that are not options: what a flow is, where it goes, when, and whose password
FLOW_STRUCTURE = {"kind", "source", "destination", "schedule", "every", "password_env"}
OUTPUT = {"--json", "-q", "--quiet", "-v", "--verbose", "--log-format", "--debug"}


def help_flags(name: str) -> set[str]:
    """The option spellings ``s3ferry NAME --help`` lists."""
    result = CliRunner().invoke(main, [name, "--help"], env={"S3FERRY_CONFIG": "/dev/null"})
    assert result.exit_code == 0, result.output
    options = result.output.split("\nOptions:\n", 1)[1]
    flags = set(re.findall(r"(?:^|[\s,/])(--?[A-Za-z][a-z0-9-]*)", "\n".join(
        line.split("  ")[1] if line.startswith("  ") else "" for line in options.splitlines()
        if re.match(r"^  -", line))))
    return flags - {"-h", "--help"}


def table_flags(name: str) -> set[str]:
    flags: set[str] = set()
    for option in options_of(name):
        flags.update(option.flags)
        if option.kind == "switch":
            flags.add(f"--no-{option.flag[2:]}")
    return flags


def test_the_table_names_every_command() -> None:
    assert set(main.commands) == set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_lists_exactly_the_tables_options(name: str) -> None:
    assert help_flags(name) == table_flags(name)


@pytest.mark.parametrize("name", COMMANDS)
def test_click_parameters_are_the_tables(name: str) -> None:
    command = main.commands[name]
    params = {p.name for p in command.params if isinstance(p, click.Option) and p.name != "help"}
    assert params == {o.param for o in options_of(name)}


@pytest.mark.parametrize("name", ["cp", "verify", "pull", "push", "run", "doctor", "uploads", "cancel"])
def test_every_working_command_has_the_output_options(name: str) -> None:
    assert help_flags(name) >= OUTPUT


def test_progress_where_there_is_progress_and_nothing_that_does_not_apply() -> None:
    for name in ("cp", "pull", "push"):
        assert "--no-progress" in help_flags(name)
    for name in ("uploads", "cancel"):
        assert "--sign-payload" not in help_flags(name)
    push = help_flags("push")
    for flag in ("--sse-c-key-file", "--sse-kms-key-id", "--storage-class", "--content-type", "--metadata", "--tag",
                 "--acl", "--copy-part-size", "--no-clobber", "--overwrite", "--sign-payload"):
        assert flag not in push, flag  # push writes files, not S3 objects
    assert "--source-sse-c-key-file" in push and "--source-sse-c-key-file" not in help_flags("pull")


def test_flows_keys_are_the_tables() -> None:
    assert set(SPECS) == FLOW_STRUCTURE | set(flows_options())
    for key, option in flows_options().items():
        assert SPECS[key].kinds == option.flows_kinds, key


def test_config_endpoint_keys_are_the_tables() -> None:
    assert set(ENDPOINT_KEYS) == {o.name for o in OPTIONS if o.endpoint}
    for key in ENDPOINT_KEYS:  # each is an option of a command that reaches endpoints
        assert any(o.name == key and "cp" in o.commands for o in OPTIONS)


def readme_table(header: str) -> list[str]:
    """The first cells of the README table whose header row is ``header``."""
    lines = README.read_text().splitlines()
    start = lines.index(header)
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(line.split("|")[1])
    return rows


def test_readme_lists_exactly_the_tables_options() -> None:
    cells = readme_table("| option | commands | default | meaning |")
    listed = {flag for cell in cells for flag in re.findall(r"`(--?[A-Za-z][a-z0-9-]*)", cell)}
    every = {flag for name in COMMANDS for flag in table_flags(name)}
    assert listed == every
    for cell, option in zip(cells, OPTIONS, strict=True):  # one row per option, in the table's order
        assert f"`{option.flag}" in cell


def test_readme_flows_keys_are_the_tables() -> None:
    cells = readme_table("| key | meaning |")
    listed = {key for cell in cells for key in re.findall(r"`([a-z_]+)`", cell)}
    assert listed == set(SPECS)


def test_bad_values_are_named_as_given(tmp_path: Path) -> None:
    with pytest.raises(OptionError) as info:
        TransferOptions(part_size=1024)
    assert str(info.value) == "part_size must be between 5MiB and 5GiB, not 1024 bytes"  # the Python API
    result = CliRunner().invoke(main, ["cp", "--part-size", "1KiB", "a", "b"], env={"S3FERRY_CONFIG": "/dev/null"})
    assert result.exit_code == 2 and "--part-size must be between 5MiB and 5GiB" in result.output
    result = CliRunner().invoke(main, ["cp", "--tag", "aws:x=1", "a", "b"], env={"S3FERRY_CONFIG": "/dev/null"})
    assert "--tag key 'aws:x': the aws: prefix is reserved" in result.output
    flows = tmp_path / "flows.toml"
    flows.write_text('[flows.a]\nkind = "pull"\nsource = "/tmp/in"\ndestination = "s3://b/p/"\nevery = "1h"\n'
                     'upload_streams = 0\ntags = { "aws:x" = "1" }\n')
    problems = [p.format("flows.toml") for p in load(flows).problems]
    where = flow_where("a")
    assert f"flows.toml:6: {where}: upload_streams must be between 1 and 256, not 0" in problems
    assert f"flows.toml:7: {where}: tags key 'aws:x': the aws: prefix is reserved for AWS" in problems


def test_a_bad_key_file_is_named_by_its_flag(tmp_path: Path) -> None:
    key = tmp_path / "short.key"
    key.write_bytes(b"short")
    result = CliRunner().invoke(main, ["cp", "--sse-c-key-file", str(key), "a", "s3://b/k"],
                                env={"S3FERRY_CONFIG": "/dev/null"})
    assert result.exit_code == 2 and f"--sse-c-key-file {key} must hold a 256-bit key" in result.output
    assert isinstance(OptionError("s3.sse_c_key_file", "{option} x"), UsageError)


def test_a_password_file_read_late_is_named_by_its_flag(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-password"
    result = CliRunner().invoke(main, ["cp", "--password-file", str(missing), "sftp://me@127.0.0.1:1/x",
                                       str(tmp_path / "y")], env={"S3FERRY_CONFIG": "/dev/null"})
    assert result.exit_code == 2 and f"cannot read --password-file {missing}" in result.output
