"""The config file without a server: every problem reported with its line, where the file is looked for,
endpoint names expanded."""

from __future__ import annotations

from pathlib import Path

import pytest

from s3ferry.cli.settings import Config, Endpoint, expand
from s3ferry.core.urls import parse
from support.helpers import run_cli


@pytest.mark.parametrize("text,needle", [
    ('[defaults]\npart_size = "16MiB"\n\npart_sise = "1"\n', "config.toml:4: [defaults]: unknown option "
                                                            "'part_sise' (did you mean 'part_size'?)"),
    ('[defaults]\nupload_streams = "many"\n', "config.toml:2: [defaults]: upload_streams: 'many' is not a valid "
                                              "integer"),
    ('[defaults]\npart_size = "lots"\n', "config.toml:2: [defaults]: part_size: cannot read 'lots' as a size"),
    ('[defaults]\npart_size = \n', "config.toml:2: not valid TOML"),
    ('[endpoint.partner]\nurl = "sftp://h/x"\n', "config.toml:1: unknown section [endpoint]"),
    ('[endpoints.partner]\nurl = "sftp://h/x"\ncolor = 1\n', "config.toml:3: endpoints.partner: unknown key 'color'"),
    ('[endpoints.partner]\nurl = "gopher://h/x"\n', "config.toml:2: endpoints.partner: url: unsupported scheme"),
    ('[endpoints.partner]\nidentity = "k"\n', "config.toml:1: endpoints.partner: missing url"),
    ('[endpoints.partner]\nurl = "sftp://me:secret@h/x"\n', "refusing a password inside the URL"),
])
def test_bad_config_exits_2_with_the_line(config: Path, text: str, needle: str) -> None:
    config.write_text(text)
    result = run_cli("cp", "a", "b")
    assert result.code == 2, result.stderr
    assert needle in result.stderr, result.stderr
    assert "secret" not in result.stderr


def test_every_problem_is_reported(config: Path) -> None:
    config.write_text('[defaults]\nretries = "x"\nforce = false\n[endpoints.p]\nurl = "s3://bucket/x"\nfoo = 1\n')
    result = run_cli("uploads", "s3://bucket/")
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].endswith("config.toml: 3 errors in the config file"), lines
    assert any(":2: [defaults]: retries:" in line for line in lines)
    assert any(":3: [defaults]: force: set it to true" in line for line in lines)
    assert any(":6: endpoints.p: unknown key 'foo'" in line for line in lines)


def test_missing_explicit_config_is_an_error(config: Path) -> None:
    result = run_cli("cp", "a", "b")
    assert result.code == 2 and "does not exist" in result.stderr and "S3FERRY_CONFIG" in result.stderr


def test_default_locations(tmp_path: Path, clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    home_cfg = clean_env / ".config" / "s3ferry" / "config.toml"
    home_cfg.parent.mkdir(parents=True)
    home_cfg.write_text("[defaults]\nbogus_home = 1\n")
    result = run_cli("uploads", "s3://bucket/")
    assert result.code == 2 and str(home_cfg) in result.stderr and "bogus_home" in result.stderr
    xdg = tmp_path / "xdg"
    (xdg / "s3ferry").mkdir(parents=True)
    (xdg / "s3ferry" / "config.toml").write_text("[defaults]\nbogus_xdg = 1\n")
    result = run_cli("uploads", "s3://bucket/", env={"XDG_CONFIG_HOME": str(xdg)})
    assert result.code == 2 and "bogus_xdg" in result.stderr


def test_expand_keeps_paths_exact() -> None:
    cfg = Config(Path("c.toml"), {}, {
        "p": Endpoint("p", "sftp://etl@partner.example.com:2222/out"),
        "r": Endpoint("r", "s3://raw/partner/"),
        "h": Endpoint("h", "https://data.example.org/pub"),
    })
    assert expand(cfg, "p:") == ("sftp://etl@partner.example.com:2222/out", cfg.endpoints["p"])
    assert expand(cfg, "p:/2026/x.csv")[0] == "sftp://etl@partner.example.com:2222/out/2026/x.csv"
    assert expand(cfg, "p:2026/")[0] == "sftp://etl@partner.example.com:2222/out/2026/"
    assert expand(cfg, "r:a b#c?d%e.csv")[0] == "s3://raw/partner/a b#c?d%e.csv"  # literal, as the AWS CLI
    assert parse(expand(cfg, "r:a b#c?d%e.csv")[0]).path == "partner/a b#c?d%e.csv"
    assert parse(expand(cfg, "p:/x:y@z")[0]).path == "/out/x:y@z"
    assert parse(expand(cfg, "p:q?%41#.bin")[0]).path == "/out/q?%41#.bin"
    assert expand(cfg, "h:a b%.csv")[0] == "https://data.example.org/pub/a%20b%25.csv"  # http: a real URL
    assert parse(expand(cfg, "h:a b%.csv")[0]).path == "/pub/a b%.csv"
    for untouched in ("q:/x", "./p:x", "/tmp/p:x", "sftp://h/x", "p", "s3://b/k"):
        assert expand(cfg, untouched) == (untouched, None)
