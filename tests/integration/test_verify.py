"""``s3ferry verify`` (issue 20) against the real servers: identical trees, one byte flipped on either side,
files missing on one side, objects other tools wrote (a plain SDK put_object: CRC32; a multipart upload
without checksums: the MD5-of-MD5s ETag), SSE-C objects, S3 against S3, and a lying SFTP listing."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from s3ferry.demo import servers as testbed
from servers.hostile_sftp import FILE_NAMES, FOLDER_NAMES, HostileSftpServer, hostile_listing
from servers.s3proxy import S3FaultProxy
from support.helpers import (
    MiB,
    assert_one_line_error,
    json_lines,
    plain_client,
    put_multipart,
    run_cli,
    sftp_flags,
    write_random,
)

#: relative path -> size: one file of several ranged reads, one of one part, an empty one
TREE = {"big.bin": 19 * MiB + 77, "sub/small.csv": 12_345, "sub/deeper/empty.txt": 0}


def by_path(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {line["path"]: line for line in lines if line["type"] == "file"}


def summary_of(lines: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [line for line in lines if line["type"] == "summary"]
    return found


def make_tree(root: Path, files: dict[str, int] = TREE) -> None:
    for rel, size in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_random(root / rel, size)


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x01]))


def verify(*args: str) -> tuple[int, list[dict[str, Any]], str]:
    result = run_cli("verify", "--json", *args)
    return result.code, json_lines(result.stdout), result.stderr


@pytest.fixture
def drop(ssh: testbed.SshServer) -> Path:
    folder = ssh.root / f"verify-{uuid.uuid4().hex[:8]}"
    make_tree(folder)
    (folder / "sub" / "skip.tmp").write_bytes(b"never compared")
    return folder


@pytest.fixture
def uploaded(drop: Path, ssh: testbed.SshServer, bucket: str, s3_env: dict[str, str]) -> str:
    """``drop`` copied by s3ferry into s3://bucket/in/ (CRC32C, full object), without the .tmp file."""
    result = run_cli("cp", "-r", "--exclude", "*.tmp", ssh.url(drop), f"s3://{bucket}/in/", "--no-progress",
                     *sftp_flags(ssh))
    assert result.code == 0, result.stderr
    return f"s3://{bucket}/in/"


def test_identical_trees_sftp_and_s3(drop: Path, uploaded: str, ssh: testbed.SshServer) -> None:
    code, lines, stderr = verify("-r", "--exclude", "*.tmp", ssh.url(drop), uploaded, *sftp_flags(ssh))
    assert code == 0, stderr
    files = by_path(lines)
    assert set(files) == set(TREE)
    for line in files.values():
        assert (line["status"], line["verified"]) == ("identical", True), line
        assert line["check"] == "crc32c (full object)", line
        assert line["bytes_read"] == line["source_size"]  # only the SFTP side is read: S3 stores the check
    summary = summary_of(lines)
    assert (summary["identical"], summary["excluded"], summary["exit_code"]) == (3, 1, 0)
    # The other direction and the human output: one line per file, the summary on stderr.
    back = run_cli("verify", "-r", "--exclude", "*.tmp", uploaded, ssh.url(drop), *sftp_flags(ssh))
    assert back.code == 0, back.stderr
    assert back.stdout.count("identical ") == 3 and back.stderr.startswith("3 identical (")  # .tmp: excluded in DST too
    quiet = run_cli("verify", "-q", "-r", "--exclude", "*.tmp", uploaded, ssh.url(drop), *sftp_flags(ssh))
    assert (quiet.code, quiet.stdout, quiet.stderr) == (0, "", "")


def test_one_file_and_a_destination_folder(drop: Path, uploaded: str, ssh: testbed.SshServer) -> None:
    code, lines, stderr = verify(ssh.url(drop / "big.bin"), uploaded, *sftp_flags(ssh))  # DST/ gets the name
    assert code == 0, stderr
    (line,) = lines
    assert line["status"] == "identical" and line["source_size"] == TREE["big.bin"]
    code, lines, _ = verify(ssh.url(drop / "sub" / "skip.tmp"), uploaded, *sftp_flags(ssh))
    assert code == 1 and lines[0]["status"] == "missing"
    gone = run_cli("verify", ssh.url(drop / "nothing.bin"), uploaded, *sftp_flags(ssh))
    assert gone.code == 2, gone.stderr
    assert_one_line_error(gone.stderr, "not found")


def test_a_byte_flipped_in_s3_and_in_the_sftp_file(drop: Path, uploaded: str, ssh: testbed.SshServer,
                                                    s3: testbed.SeaweedServer, bucket: str) -> None:
    # Overwritten in S3 by another tool (a plain SDK put_object: CRC32) with one byte changed.
    data = bytearray((drop / "sub" / "small.csv").read_bytes())
    data[100] ^= 0x80
    plain_client(s3).put_object(Bucket=bucket, Key="in/sub/small.csv", Body=bytes(data))
    # And one byte flipped in the SFTP file, deep inside its third ranged read.
    flip_byte(drop / "big.bin", 17 * MiB + 3)
    code, lines, stderr = verify("-r", "--exclude", "*.tmp", ssh.url(drop), uploaded, *sftp_flags(ssh))
    assert code == 1, stderr
    files = by_path(lines)
    assert files["sub/small.csv"]["status"] == "differs"
    assert files["sub/small.csv"]["check"] == "crc32 (full object)"  # what the SDK stored
    assert files["big.bin"]["status"] == "differs" and files["big.bin"]["check"] == "crc32c (full object)"
    assert files["sub/deeper/empty.txt"]["status"] == "identical"
    assert (summary_of(lines)["differs"], summary_of(lines)["identical"]) == (2, 1)


def test_missing_and_extra_files(drop: Path, uploaded: str, ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                 bucket: str) -> None:
    s3.client().delete_object(Bucket=bucket, Key="in/sub/small.csv")
    s3.client().put_object(Bucket=bucket, Key="in/sub/surprise.bin", Body=b"only here")
    code, lines, stderr = verify("-r", "--exclude", "*.tmp", ssh.url(drop), uploaded, *sftp_flags(ssh))
    assert code == 1, stderr
    files = by_path(lines)
    assert files["sub/small.csv"]["status"] == "missing"
    assert files["sub/surprise.bin"]["status"] == "extra"
    assert files["big.bin"]["status"] == "identical"
    # A quick pass: sizes only, nothing read.
    code, lines, _ = verify("-r", "--size-only", "--exclude", "*.tmp", ssh.url(drop), uploaded, *sftp_flags(ssh))
    assert code == 1 and by_path(lines)["big.bin"]["status"] == "size_only"
    assert summary_of(lines)["bytes_read"] == 0
    contradiction = run_cli("verify", "--size-only", "--require-verified", ssh.url(drop / "big.bin"), uploaded,
                            *sftp_flags(ssh))
    assert contradiction.code == 2
    assert_one_line_error(contradiction.stderr, "--size-only and --require-verified")


FOREIGN_SIZE = 17 * MiB + 12345  # 4 parts of 5 MiB for the multipart writer


@pytest.mark.usefixtures("s3_env")
@pytest.mark.parametrize(("how", "check"), [("sdk-put", "crc32 (full object)"),
                                            ("mpu-no-checksum", "md5 etag (multipart, 4 parts)")])
def test_objects_other_tools_wrote(how: str, check: str, s3: testbed.SeaweedServer, bucket: str,
                                   tmp_path: Path) -> None:
    data = os.urandom(FOREIGN_SIZE)
    if how == "sdk-put":
        plain_client(s3).put_object(Bucket=bucket, Key="obj.bin", Body=data)
    else:
        put_multipart(plain_client(s3, False), bucket, "obj.bin", data, 5 * MiB, None, None)
    local = tmp_path / "obj.bin"
    local.write_bytes(data)
    code, lines, stderr = verify(str(local), f"s3://{bucket}/obj.bin")
    assert code == 0, stderr
    assert (lines[0]["status"], lines[0]["check"]) == ("identical", check)
    flip_byte(local, 6 * MiB)  # in the second part
    code, lines, stderr = verify(f"s3://{bucket}/obj.bin", str(local))
    assert code == 1, stderr
    assert (lines[0]["status"], lines[0]["check"]) == ("differs", check)


@pytest.mark.usefixtures("s3_env")
def test_a_multipart_etag_without_part_sizes_is_tried_in_known_layouts(s3: testbed.SeaweedServer, bucket: str,
                                                                       tmp_path: Path) -> None:
    """A store that reports no part sizes (GetObjectAttributes refused, partNumber ignored): the AWS CLI's
    8 MiB layout is found; 5 MiB parts are no layout tried, and a layout that does not match is 'size only'."""
    data = os.urandom(FOREIGN_SIZE)
    put_multipart(plain_client(s3, False), bucket, "cli.bin", data, 8 * MiB, None, None)  # 3 parts, as the AWS CLI
    put_multipart(plain_client(s3, False), bucket, "odd.bin", data, 5 * MiB, None, None)  # 4 parts
    local = tmp_path / "data.bin"
    local.write_bytes(data)
    with S3FaultProxy(s3.s3_port) as proxy:
        proxy.ignore_part_number = True
        env = {"AWS_ENDPOINT_URL_S3": proxy.url}

        def run(*args: str) -> tuple[int, dict[str, Any], str]:
            proxy.fail_next.append(("GetObjectAttributes", 403, "AccessDenied"))
            result = run_cli("verify", "--json", *args, env=env)
            return result.code, (json_lines(result.stdout) or [{}])[0], result.stderr

        code, line, stderr = run(str(local), f"s3://{bucket}/cli.bin")
        assert code == 0, stderr
        assert (line["status"], line["check"]) == ("identical", "md5 etag (multipart, 3 parts)")
        code, line, stderr = run(str(local), f"s3://{bucket}/odd.bin")
        assert code == 0, stderr
        assert line["status"] == "size_only" and line["bytes_read"] == 0
        assert "no part size tried (8 MiB) makes 4 parts" in line["detail"]
        code, _, stderr = run("--require-verified", str(local), f"s3://{bucket}/odd.bin")
        assert code == 3, stderr
        flip_byte(local, MiB)
        code, line, stderr = run(str(local), f"s3://{bucket}/cli.bin")  # the layout or the bytes: not known
        assert (code, line["status"], line["bytes_read"]) == (0, "size_only", FOREIGN_SIZE), stderr
        assert "matches no part layout tried (8 MiB parts)" in line["detail"]


@pytest.mark.usefixtures("s3_env")
def test_sse_c_objects_with_their_keys(bucket: str, tmp_path: Path) -> None:
    key = tmp_path / "k"
    key.write_bytes(os.urandom(32))
    src = tmp_path / "secret.bin"
    write_random(src, 13 * MiB)
    assert run_cli("cp", str(src), f"s3://{bucket}/secret.bin", "--no-progress", "--sse-c-key-file", str(key)).code == 0
    code, lines, stderr = verify(str(src), f"s3://{bucket}/secret.bin", "--sse-c-key-file", str(key))
    assert code == 0, stderr
    assert lines[0]["status"] == "identical" and lines[0]["check"] == "crc32c (full object)"
    code, lines, stderr = verify(f"s3://{bucket}/secret.bin", str(src), "--source-sse-c-key-file", str(key))
    assert code == 0 and lines[0]["status"] == "identical", stderr
    no_key = run_cli("verify", str(src), f"s3://{bucket}/secret.bin")
    assert no_key.code == 2
    assert_one_line_error(no_key.stderr, "SSE-C", "--sse-c-key-file")
    assert key.read_bytes().hex() not in no_key.stderr


@pytest.mark.usefixtures("s3_env")
def test_s3_against_s3_compares_the_stored_checksums(bucket: str, tmp_path: Path) -> None:
    make_tree(tmp_path / "t")
    assert run_cli("cp", "-r", str(tmp_path / "t"), f"s3://{bucket}/a/", "--no-progress").code == 0
    assert run_cli("cp", "-r", f"s3://{bucket}/a/", f"s3://{bucket}/b/", "--no-progress").code == 0
    code, lines, stderr = verify("-r", f"s3://{bucket}/a/", f"s3://{bucket}/b/")
    assert code == 0, stderr
    assert {line["status"] for line in by_path(lines).values()} == {"identical"}
    assert summary_of(lines)["bytes_read"] == 0  # both objects store the check: nothing streamed


def test_local_against_sftp_reads_both_sides(drop: Path, ssh: testbed.SshServer, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    assert run_cli("cp", "-r", ssh.url(drop), str(copy), "--no-progress", *sftp_flags(ssh)).code == 0
    code, lines, stderr = verify("-r", ssh.url(drop), str(copy), *sftp_flags(ssh))
    assert code == 0, stderr
    big = by_path(lines)["big.bin"]
    assert big["check"] == "crc64nvme (full object)" and big["bytes_read"] == 2 * TREE["big.bin"]
    flip_byte(copy / "sub" / "small.csv", 0)
    code, lines, _ = verify("-r", ssh.url(drop), str(copy), *sftp_flags(ssh))
    assert code == 1 and by_path(lines)["sub/small.csv"]["status"] == "differs"


def test_a_lying_listing_is_refused_by_name(tmp_path: Path) -> None:
    """The lying server lists ``../evil``, ``a/b``, ``/abs``, ``.``, ``..``, an empty name, a NUL and a folder
    ``../outside`` beside two honest files: those are compared, the others refused by name (exit 2), and
    nothing outside the two folders is read."""
    good = {"good.csv": 1000, "sub/deep.bin": 70_000}
    served, mirror = tmp_path / "server", tmp_path / "mirror"
    make_tree(served / "drop", good)
    make_tree(mirror, {})
    for rel in good:
        (mirror / rel).parent.mkdir(parents=True, exist_ok=True)
        (mirror / rel).write_bytes((served / "drop" / rel).read_bytes())
    write_random(served / "evil", 5)  # what reading "../evil" would find
    (mirror.parent / "evil").write_bytes(b"12345")  # and on the local side
    inject = {"/drop": hostile_listing(), "/drop/sub": [n for n in hostile_listing() if n.filename == b"../evil"]}
    with HostileSftpServer(tmp_path / "keys", served, inject) as server:
        result = run_cli("verify", "-r", "--json", server.url("/drop"), str(mirror), *server.flags())
    assert result.code == 2, result.stderr
    lines = json_lines(result.stdout)
    files = by_path(lines)
    assert all(files[p]["status"] == "identical" for p in good)
    refused = {p for p, line in files.items() if line["status"] == "failed"}
    listed = {name.decode() for name in FILE_NAMES} | {name.decode() for name in FOLDER_NAMES} | {"sub/../evil"}
    assert refused == set(files) - set(good)
    assert {"../evil", "a/b", "/abs", "sub/../evil"} <= refused <= listed | {f"{n}/" for n in listed}
    assert all(files[p]["exit_code"] == 2 and "refusing" in files[p]["detail"] for p in refused)
    assert summary_of(lines)["identical"] == len(good)
