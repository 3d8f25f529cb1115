"""``s3ferry serve`` refuses to start without what it needs, each with one line and exit 2 (no server here:
``--check`` validates and starts nothing)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from s3ferry.cli import main

TOKEN = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    path = tmp_path / "flows.toml"
    path.write_text('[flows.out]\nkind = "push"\nsource = "s3://bkt/out/"\ndestination = "sftp://u@h/in/"\n'
                    'every = "10m"\n')
    return path


def serve(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["serve", "--check", *args],
                                env={"S3FERRY_CONFIG": "/dev/null", "S3FERRY_SERVE_TOKEN": "", **(env or {})})
    return result.exit_code, result.output


def test_a_token_is_required(flows: Path) -> None:
    code, out = serve(str(flows))
    assert code == 2 and "serve needs its token from --token-file FILE or S3FERRY_SERVE_TOKEN" in out


def test_token_from_the_environment_or_a_file(flows: Path, tmp_path: Path) -> None:
    code, out = serve(str(flows), env={"S3FERRY_SERVE_TOKEN": TOKEN})
    assert code == 0 and out.startswith("out: push s3://bkt/out/ -> sftp://u@h/in/, every 10m")
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    assert serve("--token-file", str(token), str(flows))[0] == 0


def test_a_weak_token_is_refused_and_never_echoed(flows: Path, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("short secret\n")
    code, out = serve("--token-file", str(token), str(flows))
    assert code == 2 and "a token needs at least 16 printable characters" in out
    assert f"{token} holds a weaker one" in out
    assert "short secret" not in out and len(out.strip().splitlines()) == 1
    code, out = serve("--token-file", str(tmp_path / "missing"), str(flows))
    assert code == 2 and f"cannot read --token-file {tmp_path / 'missing'}" in out


@pytest.mark.parametrize(("args", "needle"), [
    (["--no-auth", "--listen", "0.0.0.0:8470"], "is only for a loopback address, not 0.0.0.0"),
    (["--listen", "127.0.0.1"], "expected HOST:PORT"),
    (["--listen", "127.0.0.1:99999"], "expected HOST:PORT"),
    (["--tls-cert", "/etc/hostname"], "--tls-cert and --tls-key go together"),
    (["--tls-cert", "/etc/hostname", "--tls-key", "/etc/hostname"], "cannot load them"),
])
def test_bad_serving_options(flows: Path, args: list[str], needle: str) -> None:
    code, out = serve(*args, str(flows), env={"S3FERRY_SERVE_TOKEN": TOKEN} if "--no-auth" not in args else {})
    assert code == 2 and needle in out, out


def test_no_auth_on_loopback(flows: Path) -> None:
    assert serve("--no-auth", "--listen", "[::1]:8470", str(flows))[0] == 0
    code, out = serve("--no-auth", str(flows), env={"S3FERRY_SERVE_TOKEN": TOKEN})
    assert code == 2 and "contradict" in out
