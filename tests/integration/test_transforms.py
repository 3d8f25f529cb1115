"""Transforms in flight (issue 19) end to end: real sshd and SeaweedFS, bytes compared by SHA-256, the
gzip/zstd command-line tools as the independent reader and writer."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from support.helpers import MiB, object_exists, run_cli, sftp_flags, uploads_for


def csv_like(path: Path, size: int, seed: int = 1) -> bytes:
    """Compressible but not trivial: CSV rows with random numbers, and some incompressible stretches
    (so the compressed output still spans several 5 MiB parts)."""
    out = bytearray()
    row = 0
    rnd = hashlib.sha256(str(seed).encode())
    while len(out) < size:
        digest = rnd.digest()
        rnd.update(digest)
        if row % 3000 == 2999:
            out += os.urandom(64 * 1024)
        out += b"%d,%s,%d,name%d\n" % (row, digest.hex()[:12].encode(), int.from_bytes(digest[:3]), row % 977)
        row += 1
    data = bytes(out[:size])
    path.write_bytes(data)
    return data


def tool(*argv: str, data: bytes) -> bytes:
    found = shutil.which(argv[0])
    assert found is not None, f"{argv[0]} must be installed"
    return subprocess.run([found, *argv[1:]], input=data, capture_output=True, check=True).stdout


def get(s3: testbed.SeaweedServer, bucket: str, key: str) -> tuple[bytes, dict[str, str]]:
    got = s3.client().get_object(Bucket=bucket, Key=key)
    return got["Body"].read(), got.get("Metadata", {})


def report_etag(report: dict[str, object]) -> str:
    """The ETag the copy's result names (the object as it was completed and verified)."""
    etag = str(report["destination_etag"])
    return etag if etag.startswith('"') else f'"{etag}"'


def cp(*args: str) -> dict[str, object]:
    result = run_cli("cp", *args, "--no-progress", "--json")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert isinstance(report, dict)
    return report


@pytest.mark.usefixtures("s3_env")
@pytest.mark.parametrize(("spec", "suffix", "reader"), [("zstd", ".zst", ["zstd", "-dc"]),
                                                        ("gzip:1", ".gz", ["gzip", "-dc"])])
def test_sftp_to_s3_compressed(tmp_path: Path, ssh: testbed.SshServer, s3: testbed.SeaweedServer, bucket: str,
                               spec: str, suffix: str, reader: list[str]) -> None:
    src = ssh.root / f"t-{tmp_path.name}" / "a.csv"
    src.parent.mkdir(parents=True)
    data = csv_like(src, 24 * MiB)
    report = cp(ssh.url(src), f"s3://{bucket}/in/", "--compress", spec, "--part-size", "5MiB", *sftp_flags(ssh))
    body, metadata = get(s3, bucket, f"in/a.csv{suffix}")
    assert tool(*reader, data=body) == data
    assert len(body) < len(data) and int(str(report["parts"])) >= 2
    assert report["verified"] is True
    assert hashlib.sha256(data).hexdigest() in str(report["verification"])
    assert metadata["s3ferry-stages"] == spec if ":" in spec else spec + (":3" if spec == "zstd" else ":6")
    # the source's SHA-256, known only at the end, is a tag: the object is not rewritten (its ETag stays)
    tagging = s3.client().get_object_tagging(Bucket=bucket, Key=f"in/a.csv{suffix}")
    tags = {t["Key"]: t["Value"] for t in tagging["TagSet"]}
    assert tags["s3ferry-source-sha256"] == hashlib.sha256(data).hexdigest()
    assert s3.client().head_object(Bucket=bucket, Key=f"in/a.csv{suffix}")["ETag"] == report_etag(report)


@pytest.mark.usefixtures("s3_env")
@pytest.mark.parametrize(("writer", "name"), [(["gzip", "-c"], "b.csv.gz"), (["zstd", "-c", "-T2", "-q"], "b.csv.zst")])
def test_s3_to_sftp_decompressed_from_the_tools_output(tmp_path: Path, ssh: testbed.SshServer,
                                                       s3: testbed.SeaweedServer, bucket: str,
                                                       writer: list[str], name: str) -> None:
    data = csv_like(tmp_path / "b.csv", 12 * MiB, seed=2)
    s3.client().put_object(Bucket=bucket, Key=f"out/{name}", Body=tool(*writer, data=data))
    dest = ssh.root / f"d-{tmp_path.name}"
    report = cp(f"s3://{bucket}/out/{name}", ssh.url(dest) + "/", "--decompress", "auto", *sftp_flags(ssh))
    assert (dest / "b.csv").read_bytes() == data
    assert "checked the format's own checksums" in str(report["verification"])
    assert sorted(p.name for p in dest.iterdir()) == ["b.csv"]  # no temporary file left


@pytest.mark.usefixtures("s3_env")
def test_local_to_s3_and_back_round_trip(tmp_path: Path, s3: testbed.SeaweedServer, bucket: str) -> None:
    data = csv_like(tmp_path / "c.csv", 9 * MiB, seed=3)
    cp(str(tmp_path / "c.csv"), f"s3://{bucket}/rt/", "--compress", "gzip")
    body, _ = get(s3, bucket, "rt/c.csv.gz")
    assert gzip.decompress(body) == data
    out = tmp_path / "back"
    cp(f"s3://{bucket}/rt/c.csv.gz", f"{out}/", "--decompress", "gzip")
    assert (out / "c.csv").read_bytes() == data


def test_chained_local_decompress_gzip_then_compress_zstd(tmp_path: Path) -> None:
    data = csv_like(tmp_path / "d.csv", 7 * MiB, seed=4)
    (tmp_path / "d.csv.gz").write_bytes(tool("gzip", "-c", data=data))
    out = tmp_path / "out"
    cp(str(tmp_path / "d.csv.gz"), f"{out}/", "--decompress", "auto", "--compress", "zstd:9")
    assert tool("zstd", "-dc", data=(out / "d.csv.zst").read_bytes()) == data
    explicit = tmp_path / "named.bin"
    cp(str(tmp_path / "d.csv.gz"), str(explicit), "--decompress", "auto")  # an explicit name is used as given
    assert explicit.read_bytes() == data
    cp(str(tmp_path / "d.csv.gz"), f"{out}/kept/", "--decompress", "auto", "--keep-name")
    assert (out / "kept" / "d.csv.gz").read_bytes() == data


@pytest.mark.usefixtures("s3_env")
def test_tree_renames_every_file(tmp_path: Path, s3: testbed.SeaweedServer, bucket: str) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    one = csv_like(tree / "one.csv", 100_000, seed=5)
    two = csv_like(tree / "sub" / "two.csv", 200_000, seed=6)
    result = run_cli("cp", "-r", f"{tree}/", f"s3://{bucket}/tree/", "--compress", "zstd", "--no-progress")
    assert result.code == 0, result.stderr
    assert tool("zstd", "-dc", data=get(s3, bucket, "tree/one.csv.zst")[0]) == one
    assert tool("zstd", "-dc", data=get(s3, bucket, "tree/sub/two.csv.zst")[0]) == two


@pytest.mark.usefixtures("s3_env")
@pytest.mark.parametrize(("writer", "name"), [(["gzip", "-c"], "t.csv.gz"), (["zstd", "-c", "-q"], "t.csv.zst")])
@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_damaged_input_exits_3_and_publishes_nothing(tmp_path: Path, ssh: testbed.SshServer,
                                                     s3: testbed.SeaweedServer, bucket: str,
                                                     writer: list[str], name: str, damage: str) -> None:
    data = csv_like(tmp_path / "t.csv", 20 * MiB, seed=7)
    packed = bytearray(tool(*writer, data=data))
    if damage == "truncated":
        packed = packed[: len(packed) - 1000]
    else:
        packed[len(packed) // 2] ^= 0x5A
    src = ssh.root / f"bad-{tmp_path.name}" / name
    src.parent.mkdir(parents=True)
    src.write_bytes(packed)
    result = run_cli("cp", ssh.url(src), f"s3://{bucket}/bad/", "--decompress", "auto", "--part-size", "5MiB",
                     "--no-progress", *sftp_flags(ssh))
    assert result.code == 3, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and ("truncated" in result.stderr or "damaged" in result.stderr)
    assert not object_exists(s3, bucket, "bad/t.csv")
    assert uploads_for(s3, bucket) == []  # no leftover multipart upload


@pytest.mark.usefixtures("s3_env")
def test_a_source_that_is_not_compressed_is_refused(tmp_path: Path, s3: testbed.SeaweedServer, bucket: str) -> None:
    csv_like(tmp_path / "plain.csv.gz", 1000)
    result = run_cli("cp", str(tmp_path / "plain.csv.gz"), f"s3://{bucket}/p/", "--decompress", "auto",
                     "--no-progress")
    assert result.code == 3 and "not gzip or zstd" in result.stderr
    assert uploads_for(s3, bucket) == []


@pytest.mark.usefixtures("s3_env")
def test_pull_compresses_and_push_decompresses(tmp_path: Path, ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                               bucket: str) -> None:
    drop = ssh.root / f"drop-{tmp_path.name}"
    drop.mkdir()
    files = {f"f{i}.csv": csv_like(drop / f"f{i}.csv", 300_000 + i, seed=10 + i) for i in range(3)}
    pulled = run_cli("pull", ssh.url(drop), f"s3://{bucket}/in/", "--compress", "zstd", "--json",
                     *sftp_flags(ssh))
    assert pulled.code == 0, pulled.stderr
    assert json.loads(pulled.stdout)["copied"] == 3
    for name, data in files.items():
        assert tool("zstd", "-dc", data=get(s3, bucket, f"in/{name}.zst")[0]) == data
        assert (drop / ".done" / name).exists()
    inbox = ssh.root / f"inbox-{tmp_path.name}"
    pushed = run_cli("push", f"s3://{bucket}/in/", ssh.url(inbox), "--decompress", "auto", "--json",
                     *sftp_flags(ssh))
    assert pushed.code == 0, pushed.stderr
    assert json.loads(pushed.stdout)["copied"] == 3
    assert {p.name: p.read_bytes() for p in inbox.iterdir()} == files


def test_python_api_takes_the_options(tmp_path: Path) -> None:
    from s3ferry.operations.copy import copy

    data = csv_like(tmp_path / "api.csv", 2 * MiB, seed=11)
    result = copy(str(tmp_path / "api.csv"), f"{tmp_path}/out/", compress="gzip:9")
    assert result.destination.endswith("/out/api.csv.gz")
    assert gzip.decompress((tmp_path / "out" / "api.csv.gz").read_bytes()) == data
