"""Every command's --help shows examples; click's shell completion works for s3ferry."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from s3ferry.cli.app import main
from support.helpers import run_cli

COMMANDS = sorted(main.commands)


def test_the_commands_are_registered() -> None:
    assert {"cp", "pull", "push", "uploads", "cancel", "demo", "doctor"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_help_has_an_example(name: str) -> None:
    result = CliRunner().invoke(main, [name, "--help"], env={"S3FERRY_CONFIG": "/dev/null"})
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, f"s3ferry {name} --help shows no example"
    example_lines = [line for line in result.output.splitlines() if line.strip().startswith("s3ferry ")]
    assert any(line.split()[1] == name for line in example_lines), f"no `s3ferry {name} ...` example line"


def test_help_examples_in_the_command_objects() -> None:
    for name, command in main.commands.items():
        assert isinstance(command, click.Command)
        text = (command.epilog or "") + (command.help or "")
        assert "Example" in text, name


def test_bash_completion_script() -> None:
    result = run_cli(env={"_S3FERRY_COMPLETE": "bash_source"})
    assert result.code == 0, result.stderr
    assert "_s3ferry_completion" in result.stdout
    assert "complete -o nosort -F _s3ferry_completion s3ferry" in result.stdout


@pytest.mark.parametrize("shell,needle", [("zsh_source", "#compdef s3ferry"), ("fish_source", "complete")])
def test_zsh_and_fish_completion_scripts(shell: str, needle: str) -> None:
    result = run_cli(env={"_S3FERRY_COMPLETE": shell})
    assert result.code == 0 and needle in result.stdout


def test_bash_completes_commands_options_and_endpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def complete(words: str) -> list[str]:
        env = {"_S3FERRY_COMPLETE": "bash_complete", "COMP_WORDS": words,
               "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1))}
        result = run_cli(env=env)
        assert result.code == 0, result.stderr
        return result.stdout.splitlines()

    assert {"plain,doctor", "plain,demo"} <= set(complete("s3ferry d"))
    assert "plain,--part-size" in complete("s3ferry cp --part")
    config = tmp_path / "config.toml"
    config.write_text('[endpoints.partner]\nurl = "sftp://etl@partner.example.com/out"\n'
                      '[endpoints.raw]\nurl = "s3://raw/"\n')
    monkeypatch.setenv("S3FERRY_CONFIG", str(config))
    got = complete("s3ferry cp pa")
    assert "plain,partner:" in got and "plain,raw:" not in got
