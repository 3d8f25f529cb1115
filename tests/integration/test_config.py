"""The config file: [defaults] for every command (flags win), named endpoints (NAME:PATH), clear errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from support.helpers import MiB, object_sha256, run_cli, write_random


def test_defaults_apply_and_flags_win(config: Path, tmp_path: Path, s3: testbed.SeaweedServer,
                                      s3_env: dict[str, str], bucket: str) -> None:
    config.write_text('[defaults]\npart-size = "5MiB"\nupload_streams = 3\nchecksum = "sha256"\n')
    src = tmp_path / "twelve.bin"
    digest = write_random(src, 12 * MiB)
    result = run_cli("cp", str(src), f"s3://{bucket}/a.bin", "--json")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["parts"] == 3 and report["part_size"] == 5 * MiB and report["checksum_algorithm"] == "sha256"
    assert object_sha256(s3, bucket, "a.bin") == digest
    result = run_cli("cp", str(src), f"s3://{bucket}/b.bin", "--json", "--part-size", "8MiB", "--checksum", "crc32c")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["parts"] == 2 and report["checksum_algorithm"] == "crc32c"


def test_endpoint_url_from_defaults(config: Path, tmp_path: Path, s3: testbed.SeaweedServer,
                                    s3_env: dict[str, str], bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    config.write_text(f'[defaults]\nendpoint_url = "{s3.endpoint}"\n')
    src = tmp_path / "small.txt"
    src.write_text("hello\n")
    result = run_cli("cp", str(src), f"s3://{bucket}/small.txt")
    assert result.code == 0, result.stderr
    result = run_cli("uploads", f"s3://{bucket}/")  # every command with the option gets it
    assert result.code == 0, result.stderr


def partner(config: Path, ssh: testbed.SshServer, folder: Path, **extra: str) -> None:
    lines = [f'[endpoints.partner]\nurl = "{ssh.url(folder)}"', f'identity = "{ssh.user_key}"',
             f'known_hosts = "{ssh.known_hosts}"'] + [f'{k} = "{v}"' for k, v in extra.items()]
    config.write_text("\n".join(lines) + "\n")


def test_named_sftp_endpoint_end_to_end(config: Path, tmp_path: Path, ssh: testbed.SshServer) -> None:
    folder = ssh.root / "partner-out"
    (folder / "2026").mkdir(parents=True, exist_ok=True)
    digest = write_random(folder / "2026" / "x.csv", 100_000)
    partner(config, ssh, folder)
    out = tmp_path / "out"
    out.mkdir()
    result = run_cli("cp", "partner:/2026/x.csv", f"{out}/")
    assert result.code == 0, result.stderr
    assert hashlib.sha256((out / "x.csv").read_bytes()).hexdigest() == digest
    result = run_cli("cp", "partner:2026/x.csv", str(out / "y.csv"))  # a relative PATH is the same
    assert result.code == 0, result.stderr
    assert (out / "y.csv").read_bytes() == (folder / "2026" / "x.csv").read_bytes()
    result = run_cli("cp", "-r", "partner:", f"{out}/tree/")  # the endpoint's folder itself
    assert result.code == 0, result.stderr
    assert (out / "tree" / "2026" / "x.csv").exists()
    result = run_cli("doctor", "partner:/2026")
    assert result.code == 0, result.stdout + result.stderr


def test_flags_beat_endpoint_options(config: Path, tmp_path: Path, ssh: testbed.SshServer) -> None:
    folder = ssh.root / "partner-flags"
    folder.mkdir(exist_ok=True)
    (folder / "f.txt").write_text("flags\n")
    partner(config, ssh, folder)
    config.write_text(config.read_text().replace(str(ssh.known_hosts), str(tmp_path / "nothing-here")))
    out = tmp_path / "o"
    result = run_cli("cp", "partner:f.txt", f"{out}/")
    assert result.code == 2 and "--known-hosts" in result.stderr and "nothing-here" in result.stderr
    result = run_cli("cp", "partner:f.txt", f"{out}/", "--known-hosts", str(ssh.known_hosts))
    assert result.code == 0, result.stderr
    assert (out / "f.txt").read_text() == "flags\n"


def test_named_endpoints_for_pull(config: Path, ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                  s3_env: dict[str, str], bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = ssh.root / "partner-pull"
    folder.mkdir(exist_ok=True)
    (folder / "p.csv").write_text("pulled\n")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    partner(config, ssh, folder)
    config.write_text(config.read_text() + f'[endpoints.raw]\nurl = "s3://{bucket}/in"\n'
                                           f'endpoint_url = "{s3.endpoint}"\n')
    result = run_cli("pull", "partner:", "raw:/", "--json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["copied"] == 1
    assert s3.client().get_object(Bucket=bucket, Key="in/p.csv")["Body"].read() == b"pulled\n"


def test_unknown_names_and_local_paths_with_colons_are_left_alone(config: Path, tmp_path: Path,
                                                                   ssh: testbed.SshServer) -> None:
    partner(config, ssh, ssh.root)
    (tmp_path / "data:2026.csv").write_text("colon\n")
    out = tmp_path / "out"
    result = run_cli("cp", str(tmp_path / "data:2026.csv"), f"{out}/")
    assert result.code == 0, result.stderr
    assert (out / "data:2026.csv").read_text() == "colon\n"
    result = run_cli("cp", "other:/x.csv", f"{out}/")  # not an endpoint: a local path that does not exist
    assert result.code == 2 and "other:/x.csv" in result.stderr


def test_two_endpoints_with_different_sftp_settings_conflict(config: Path, tmp_path: Path,
                                                             ssh: testbed.SshServer) -> None:
    key2 = tmp_path / "key2"
    key2.write_text("x")
    config.write_text(f'[endpoints.a]\nurl = "{ssh.url(ssh.root)}"\nidentity = "{ssh.user_key}"\n'
                      f'[endpoints.b]\nurl = "{ssh.url(ssh.root)}"\nidentity = "{key2}"\n')
    result = run_cli("cp", "a:/x", "b:/y")
    assert result.code == 2 and "endpoints a and b both set identity" in result.stderr


def test_relative_paths_are_relative_to_the_file(config: Path, ssh: testbed.SshServer, tmp_path: Path) -> None:
    (config.parent / "keys").mkdir()
    (config.parent / "keys" / "partner").write_bytes(ssh.user_key.read_bytes())
    (config.parent / "keys" / "partner").chmod(0o600)
    (ssh.root / "rel.txt").write_text("relative\n")
    config.write_text(f'[endpoints.partner]\nurl = "{ssh.url(ssh.root)}"\nidentity = "keys/partner"\n'
                      f'known_hosts = "{ssh.known_hosts}"\n')
    result = run_cli("cp", "partner:rel.txt", f"{tmp_path}/got.txt")
    assert result.code == 0, result.stderr
    assert (tmp_path / "got.txt").read_text() == "relative\n"
