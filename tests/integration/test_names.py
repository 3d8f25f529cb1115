"""Hostile and tricky names (issue 14): one escaping rule for every scheme, globs only where the shell has them.

Paths are literal in s3://, sftp://, ftp(s)://, file:// and local paths (no percent-decoding); a
``cp`` source's last component may be a pattern, expanded in that one folder as bash does without
failglob (README, *Names and paths*). The CLI tests run on real sshd, SeaweedFS and pyftpdlib.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from servers.ftp_server import FtpServer
from servers.s3proxy import S3FaultProxy
from support.helpers import HOSTILE, run_cli, sftp_flags


def content(name: str) -> bytes:
    """Bytes that say which file they came from (and differ from every other name's)."""
    return f"the file named {name!r}\n".encode() + os.urandom(64)


def write_all(folder: Path, names: tuple[str, ...] = HOSTILE) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in names:
        written[name] = content(name)
        (folder / name).write_bytes(written[name])
    return written


def put_all(s3: testbed.SeaweedServer, bucket: str, prefix: str, names: tuple[str, ...] = HOSTILE) -> dict[str, bytes]:
    client = s3.client()
    written = {}
    for name in names:
        written[name] = content(name)
        client.put_object(Bucket=bucket, Key=prefix + name, Body=written[name])
    return written


def keys(s3: testbed.SeaweedServer, bucket: str, prefix: str = "") -> list[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def body(s3: testbed.SeaweedServer, bucket: str, key: str) -> bytes:
    return bytes(s3.client().get_object(Bucket=bucket, Key=key)["Body"].read())


def files_in(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} if folder.exists() else {}


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("s3ferry: error: "), stderr
    return lines[0]


@pytest.fixture(scope="module")
def ftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    base = tmp_path_factory.mktemp("ftp-names")
    server = FtpServer(base / "root", base / "work").start()
    yield server
    server.stop()


# -- single-file cp, in several directions ------------------------------------------------------------


@pytest.mark.usefixtures("s3_env")
def test_local_to_s3_keys_are_the_names_as_typed(tmp_path: Path, bucket: str, s3: testbed.SeaweedServer) -> None:
    written = write_all(tmp_path / "src")
    for name in HOSTILE:
        result = run_cli("cp", str(tmp_path / "src" / name), f"s3://{bucket}/up/{name}", "--no-progress")
        assert result.code == 0, (name, result.stderr)
        assert f"-> s3://{bucket}/up/{name} " in result.stdout  # the summary shows the key, not a masked query
    assert keys(s3, bucket) == sorted(f"up/{name}" for name in HOSTILE)
    assert {name: body(s3, bucket, f"up/{name}") for name in HOSTILE} == written


@pytest.mark.usefixtures("s3_env")
def test_s3_to_local_copies_exactly_the_key_typed(tmp_path: Path, bucket: str, s3: testbed.SeaweedServer) -> None:
    written = put_all(s3, bucket, "down/")
    put_all(s3, bucket, "down/", ("aA.bin",))  # what a%41.bin would mean if it were percent-decoded
    out = tmp_path / "out"
    for name in HOSTILE:
        result = run_cli("cp", f"s3://{bucket}/down/{name}", f"{out}/", "--no-progress")
        assert result.code == 0, (name, result.stderr)
    assert files_in(out) == written  # a%41.bin holds the bytes of the key a%41.bin, and no aA.bin came along


@pytest.mark.usefixtures("s3_env")
def test_a_percent_escape_in_an_s3_key_is_two_characters_of_the_key(tmp_path: Path, bucket: str,
                                                                     s3: testbed.SeaweedServer) -> None:
    written = put_all(s3, bucket, "", ("a%41.bin", "aA.bin"))
    result = run_cli("cp", f"s3://{bucket}/a%41.bin", str(tmp_path / "got.bin"), "--no-progress")
    assert result.code == 0, result.stderr
    assert (tmp_path / "got.bin").read_bytes() == written["a%41.bin"]


@pytest.mark.usefixtures("s3_env")
def test_sftp_to_s3_paths_are_literal(bucket: str, s3: testbed.SeaweedServer, ssh: testbed.SshServer) -> None:
    folder = ssh.root / "names-to-s3"
    written = write_all(folder)
    for name in HOSTILE:
        result = run_cli("cp", ssh.url(folder / name), f"s3://{bucket}/in/", "--no-progress", *sftp_flags(ssh))
        assert result.code == 0, (name, result.stderr)
    assert keys(s3, bucket) == sorted(f"in/{name}" for name in HOSTILE)
    assert {name: body(s3, bucket, f"in/{name}") for name in HOSTILE} == written


@pytest.mark.usefixtures("s3_env")
def test_s3_to_sftp_destination_names_are_literal(bucket: str, s3: testbed.SeaweedServer,
                                                   ssh: testbed.SshServer) -> None:
    written = put_all(s3, bucket, "out/")
    target = ssh.root / "names-from-s3"
    for index, name in enumerate(HOSTILE):
        # the destination is never a pattern: the hostile name is the destination's own name
        result = run_cli("cp", f"s3://{bucket}/out/{name}", ssh.url(target / f"{index}-{name}"), "--no-progress",
                         *sftp_flags(ssh))
        assert result.code == 0, (name, result.stderr)
    assert files_in(target) == {f"{index}-{name}": written[name] for index, name in enumerate(HOSTILE)}


def test_ftp_to_local_paths_are_literal(tmp_path: Path, ftp: FtpServer) -> None:
    written = write_all(ftp.root_dir / "names")
    out = tmp_path / "out"
    for index, name in enumerate(HOSTILE):
        result = run_cli("cp", ftp.url(f"names/{name}"), str(out / f"{index}.bin"), "--no-progress",
                         env={"S3FERRY_FTP_PASSWORD": ftp.password})
        assert result.code == 0, (name, result.stderr)
    assert files_in(out) == {f"{index}.bin": written[name] for index, name in enumerate(HOSTILE)}


# -- patterns in the source: the shell's rules --------------------------------------------------------


def test_bracketed_wildcard_names_one_file_for_a_file_destination(tmp_path: Path, ssh: testbed.SshServer) -> None:
    folder = ssh.root / "bracketed"
    written = write_all(folder, ("q?mark.bin", "qXmark.bin"))
    out = tmp_path / "out"
    out.mkdir()
    result = run_cli("cp", ssh.url(folder) + "/q[?]mark.bin", str(out / "renamed.bin"), "--no-progress",
                     *sftp_flags(ssh))
    assert result.code == 0, result.stderr
    assert files_in(out) == {"renamed.bin": written["q?mark.bin"]}


@pytest.mark.usefixtures("s3_env")
def test_pattern_matching_nothing_is_no_such_file(tmp_path: Path, bucket: str, s3: testbed.SeaweedServer) -> None:
    put_all(s3, bucket, "dir/", ("a.csv", "b.csv"))
    out = tmp_path / "out"
    for dst in (f"{out}/", str(out / "x.txt")):
        result = run_cli("cp", f"s3://{bucket}/dir/*.txt", dst, "--no-progress")
        assert result.code == 2, result.stderr
        assert one_error_line(result.stderr) == f"s3ferry: error: no such file: s3://{bucket}/dir/*.txt"
    assert not out.exists()


def test_pattern_in_a_missing_folder_is_no_such_file(tmp_path: Path, ssh: testbed.SshServer) -> None:
    source = ssh.url(ssh.root / "no-such-folder") + "/*.csv"
    result = run_cli("cp", source, f"{tmp_path}/out/", "--no-progress", *sftp_flags(ssh))
    assert result.code == 2
    assert one_error_line(result.stderr) == f"s3ferry: error: no such file: {source}"
    assert not (tmp_path / "out").exists()


@pytest.mark.usefixtures("s3_env")
def test_two_matches_into_a_file_destination_is_refused(tmp_path: Path, bucket: str,
                                                        s3: testbed.SeaweedServer) -> None:
    write_all(tmp_path / "src", ("a.csv", "b.csv", "c.txt"))
    result = run_cli("cp", f"{tmp_path}/src/*.csv", f"s3://{bucket}/all.csv", "--no-progress")
    assert result.code == 2
    line = one_error_line(result.stderr)
    assert f"2 files match *.csv: end s3://{bucket}/all.csv with / to copy them into a folder" in line
    assert keys(s3, bucket) == []


@pytest.mark.usefixtures("s3_env")
def test_one_match_goes_to_a_file_destination_and_many_into_a_folder(tmp_path: Path, bucket: str,
                                                                     s3: testbed.SeaweedServer) -> None:
    written = write_all(tmp_path / "src", ("a.csv", "b.csv", "c.txt", ".hidden.csv"))
    one = run_cli("cp", f"{tmp_path}/src/c.*", f"s3://{bucket}/single.txt", "--no-progress")
    assert one.code == 0, one.stderr
    many = run_cli("cp", f"{tmp_path}/src/*.csv", f"s3://{bucket}/many/", "--no-progress")
    assert many.code == 0, many.stderr
    assert keys(s3, bucket) == ["many/a.csv", "many/b.csv", "single.txt"]  # `*` skips .hidden.csv, as the shell
    assert body(s3, bucket, "single.txt") == written["c.txt"]


@pytest.mark.usefixtures("s3_env")
def test_s3_pattern_lists_only_its_own_folder(tmp_path: Path, bucket: str, s3: testbed.SeaweedServer) -> None:
    written = put_all(s3, bucket, "wide/", ("a.csv", "b.txt"))
    client = s3.client()
    with ThreadPoolExecutor(8) as pool:  # more keys below than one listing page holds (1000)
        list(pool.map(lambda i: client.put_object(Bucket=bucket, Key=f"wide/sub/k{i:04d}.csv", Body=b"x"),
                      range(1001)))
    out = tmp_path / "out"
    with S3FaultProxy(s3.s3_port) as proxy:
        result = run_cli("cp", f"s3://{bucket}/wide/*.csv", f"{out}/", "--no-progress",
                         env={"AWS_ENDPOINT_URL_S3": proxy.url})
    assert result.code == 0, result.stderr
    assert files_in(out) == {"a.csv": written["a.csv"]}
    listings = [target for operation, target in proxy.targets if operation == "ListObjects"]
    assert len(listings) == 1, listings
    assert "delimiter=%2F" in listings[0] and "prefix=wide%2F" in listings[0]
